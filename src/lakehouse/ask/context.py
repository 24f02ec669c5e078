"""What one question may use: the named datasets and indexes, checked to exist, and described to the model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lakehouse.ask.backend import Lakehouse
from lakehouse.ask.tools import Toolbox
from lakehouse.errors import NotFound


def _unique(names: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(n.strip() for n in names))


async def open_toolbox(
    lakehouse: Lakehouse, datasets: Sequence[str] | None, indexes: Sequence[str]
) -> tuple[Toolbox, str]:
    """The toolbox for a question and the text that tells the model what it may use.

    Raises:
        NotFound: a named dataset or index does not exist (404, naming it), before any model call.
    """
    allowed = _unique(datasets) if datasets is not None else None
    lines: list[str] = []
    if allowed is not None:
        lines.append("Datasets you may query (no others):")
        for name in allowed:
            try:
                manifest = await lakehouse.dataset(name)
            except NotFound:
                raise NotFound(f"dataset {name!r} does not exist", dataset=name) from None
            columns = ", ".join(f"{c.get('name')} {c.get('type')}" for c in manifest.get("schema") or [])
            version, rows = manifest.get("version"), manifest.get("row_count")
            lines.append(f"- {name}: version {version}, {rows} rows; columns: {columns}")
    else:
        lines.append("Call list_datasets to see the datasets.")
    infos: dict[str, dict[str, Any]] = {}
    if indexes:
        lines.append("Indexes you may search:")
    for name in _unique(indexes):
        try:
            info = await lakehouse.index(name)
        except NotFound:
            raise NotFound(f"index {name!r} does not exist", index=name) from None
        infos[name] = info
        source = info.get("source")
        follows = f", follows dataset {source.get('dataset')}" if isinstance(source, dict) else ""
        lines.append(f"- {name}: {info.get('count')} items{follows}")
    return Toolbox(lakehouse, allowed, infos), "\n".join(lines)
