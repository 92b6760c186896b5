"""Waiting out an unavailable store or broker: the one backoff of the daemon's consumers.

A consumer that finds the store unavailable keeps the work it holds, waits and tries again: capped
exponential waits in real time (transport time, not business time), with a little jitter so that
daemons sharing a store do not all come back in the same instant, cut short by the stop event.
The work in hand is never acknowledged meanwhile, so waiting loses nothing; if the daemon stops
during the wait, :class:`Stopped` tells the caller to hand its work back.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

from notifier.errors import StoreUnavailable
from notifier.metrics import Metrics

log = structlog.get_logger("notifier.runtime")

_T = TypeVar("_T")

FIRST_WAIT_S = 0.1
MAX_WAIT_S = 5.0


class Stopped(Exception):
    """The daemon stopped while an operation waited for the store; the caller hands its work back."""


@dataclass(slots=True)
class Backoff:
    """Doubling waits from ``first`` up to ``cap`` seconds, plus up to a tenth more of jitter."""

    first: float = FIRST_WAIT_S
    cap: float = MAX_WAIT_S
    failures: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def failed(self) -> float:
        """Count one more failure in a row; the seconds to wait before the next try."""
        self.failures += 1
        base: float = min(self.cap, self.first * 2.0 ** min(self.failures - 1, 30))
        return base + self.rng.uniform(0.0, base / 10)

    def succeeded(self) -> None:
        self.failures = 0


async def pause(stop: asyncio.Event | None, seconds: float) -> bool:
    """Wait ``seconds`` of real time, or less if ``stop`` is set; whether the daemon is stopping."""
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    if not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


async def while_store_unavailable(
    call: Callable[[], Awaitable[_T]],
    *,
    operation: str,
    stop: asyncio.Event | None,
    metrics: Metrics | None = None,
    backoff: Backoff | None = None,
) -> _T:
    """``await call()`` until it does not raise :class:`StoreUnavailable`.

    Each failure is logged as ``store.unavailable`` with ``operation`` and counted in
    ``notifier_store_retries``. Raises :class:`Stopped` if ``stop`` is set while waiting (never
    while ``call`` runs: a write under way is finished or fails on its own). Without ``stop`` only
    a cancellation ends the wait.
    """
    backoff = backoff if backoff is not None else Backoff()
    while True:
        try:
            result = await call()
        except StoreUnavailable as error:
            delay = backoff.failed()
            if metrics is not None:
                metrics.store_retries.labels(operation=operation).inc()
            log.warning(
                "store.unavailable",
                operation=operation,
                error=str(error),
                failures=backoff.failures,
                retry_in_s=round(delay, 2),
            )
            if await pause(stop, delay):
                raise Stopped(operation) from None
            continue
        if backoff.failures:
            log.info("store.available", operation=operation, after_failures=backoff.failures)
            backoff.succeeded()
        return result
