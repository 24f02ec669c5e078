"""Object key rules, shared by every backend and the storage routes.

A key is 1..1024 bytes of UTF-8 with no leading `/`, no empty, `.` or `..`
segments, and no backslash or control characters. Keys under
`_lakehouse/` belong to the lakehouse itself.
"""

from __future__ import annotations

import re
from typing import Any

from lakehouse.errors import InvalidKey
from lakehouse.storage.base import PRIVATE_PREFIX, RESERVED_PREFIX

MAX_KEY_BYTES = 1024

# C0 controls, DEL and the C1 controls: invisible in logs and listings, and
# some of them (NUL, newline) break file systems or HTTP headers.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def validate_key(key: str) -> str:
    """Return `key` unchanged when it follows the key rules.

    Raises:
        InvalidKey: the key is empty, too long, absolute, has an empty, `.` or
            `..` segment, or holds a backslash or a control character.
    """
    if not key:
        raise InvalidKey("the key is empty", key=key)
    _check_text(key, "key")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidKey(f"the key has an empty, '.' or '..' segment: {key!r}", key=key)
    return key


def is_private(key: str) -> bool:
    """Whether `key` holds secrets' records (token hashes) that the storage API never serves."""
    return key.startswith(PRIVATE_PREFIX) or key == PRIVATE_PREFIX.rstrip("/")


def is_reserved(key: str) -> bool:
    """Whether `key` lies under the prefix the lakehouse keeps for itself."""
    return key.startswith(RESERVED_PREFIX) or key == RESERVED_PREFIX.rstrip("/")


def validate_prefix(prefix: str) -> str:
    """Return a listing prefix when it could start a valid key.

    Every segment but the last follows the segment rules of a key (no empty,
    `.` or `..` segment); the last may be partial (`logs/20`) or empty after
    a trailing `/` (`logs/`). The empty prefix lists everything.

    Raises:
        InvalidKey: the prefix is too long, absolute, holds a backslash or a
            control character, or has an empty, `.` or `..` folder segment.
    """
    if not prefix:
        return prefix
    _check_text(prefix, "prefix")
    for segment in prefix.split("/")[:-1]:
        if segment in ("", ".", ".."):
            raise InvalidKey(f"the prefix has an empty, '.' or '..' segment: {prefix!r}", prefix=prefix)
    return prefix


def _check_text(text: str, what: str) -> None:
    """The rules a key and a listing prefix share: UTF-8, the size cap, no leading `/`,
    no backslash, no control character. `what` names it in the error ("key", "prefix").

    Raises:
        InvalidKey: one of those rules is broken.
    """
    shown = text
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        problem = "is not valid UTF-8"
    else:
        if size > MAX_KEY_BYTES:
            problem, shown = f"is {size} bytes long; the limit is {MAX_KEY_BYTES}", text[:64] + "..."
        elif text.startswith("/"):
            problem = "must not start with '/'"
        elif "\\" in text:
            problem = "must not contain a backslash"
        elif _CONTROL.search(text):
            problem, shown = "must not contain control characters", text.encode("unicode_escape").decode()
        else:
            return
    detail: dict[str, Any] = {what: shown}
    raise InvalidKey(f"the {what} {problem}", **detail)
