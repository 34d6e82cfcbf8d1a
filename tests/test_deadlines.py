"""engine.deadlines without a database: the sweep's deadlines and the current task."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from engine import deadlines

RUNNERS: dict[str, Callable[[Coroutine[Any, Any, Any]], Any]] = {
    "asyncio": asyncio.run,
    "uvloop": uvloop.run,
}


@pytest.mark.parametrize("loop", sorted(RUNNERS))
def test_current_task_is_asyncios_in_every_task(loop: str) -> None:
    async def one() -> bool:
        return deadlines.current_task(asyncio.get_running_loop()) is asyncio.current_task()

    async def main() -> list[bool]:
        return [await one(), *await asyncio.gather(one(), one())]

    assert RUNNERS[loop](main()) == [True, True, True]


@pytest.mark.parametrize("loop", sorted(RUNNERS))
def test_a_deadline_cancels_its_own_task_and_says_so(loop: str) -> None:
    async def main() -> tuple[bool, bool]:
        late = deadlines.start(0.01)
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            expired = late.expired()
        finally:
            late.finish()
        quick = deadlines.start(5)
        await asyncio.sleep(0)
        quick.finish()
        return expired, quick.expired()

    assert RUNNERS[loop](main()) == (True, False)
