"""How a service loop waits between rounds: until a kick, a stop, the next deadline or a poll.

Shared by every loop that sleeps until its next due work, whatever its layer, so it depends on the
clock only.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from notifier.clock import Clock


def earliest(first: datetime | None, second: datetime | None) -> datetime | None:
    """The earlier of two optional deadlines (None: no deadline)."""
    if first is None or second is None:
        return first or second
    return min(first, second)


async def idle(
    *, kick: asyncio.Event, stop: asyncio.Event, clock: Clock, wake_at: datetime | None, poll: float
) -> None:
    """Return at a kick, a stop, the next business deadline ``wake_at`` (through the clock, so a
    simulated one can jump there), or after ``poll`` seconds of real time, whichever comes first.

    The real-time poll is what notices work done by other processes sharing the store.
    """
    waiters: list[asyncio.Future[Any]] = [
        asyncio.ensure_future(kick.wait()),
        asyncio.ensure_future(stop.wait()),
    ]
    if wake_at is not None:
        delay = (wake_at - clock.now()).total_seconds()
        waiters.append(asyncio.ensure_future(clock.sleep(max(0.0, delay))))
    try:
        await asyncio.wait(waiters, timeout=poll, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
