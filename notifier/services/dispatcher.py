"""Dispatch: pending requests become notices, and notices reach their platforms (SPEC §6).

Two loops share the work of one daemon process, and any number of processes share one store:

* the **batcher** closes notices per platform (full, waited long enough, or urgent) and commits
  each notice with its membership before anything is sent: the store is the outbox;
* the **sender** claims due notices with a lease, sends each over its channel with short in-call
  retries, and records the outcome: delivered, a durable retry time, the fallback channel, or
  failure with an alert to the operations staff.

Nothing here holds a transaction across network I/O; a process killed mid-send leaves a lease
that expires, and another process takes the notice over (a duplicate delivery at most, carrying
the same notice id and Message-ID).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_exponential_jitter,
)

from notifier.clock import Clock
from notifier.domain.batching import decide
from notifier.domain.models import TakedownRequest
from notifier.domain.notices import (
    Attempt,
    AttemptOutcome,
    Authority,
    MessageKind,
    Notice,
    NoticeContent,
    SendResult,
)
from notifier.domain.retry import next_attempt
from notifier.errors import NotifierError, StoreUnavailable
from notifier.failures import DeliveryError
from notifier.metrics import Metrics
from notifier.ports import Channel, Store
from notifier.services.alerts import FailureAlerter, OperationsAlerts
from notifier.waiting import earliest, idle

log = structlog.get_logger("notifier.dispatch")
_T = TypeVar("_T")

IN_CALL_ATTEMPTS = 3  # tries inside one claim before the failure becomes a durable retry
IN_CALL_MAX_WAIT = 10.0  # seconds; a longer Retry-After becomes a durable retry instead


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """How one platform is reached, and its rules."""

    platform: str
    name: str
    language: str
    primary: Channel
    fallback: Channel | None
    max_items: int
    max_wait: timedelta
    rate_per_minute: int
    ack_within: timedelta
    removal_within: timedelta
    callback_url: str | None = None

    def channel(self, name: str) -> Channel:
        if name == self.primary.name:
            return self.primary
        if self.fallback is not None and name == self.fallback.name:
            return self.fallback
        raise NotifierError(f"platform {self.platform} has no {name} channel configured")


def notice_content(
    notice: Notice,
    route: Route,
    requests: Sequence[TakedownRequest],
    *,
    authority: Authority,
    labels: Mapping[str, str],
    kind: MessageKind,
) -> NoticeContent:
    """What a channel renders for ``notice``: the notice itself, or a reminder or escalation of it."""
    return NoticeContent(
        notice_id=notice.notice_id,
        platform=route.platform,
        platform_name=route.name,
        language=route.language,
        created_at=notice.created_at,
        # The deadlines a notice states are fixed from its creation, so every send of it (retries,
        # the fallback, a re-send, its reminders) carries the same deadlines, and the same body
        # under the same Idempotency-Key. The SLA itself is measured from delivery, which is never
        # earlier: the stated deadline is the stricter of the two.
        ack_by=notice.created_at + route.ack_within,
        remove_by=notice.created_at + route.removal_within,
        authority=authority,
        requests=tuple(requests),
        category_labels=dict(labels),
        callback_url=route.callback_url,
        kind=kind,
    )


def process_owner() -> str:
    """A lease owner id unique to this process: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Dispatcher:
    def __init__(
        self,
        *,
        store: Store,
        routes: Mapping[str, Route],
        authority: Authority,
        category_labels: Mapping[str, str],
        clock: Clock,
        metrics: Metrics,
        deliver_within: timedelta,
        alerts: OperationsAlerts | None,
        owner: str | None = None,
        lease: timedelta = timedelta(minutes=5),
        concurrency: int = 8,
        poll_interval: float = 0.5,
        in_call_wait: float = 1.0,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._routes = dict(routes)
        self._authority = authority
        self._labels = dict(category_labels)
        self._clock = clock
        self._metrics = metrics
        self._deliver_within = deliver_within
        self.owner = owner or process_owner()
        self._lease = lease
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._poll = poll_interval
        self._in_call_wait = in_call_wait
        # Jitter spreads retries of processes that failed together; it needs no cryptographic strength.
        self._rng = rng or random.Random()  # noqa: S311
        self._kick = asyncio.Event()
        # Forming notices and alerting take a query per platform; they run when kicked (new pending
        # requests, a failure to alert), when the batching deadline comes, and at every real-time
        # poll (work of other processes), not after every send that frees a slot.
        self._housekeeping_due = True
        self._form_wake_at: datetime | None = None
        self._next_housekeeping = 0.0
        # Called with the platform and the time after a delivery is recorded (the SLA monitor's
        # ``delivered``): a new notice's reminder is planned at once instead of at its next poll.
        self.on_delivered: Callable[[str, datetime], None] | None = None
        self._waiting = False
        self._in_flight: set[asyncio.Task[None]] = set()
        self._alerter = FailureAlerter(store=store, alerts=alerts, clock=clock, metrics=metrics)

    def kick(self) -> None:
        """New pending requests or due notices: look now rather than at the next poll."""
        self._housekeeping_due = True
        self._kick.set()

    # -- the loops ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        log.info("dispatch.started", owner=self.owner, platforms=sorted(self._routes))
        outage = 0
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                self._kick.clear()
                try:
                    if (
                        self._housekeeping_due
                        or loop.time() >= self._next_housekeeping
                        or (self._form_wake_at is not None and self._clock.now() >= self._form_wake_at)
                    ):
                        self._housekeeping_due = False
                        self._next_housekeeping = loop.time() + self._poll
                        self._form_wake_at = await self.form_notices()
                        await self.send_alerts()
                    claimed = await self.send_due(stop)
                    if claimed >= self._concurrency:
                        continue  # more may be due right away
                    # A durable retry falls due on the business clock: sleep on the clock until
                    # then. One already due waits for a free send slot (freeing one kicks the loop).
                    wake_at = self._form_wake_at
                    retry_at = await self._store.next_attempt_due()
                    if retry_at is not None and retry_at > self._clock.now():
                        wake_at = earliest(wake_at, retry_at)
                except StoreUnavailable as error:
                    # The store restarts or the network blips: the work is all in the store, so
                    # waiting and asking again loses nothing.
                    self._housekeeping_due = True
                    outage += 1
                    self._metrics.store_retries.labels(operation="dispatch").inc()
                    log.warning("store.unavailable", operation="dispatch", error=str(error))
                    await self._pause(stop, min(5.0, 0.1 * 2**outage))
                    continue
                outage = 0
                await self._idle(stop, wake_at)
        finally:
            await self.drain()
            log.info("dispatch.stopped", owner=self.owner)

    async def _idle(self, stop: asyncio.Event, wake_at: datetime | None) -> None:
        self._waiting = True
        try:
            await idle(kick=self._kick, stop=stop, clock=self._clock, wake_at=wake_at, poll=self._poll)
        finally:
            self._waiting = False

    @property
    def quiet(self) -> bool:
        """Nothing in hand: the loop waits for its next business deadline (or a kick not yet taken)
        and no send is in flight. What the demo's clock waits for before jumping ahead."""
        return self._waiting and not self._kick.is_set() and not self._in_flight

    async def _persist(self, operation: str, write: Callable[[], Awaitable[_T]]) -> _T:
        """Write an outcome, waiting out a store outage for up to half the lease.

        The send has already happened; losing its record would send it again. Past half the lease
        the write gives up: the lease then expires and the notice is sent again (same notice id,
        same Message-ID), the one duplicate an outage this long can cause.
        """
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(StoreUnavailable),
            wait=wait_exponential_jitter(multiplier=0.1, max=5.0),
            stop=stop_after_delay(self._lease.total_seconds() / 2),
            reraise=True,
            before_sleep=lambda state: log.warning("store.unavailable", operation=operation),
        ):
            with attempt:
                return await write()
        raise AssertionError("unreachable: AsyncRetrying returns or raises")

    async def _pause(self, stop: asyncio.Event, seconds: float) -> None:
        """Wait ``seconds`` of real time, or less if the daemon stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)

    async def drain(self) -> None:
        """Let in-flight sends finish (the supervisor cancels them after the grace period)."""
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    # -- batching -------------------------------------------------------------------------------

    async def form_notices(self) -> datetime | None:
        """Close every notice that is due now; return the earliest time one will be due."""
        wake_at: datetime | None = None
        for route in self._routes.values():
            while True:
                now = self._clock.now()
                summary = await self._store.pending_summary(route.platform)
                decision = decide(summary, now=now, max_items=route.max_items, max_wait=route.max_wait)
                if not decision.close:
                    wake_at = earliest(wake_at, decision.wake_at)
                    break
                notice = await self._store.form_notice(
                    route.platform,
                    max_items=route.max_items,
                    channel=route.primary.name,
                    now=now,
                    deliver_by=now + self._deliver_within,
                )
                if notice is None:
                    break  # another process took them
                self._metrics.notices.labels(platform=route.platform, reason=decision.reason).inc()
                log.info(
                    "notice.created",
                    notice_id=notice.notice_id,
                    platform=route.platform,
                    channel=notice.channel,
                    requests=len(notice.request_ids),
                    reason=decision.reason,
                )
        return wake_at

    # -- sending --------------------------------------------------------------------------------

    async def send_due(self, stop: asyncio.Event) -> int:
        """Claim what is due (up to the free send slots) and start sending it."""
        free = self._concurrency - len(self._in_flight)
        if free <= 0 or stop.is_set():
            return 0
        notices = await self._store.claim_due(
            owner=self.owner, now=self._clock.now(), lease=self._lease, limit=free
        )
        for notice in notices:
            task = asyncio.create_task(self._send_guarded(notice), name=f"send {notice.notice_id}")
            self._in_flight.add(task)
            task.add_done_callback(self._sent)
        return len(notices)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._kick.set()  # a slot is free

    async def _send_guarded(self, notice: Notice) -> None:
        async with self._slots:
            try:
                await self.send(notice)
            except asyncio.CancelledError:
                # Shutdown past the grace period: hand the notice back so the next process
                # (or this one, restarted) takes it at once instead of waiting for the lease.
                await asyncio.shield(self._store.release(notice.notice_id, owner=self.owner))
                raise
            except StoreUnavailable:
                # The outcome could not be written even after waiting: the lease runs out and the
                # notice is taken again, by this process or another.
                log.error("notice.outcome_not_recorded", notice_id=notice.notice_id, platform=notice.platform)
            except Exception as error:
                # A fault of notifier itself (a template error, a bug): treated as a transient
                # failure, so it backs off like any other instead of being claimed again at once.
                log.exception("notice.send_crashed", notice_id=notice.notice_id, platform=notice.platform)
                await self._internal_failure(notice, f"internal error: {type(error).__name__}")

    async def send(self, notice: Notice) -> None:
        """Send one claimed notice and record what happened."""
        route = self._routes.get(notice.platform)
        if route is None:
            # The platform left the configuration while its notice was open: keep the notice,
            # and try again later (the operator may restore the platform).
            log.error("notice.unroutable", notice_id=notice.notice_id, platform=notice.platform)
            await self._internal_failure(notice, f"platform {notice.platform} is not configured")
            return
        structlog.contextvars.bind_contextvars(notice_id=notice.notice_id, platform=notice.platform)
        try:
            channel = route.channel(notice.channel)
            content = await self._content(notice, route)
            if route.rate_per_minute > 0:
                wait = await self._store.take_rate_slot(route.platform, per_minute=route.rate_per_minute)
                if wait > 0:
                    # No slot: hand the notice back, due when one will be free, rather than hold
                    # its lease (which could run out: a second send) and a send slot (which other
                    # platforms need) while waiting.
                    until = self._clock.now() + timedelta(seconds=wait)
                    await self._store.release(notice.notice_id, owner=self.owner, until=until)
                    log.info("notice.rate_limited", wait_s=round(wait, 2))
                    return
            result, attempt, error = await self._send_with_retries(notice, channel, content)
            if result is not None:
                await self._delivered(notice, route, attempt, result)
            else:
                await self._not_delivered(notice, route, attempt, error)
        finally:
            structlog.contextvars.unbind_contextvars("notice_id", "platform")

    async def _internal_failure(self, notice: Notice, detail: str) -> None:
        now = self._clock.now()
        attempt = Attempt(
            at=now, channel=notice.channel, outcome=AttemptOutcome.TRANSIENT_ERROR, detail=detail
        )
        await self._record_failure(notice, attempt, next_attempt_at=self._retry_at(notice, now, None))

    def _retry_at(self, notice: Notice, now: datetime, retry_after: timedelta | None) -> datetime | None:
        """The next durable attempt on the notice's channel, or None when its window is spent."""
        failures = 1 + sum(1 for a in notice.attempts if a.channel == notice.channel)
        decision = next_attempt(
            failures=failures, now=now, deadline=notice.deliver_by, rng=self._rng, retry_after=retry_after
        )
        return decision.retry_at

    async def _record_failure(
        self,
        notice: Notice,
        attempt: Attempt,
        *,
        next_attempt_at: datetime | None,
        channel: str | None = None,
        deliver_by: datetime | None = None,
        fallback_used: bool | None = None,
    ) -> bool:
        """Keep the failed attempt and the notice's next state; by default it stays on its channel.
        A notice that failed for good is alerted about at the loop's next turn."""
        recorded = await self._persist(
            "record_failure",
            lambda: self._store.record_failure(
                notice.notice_id,
                owner=self.owner,
                attempt=attempt,
                channel=channel or notice.channel,
                next_attempt_at=next_attempt_at,
                deliver_by=deliver_by or notice.deliver_by,
                fallback_used=notice.fallback_used if fallback_used is None else fallback_used,
            ),
        )
        if recorded and next_attempt_at is None:
            self.kick()
        return recorded

    async def _content(self, notice: Notice, route: Route) -> NoticeContent:
        requests = await self._store.notice_requests(notice.notice_id)
        return notice_content(
            notice, route, requests, authority=self._authority, labels=self._labels, kind=MessageKind.NOTICE
        )

    async def _send_with_retries(
        self, notice: Notice, channel: Channel, content: NoticeContent
    ) -> tuple[SendResult | None, Attempt, DeliveryError | None]:
        """Short in-call retries (tenacity) for transient failures; every attempt is kept.

        Returns the result and its attempt, or None with the last failed attempt and its error."""
        last: Attempt | None = None
        failure: DeliveryError | None = None

        def retryable(error: BaseException) -> bool:
            if not isinstance(error, DeliveryError) or not error.transient:
                return False
            return error.retry_after is None or error.retry_after.total_seconds() <= IN_CALL_MAX_WAIT

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, DeliveryError) and error.retry_after is not None:
                return error.retry_after.total_seconds()
            return float(wait_exponential(multiplier=self._in_call_wait, max=IN_CALL_MAX_WAIT)(state))

        async def before_sleep(state: RetryCallState) -> None:
            # A failed in-call attempt that will be retried now: keep it; the last one is recorded
            # together with the state change.
            failed = last
            if failed is not None:
                await self._persist(
                    "record_attempt",
                    lambda: self._store.record_attempt(notice.notice_id, owner=self.owner, attempt=failed),
                )

        try:
            async for try_ in AsyncRetrying(
                retry=retry_if_exception(retryable),
                stop=stop_after_attempt(IN_CALL_ATTEMPTS),
                wait=wait,
                before_sleep=before_sleep,
                reraise=True,
            ):
                with try_:
                    started = time.perf_counter()
                    at = self._clock.now()
                    try:
                        result = await channel.send(content)
                    except DeliveryError as error:
                        failure = error
                        last = self._attempt(at, channel.name, started, error=error)
                        self._count_attempt(notice, last)
                        log.warning(
                            "notice.attempt_failed",
                            channel=channel.name,
                            code=error.code,
                            transient=error.transient,
                            detail=error.detail,
                        )
                        raise
                    last = self._attempt(at, channel.name, started, result=result)
                    self._count_attempt(notice, last)
                    return result, last, None
        except DeliveryError:
            assert last is not None
            return None, last, failure
        raise AssertionError("unreachable: AsyncRetrying returns or raises")

    def _attempt(
        self,
        at: datetime,
        channel: str,
        started: float,
        *,
        result: SendResult | None = None,
        error: DeliveryError | None = None,
    ) -> Attempt:
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
            )
        assert result is not None
        return Attempt(
            at=at,
            channel=channel,
            outcome=AttemptOutcome.DELIVERED,
            code=result.code,
            detail=result.detail[:500],
            duration_ms=duration_ms,
        )

    def _count_attempt(self, notice: Notice, attempt: Attempt) -> None:
        self._metrics.attempts.labels(
            platform=notice.platform, channel=attempt.channel, outcome=attempt.outcome.value
        ).inc()

    async def _delivered(self, notice: Notice, route: Route, attempt: Attempt, result: SendResult) -> None:
        if not await self._persist(
            "record_delivery",
            lambda: self._store.record_delivery(
                notice.notice_id, owner=self.owner, attempt=attempt, result=result, channel=attempt.channel
            ),
        ):
            log.warning("notice.lease_lost", channel=attempt.channel)
            return
        if result.awaiting_submission:
            self._metrics.notice_outcomes.labels(platform=route.platform, outcome="awaiting_submission").inc()
            log.info("notice.awaiting_submission", channel=attempt.channel, outbox=result.detail)
            return
        self._metrics.notice_outcomes.labels(platform=route.platform, outcome="delivered").inc()
        log.info(
            "notice.delivered",
            channel=attempt.channel,
            code=attempt.code,
            message_id=result.message_id,
            ticket=result.ticket,
            requests=len(notice.request_ids),
        )
        if result.ticket:
            log.info("receipt.received", source=attempt.channel, ticket=result.ticket)
        if self.on_delivered is not None:
            self.on_delivered(notice.platform, attempt.at)

    async def _not_delivered(
        self, notice: Notice, route: Route, attempt: Attempt, error: DeliveryError | None
    ) -> None:
        """A durable retry, the fallback channel, or failure: decided here, in that order."""
        now = self._clock.now()
        if attempt.outcome is AttemptOutcome.TRANSIENT_ERROR:
            retry_at = self._retry_at(notice, now, error.retry_after if error is not None else None)
            if retry_at is not None:
                if await self._record_failure(notice, attempt, next_attempt_at=retry_at):
                    log.info("notice.retry_scheduled", channel=notice.channel, retry_at=retry_at.isoformat())
                return
        fallback = route.fallback
        if fallback is not None and not notice.fallback_used and notice.channel != fallback.name:
            if await self._record_failure(
                notice,
                attempt,
                next_attempt_at=now,
                channel=fallback.name,
                deliver_by=now + self._deliver_within,
                fallback_used=True,
            ):
                self._metrics.notice_outcomes.labels(platform=route.platform, outcome="fallback").inc()
                log.warning(
                    "notice.fallback", channel=notice.channel, fallback=fallback.name, detail=attempt.detail
                )
                self._kick.set()
            return
        if await self._record_failure(notice, attempt, next_attempt_at=None):
            self._metrics.notice_outcomes.labels(platform=route.platform, outcome="failed").inc()
            log.error(
                "notice.failed",
                channel=notice.channel,
                detail=attempt.detail,
                requests=len(notice.request_ids),
            )

    async def send_alerts(self) -> None:
        """Alert the operations staff about failed notices not yet alerted."""
        await self._alerter.send_pending()
