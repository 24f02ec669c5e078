"""Content negotiation: whether a request's `Accept` header asks for a form other than JSON.

Routes answer JSON unless the client names another media type they offer
(Arrow IPC, say) explicitly. The header is parsed, not searched: a type
listed with `q=0` is refused, and a type named only through a wildcard
(`*/*`, `application/*`) never displaces the JSON default.
"""

from __future__ import annotations

DEFAULT = "application/json"


def _ranges(header: str) -> list[tuple[str, float]]:
    """The header's media ranges with their quality values, lower-cased; unreadable ones dropped."""
    ranges = []
    for item in header.split(","):
        media, *params = item.split(";")
        media = media.strip().lower()
        if media.count("/") != 1:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = min(max(float(value.strip()), 0.0), 1.0)
                except ValueError:
                    quality = 0.0
        ranges.append((media, quality))
    return ranges


def _quality(ranges: list[tuple[str, float]], media: str) -> float:
    """The quality the most specific matching range gives `media` (0 when none matches)."""
    kind = media.split("/", 1)[0]
    best, specificity = 0.0, -1
    for candidate, quality in ranges:
        if candidate == media:
            rank = 2
        elif candidate == f"{kind}/*":
            rank = 1
        elif candidate == "*/*":
            rank = 0
        else:
            continue
        if rank > specificity:
            best, specificity = quality, rank
    return best


def wants(accept: str | None, media: str) -> bool:
    """Whether `accept` names `media` itself, with a quality above 0 and not below JSON's."""
    if not accept:
        return False
    ranges = _ranges(accept)
    named = [quality for candidate, quality in ranges if candidate == media.lower()]
    if not named or named[0] <= 0.0:
        return False
    return named[0] >= _quality(ranges, DEFAULT)
