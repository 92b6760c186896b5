"""When the simulated platform staff act: actions queued on business time.

The staff never sleep by themselves. Each action is queued at a business time; whoever drives the
sandbox runs what is due. ``notifier demo`` runs them itself between jumps of its simulated clock,
so it knows exactly when the staff are busy; the standalone sandbox runs :meth:`Timeline.run`
on the real clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import Awaitable, Callable
from datetime import datetime

import structlog

from notifier.clock import Clock

log = structlog.get_logger("notifier.sandbox")

Action = Callable[[], Awaitable[None]]


class Timeline:
    def __init__(self) -> None:
        self._queue: list[tuple[datetime, int, str, Action]] = []
        self._order = itertools.count()
        self._changed = asyncio.Event()
        self.failures: list[str] = []  # actions that raised: (what, error), for the driver to report

    def at(self, when: datetime, what: str, action: Action) -> None:
        """Queue ``action`` (described by ``what``) for business time ``when``."""
        heapq.heappush(self._queue, (when, next(self._order), what, action))
        self._changed.set()

    @property
    def next_at(self) -> datetime | None:
        return self._queue[0][0] if self._queue else None

    def __len__(self) -> int:
        return len(self._queue)

    async def run_due(self, now: datetime) -> int:
        """Run every action due at ``now`` (and those they queue for ``now``), in time order."""
        ran = 0
        while self._queue and self._queue[0][0] <= now:
            _, _, what, action = heapq.heappop(self._queue)
            try:
                await action()
            except Exception as error:
                # One platform's failed reply must not stop the others; the driver reports it.
                self.failures.append(f"{what}: {type(error).__name__}: {error}")
                log.warning("sandbox.action_failed", what=what, error=f"{type(error).__name__}: {error}")
            ran += 1
        return ran

    async def run(self, clock: Clock, stop: asyncio.Event) -> None:
        """Run actions as their time comes on ``clock`` until ``stop`` (the standalone sandbox)."""
        while not stop.is_set():
            self._changed.clear()
            await self.run_due(clock.now())
            waiters: list[asyncio.Future[object]] = [
                asyncio.ensure_future(self._changed.wait()),
                asyncio.ensure_future(stop.wait()),
            ]
            if (next_at := self.next_at) is not None:
                delay = (next_at - clock.now()).total_seconds()
                waiters.append(asyncio.ensure_future(clock.sleep(max(0.0, delay))))
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.gather(*waiters, return_exceptions=True)
