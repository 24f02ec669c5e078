"""Per-name locks: shared while in use, gone once nothing holds them."""

from __future__ import annotations

import asyncio

from lakehouse.named_locks import NamedLocks


async def test_writers_of_one_name_take_turns_and_other_names_do_not_wait() -> None:
    locks = NamedLocks()
    order: list[str] = []
    release = asyncio.Event()

    async def first() -> None:
        async with locks("jobs"):
            order.append("first in")
            await release.wait()
            order.append("first out")

    async def second() -> None:
        async with locks("jobs"):
            order.append("second in")

    async def other() -> None:
        async with locks("people"):
            order.append("other in")

    holder = asyncio.create_task(first())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(second())
    await other()  # another name goes straight in while "jobs" is held
    await asyncio.sleep(0)
    assert order == ["first in", "other in"]
    release.set()
    await asyncio.gather(holder, waiter)
    assert order == ["first in", "other in", "first out", "second in"]


async def test_names_no_one_holds_leave_no_lock_behind() -> None:
    locks = NamedLocks()
    for i in range(10_000):  # a client trying name after name
        async with locks(f"name_{i}"):
            pass
    assert len(locks) == 0
    held = locks("kept")
    async with held:
        assert locks("kept") is held
        assert len(locks) == 1
