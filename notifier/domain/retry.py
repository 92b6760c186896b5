"""The durable retry schedule (SPEC §6.4): exponential backoff with jitter, bounded by a deadline.

Short retries inside one call (seconds) are tenacity's job in the dispatcher; this module decides
when the *next durable attempt* happens, a time the store keeps so that a restart loses no schedule.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

BASE_DELAY = timedelta(seconds=30)
MAX_DELAY = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class RetryDecision:
    retry_at: datetime | None  # None: the window is spent; fall back or fail

    @property
    def give_up(self) -> bool:
        return self.retry_at is None


def next_attempt(
    *,
    failures: int,
    now: datetime,
    deadline: datetime,
    rng: random.Random,
    retry_after: timedelta | None = None,
    base: timedelta = BASE_DELAY,
    cap: timedelta = MAX_DELAY,
) -> RetryDecision:
    """When to try again after the ``failures``-th consecutive transient failure.

    The delay doubles from ``base`` up to ``cap`` and is jittered over its upper half, so processes
    that failed together do not retry together; a platform's ``Retry-After`` is a floor. A retry
    that would land past ``deadline`` is pulled back to the deadline for one last attempt there;
    once ``now`` has reached the deadline, the decision is to give up.
    """
    if now >= deadline:
        return RetryDecision(retry_at=None)
    exponent = max(0, failures - 1)
    delay = min(cap, base * (2 ** min(exponent, 32)))
    jittered = delay / 2 + (delay / 2) * rng.random()
    if retry_after is not None and retry_after > jittered:
        jittered = retry_after
    return RetryDecision(retry_at=min(now + jittered, deadline))
