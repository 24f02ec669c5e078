"""BM25 keyword search over the items' texts, with bm25s.

The tokenizer keeps exact terms whole: `CDL-A`, `OSHA-30`, `node.js` and
`c#` are tokens of their own (lowercased), and their parts (`cdl`, `a`,
`osha`, `30`) are tokens too, so a search for the whole term ranks the items
holding it first while a search for a part still finds them.

bm25s builds an immutable index, so changes mark the built one stale and the
next keyword search (or the background refresh the service starts after a
change) rebuilds it from the items' texts, which the index's log and
snapshots already keep: nothing more is stored, and a restart rebuilds it.
Building runs outside the index's lock, so searches and writes go on meanwhile.

bm25s (and scipy.sparse under it, about 0.1 s) is imported by the first
build, on the worker thread that builds, not when the server starts: an
index without texts never needs it, and `lakehouse serve` loads it once
listening (`load`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lakehouse.lazy import LazyImport
from lakehouse.runner import run_blocking
from lakehouse.vectors.records import Keys

if TYPE_CHECKING:
    import bm25s

log = logging.getLogger("lakehouse.vectors")


_TERM = re.compile(r"\w+(?:[-+./#'&]+\w+)*[+#]*")
_SPLIT = re.compile(r"[^\w]+")


# Imported by the first index build, or by the warm-up once the server listens.
load = LazyImport("bm25s").load


def tokenize(text: str) -> list[str]:
    """The BM25 terms of a text: whole terms (hyphens, dots kept) and their parts."""
    tokens: list[str] = []
    for term in _TERM.findall(text.lower()):
        tokens.append(term)
        if not term.isalnum():
            tokens.extend(part for part in _SPLIT.split(term) if part and part != term)
    return tokens


@dataclass(frozen=True)
class _Built:
    version: int
    keys: Keys
    retriever: bm25s.BM25 | None


class KeywordIndex:
    """A BM25 index over (key, text) pairs, rebuilt when the items change."""

    def __init__(self) -> None:
        self._built = _Built(-1, np.zeros(0, dtype=np.uint64), None)
        self._building = threading.Lock()

    @property
    def version(self) -> int:
        """The item version the built index reflects (-1: never built)."""
        return self._built.version

    def refresh(self, version: int, collect: Callable[[], tuple[int, list[int], list[str]]]) -> None:
        """Rebuild unless an index as new as `version` exists; one build at a time.

        `collect` returns the items' version, keys and texts, read consistently.
        """
        with self._building:
            if self._built.version >= version:
                return
            current, keys, texts = collect()
            self._built = _build(current, keys, texts)

    def search(self, query: str, k: int, allowed: Keys | None, key_bound: int) -> list[tuple[int, float]]:
        """The k best (key, BM25 score) pairs with a positive score, among `allowed` keys if given."""
        built = self._built
        if built.retriever is None or not len(built.keys):
            return []
        vocab = built.retriever.vocab_dict
        ids = [vocab[token] for token in tokenize(query) if token in vocab]
        if not ids:
            return []
        mask = None
        if allowed is not None:
            if not len(allowed):
                return []
            flags = np.zeros(max(key_bound, int(built.keys.max()) + 1), dtype=bool)
            flags[allowed] = True
            mask = flags[built.keys].astype(np.float32)
        scores = np.asarray(built.retriever.get_scores(ids, weight_mask=mask))
        positive = np.flatnonzero(scores > 0)
        top = positive[np.argpartition(-scores[positive], k - 1)[:k]] if len(positive) > k else positive
        order = top[np.lexsort((top, -scores[top]))]
        return [(int(built.keys[row]), float(scores[row])) for row in order]


async def rebuild_when_settled(name: str, stale: Callable[[], bool], rebuild: Callable[[], None]) -> None:
    """Rebuild on a worker thread while `stale()`, pausing first so a burst of changes lands in one build.

    The pause grows with the last build's time, so rebuilds take at most about a third of a core.
    """
    pause = 0.2
    try:
        while stale():
            await asyncio.sleep(pause)
            started = time.perf_counter()
            await run_blocking(rebuild)
            pause = max(0.2, 2 * (time.perf_counter() - started))
    except Exception:  # a searcher rebuilds it then; the failure must be seen, not lost with the task
        log.exception("index %s: keyword index rebuild failed", name)


def _build(version: int, keys: list[int], texts: list[str]) -> _Built:
    if not keys:
        return _Built(version, np.zeros(0, dtype=np.uint64), None)
    import bm25s
    from bm25s.tokenization import Tokenized

    vocab: dict[str, int] = {}
    ids = [[vocab.setdefault(token, len(vocab)) for token in tokenize(text)] for text in texts]
    retriever = bm25s.BM25()
    retriever.index(Tokenized(ids=ids, vocab=vocab), show_progress=False)
    return _Built(version, np.asarray(keys, dtype=np.uint64), retriever)
