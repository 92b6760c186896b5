"""One claimed send: short in-call retries of transient failures, every attempt measured and kept.

Longer retries are durable and decided by :mod:`notifier.domain.delivery`; what happens here takes
seconds. A platform's ``Retry-After`` longer than :data:`IN_CALL_MAX_WAIT` ends the call, so the
wait becomes a durable retry instead of a held lease.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from notifier.clock import Clock
from notifier.domain.notices import Attempt, AttemptOutcome, NoticeContent, SendResult
from notifier.failures import DeliveryError
from notifier.ports import Channel

log = structlog.get_logger("notifier.dispatch")

IN_CALL_ATTEMPTS = 3  # tries inside one claim before the failure becomes a durable retry
IN_CALL_MAX_WAIT = 10.0  # seconds; a longer Retry-After becomes a durable retry instead


@dataclass(frozen=True, slots=True, kw_only=True)
class SendOutcome:
    """The last attempt of a call, with the platform's answer or the error that ended it."""

    attempt: Attempt
    result: SendResult | None = None
    error: DeliveryError | None = None


def _retryable(error: BaseException) -> bool:
    if not isinstance(error, DeliveryError) or not error.transient:
        return False
    return error.retry_after is None or error.retry_after.total_seconds() <= IN_CALL_MAX_WAIT


def measured_attempt(
    at: datetime,
    channel: str,
    started: float,
    *,
    result: SendResult | None = None,
    error: DeliveryError | None = None,
) -> Attempt:
    """The attempt record of one send: when, over what, how it ended and how long it took."""
    duration_ms = int((time.perf_counter() - started) * 1000)
    if error is not None:
        outcome = AttemptOutcome.TRANSIENT_ERROR if error.transient else AttemptOutcome.PERMANENT_ERROR
        return Attempt(
            at=at,
            channel=channel,
            outcome=outcome,
            code=error.code,
            detail=error.detail,
            duration_ms=duration_ms,
            evidence=error.evidence,
        )
    assert result is not None
    return Attempt(
        at=at,
        channel=channel,
        outcome=AttemptOutcome.DELIVERED,
        code=result.code,
        detail=result.detail[:500],
        duration_ms=duration_ms,
        evidence=result.evidence,
    )


async def send_with_retries(
    channel: Channel,
    content: NoticeContent,
    *,
    clock: Clock,
    in_call_wait: float,
    keep_failed: Callable[[Attempt], Awaitable[None]],
    counted: Callable[[Attempt], None],
) -> SendOutcome:
    """Send ``content``, retrying transient failures a few times within the call.

    ``keep_failed`` stores a failed attempt that will be retried within the call (the last attempt is
    returned, to be stored with the state change); ``counted`` sees every attempt as it ends.
    """
    last: SendOutcome | None = None

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, DeliveryError) and error.retry_after is not None:
            return error.retry_after.total_seconds()
        return float(wait_exponential(multiplier=in_call_wait, max=IN_CALL_MAX_WAIT)(state))

    async def before_sleep(state: RetryCallState) -> None:
        if last is not None:
            await keep_failed(last.attempt)

    try:
        async for try_ in AsyncRetrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(IN_CALL_ATTEMPTS),
            wait=wait,
            before_sleep=before_sleep,
            reraise=True,
        ):
            with try_:
                started = time.perf_counter()
                at = clock.now()
                try:
                    result = await channel.send(content)
                except DeliveryError as error:
                    last = SendOutcome(
                        attempt=measured_attempt(at, channel.name, started, error=error), error=error
                    )
                    counted(last.attempt)
                    log.warning(
                        "notice.attempt_failed",
                        channel=channel.name,
                        code=error.code,
                        transient=error.transient,
                        detail=error.detail,
                    )
                    raise
                done = SendOutcome(
                    attempt=measured_attempt(at, channel.name, started, result=result), result=result
                )
                counted(done.attempt)
                return done
    except DeliveryError:
        assert last is not None
        return last
    raise AssertionError("unreachable: AsyncRetrying returns or raises")
