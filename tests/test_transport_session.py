"""The pooled upstream session: made on first use, made again once closed, never dropped unclosed."""

from __future__ import annotations

import asyncio

from lakehouse.providers.transport import LazySession


async def test_a_session_made_while_the_old_one_closes_is_the_one_kept() -> None:
    lazy = LazySession(timeout=5.0)
    first = await lazy.get()
    closing = asyncio.create_task(lazy.close())
    await asyncio.sleep(0)  # the close has begun and waits on the old session
    during = await lazy.get()
    await closing
    assert first.closed
    assert not during.closed
    # The session made during the close is the one a later caller gets, so it is the one closed at exit.
    assert await lazy.get() is during
    await lazy.close()
    assert during.closed


async def test_a_closed_session_is_made_again_on_the_next_use() -> None:
    lazy = LazySession(timeout=5.0)
    first = await lazy.get()
    assert await lazy.get() is first
    await lazy.close()
    again = await lazy.get()
    assert again is not first and not again.closed
    await lazy.close()
    assert again.closed
