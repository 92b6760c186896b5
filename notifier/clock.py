"""The one seam for business time.

Nothing in notifier reads the wall clock or sleeps for business reasons except through a
:class:`Clock`. Tests and the demo drive a :class:`SimulatedClock`, so a 36-hour rule is tested in
milliseconds. Transport timing (socket timeouts, polling an empty queue, batching linger) is not
business time and uses the event loop directly.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait for ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """Real time."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class SimulatedClock:
    """Virtual time that moves only when told to.

    ``advance()`` moves time forward and wakes every sleeper whose deadline has come, in deadline
    order, letting each run before the next one is woken.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2024, 9, 1, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("SimulatedClock needs a timezone-aware start time")
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + timedelta(seconds=seconds), next(self._counter), future))
        await future

    @property
    def next_deadline(self) -> datetime | None:
        """The earliest time a sleeper waits for, if any."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    async def advance(self, delta: timedelta | float) -> None:
        """Move time forward by ``delta``, waking sleepers as their deadlines pass."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        if step < timedelta(0):
            raise ValueError("time does not go backwards")
        target = self._now + step
        while (deadline := self.next_deadline) is not None and deadline <= target:
            _, _, future = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            future.set_result(None)
            # Let the woken task (and whatever it schedules) run before time moves on.
            for _ in range(3):
                await asyncio.sleep(0)
        self._now = target
