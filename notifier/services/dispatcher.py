"""Dispatch: pending requests become notices, and notices reach their platforms (SPEC §6).

Two loops share the work of one daemon process, and any number of processes share one store:

* the **batcher** closes notices per platform (full, waited long enough, or urgent) and commits
  each notice with its membership before anything is sent: the store is the outbox;
* the **sender** claims due notices with a lease, urgent ones first, sends each over its channel
  with short in-call retries, and records the outcome: delivered, a durable retry time, the
  fallback channel, or failure with an alert to the operations staff.

Urgent requests (``priority = "urgent"``, or of an urgent deadline profile) jump every queue: intake
wakes a third loop, the **urgent path** (:meth:`Dispatcher.kick_urgent`), which closes a notice of
the urgent requests at once and sends it on send slots of its own that normal notices never take,
so an urgent notice waits neither for the batcher's next round nor behind a backlog of others.

Nothing here holds a transaction across network I/O; a process killed mid-send leaves a lease
that expires, and another process takes the notice over (a duplicate delivery at most, carrying
the same notice id and Message-ID).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

import structlog

from notifier.clock import Clock
from notifier.domain.models import TakedownRequest
from notifier.domain.notices import Attempt, Authority, MessageKind, Notice, NoticeContent
from notifier.errors import StoreUnavailable
from notifier.metrics import Metrics
from notifier.ports import Store
from notifier.services.alerts import FailureAlerter, OperationsAlerts
from notifier.services.batcher import Batcher, UrgentSlots
from notifier.services.leases import holding, persist
from notifier.services.outcomes import Outcomes
from notifier.services.routes import Route, notice_content, process_owner
from notifier.services.send_attempts import send_with_retries
from notifier.waiting import earliest, idle

__all__ = ["Dispatcher", "Route", "notice_content", "process_owner"]

log = structlog.get_logger("notifier.dispatch")
_T = TypeVar("_T")

# How long a claim holds by default. It is renewed while its send runs (every third of it), so it
# can be short: a killed process's notice is taken over within this time.
DEFAULT_LEASE = timedelta(seconds=45)


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
        lease: timedelta = DEFAULT_LEASE,
        concurrency: int = 8,
        urgent_slots: int = 4,
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
        self._outcomes = Outcomes(
            store=store,
            routes=self._routes,
            clock=clock,
            metrics=metrics,
            deliver_within=deliver_within,
            owner=self.owner,
            lease=lease,
            rng=self._rng,
            kick=self.kick,
        )
        self._waiting = False
        self._in_flight: set[asyncio.Task[None]] = set()
        # The urgent path: woken by intake (form and send) or by a finished urgent send (send).
        self._urgent_kick = asyncio.Event()
        self._urgent_form_due = True
        self._urgent_groups: set[tuple[str, str | None]] = set()
        self._urgent_waiting = False
        self._urgent = UrgentSlots(
            owner=self.owner,
            lease=lease,
            slots=urgent_slots,
            start=lambda notice, requests: self._start(
                notice, self._urgent.in_flight, self._urgent_kick, requests
            ),
        )
        self._batcher = Batcher(
            store=store, routes=self._routes, clock=clock, metrics=metrics, deliver_within=deliver_within
        )
        self._alerter = FailureAlerter(store=store, alerts=alerts, clock=clock, metrics=metrics)

    @property
    def on_delivered(self) -> Callable[[str, datetime], None] | None:
        """Called with the platform and the delivery time after a delivery is recorded."""
        return self._outcomes.on_delivered

    @on_delivered.setter
    def on_delivered(self, callback: Callable[[str, datetime], None] | None) -> None:
        self._outcomes.on_delivered = callback

    def kick(self) -> None:
        """New pending requests or due notices: look now rather than at the next poll."""
        self._housekeeping_due = True
        self._kick.set()

    def kick_urgent(self, requests: Iterable[TakedownRequest] = ()) -> None:
        """Urgent requests were stored: close their notices and send them now, on the urgent path.
        Without ``requests``, every platform's waiting urgent requests are looked for."""
        groups = {(r.platform, r.deadline) for r in requests}
        if groups:
            self._urgent_groups |= groups
        else:
            self._urgent_form_due = True
        self._urgent_kick.set()

    # -- the loops ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        log.info("dispatch.started", owner=self.owner, platforms=sorted(self._routes))
        outage = 0
        loop = asyncio.get_running_loop()
        urgent = asyncio.create_task(self.run_urgent(stop), name="dispatch urgent")
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
                        # A backlog is batched a few notices at a time between claims, so its
                        # first notices are on their way while the rest are still being formed.
                        self._form_wake_at, more = await self._batcher.form_some(self._concurrency)
                        if more:
                            self.kick()
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
            urgent.cancel()
            await asyncio.gather(urgent, return_exceptions=True)
            await self.drain()
            log.info("dispatch.stopped", owner=self.owner)

    async def run_urgent(self, stop: asyncio.Event) -> None:
        """The urgent path: at a kick (or the real-time poll, for urgent notices of other processes
        and urgent retries falling due), close the urgent requests' notices and send what urgent
        notices are due on the urgent send slots."""
        outage = 0
        while not stop.is_set():
            self._urgent_kick.clear()
            try:
                # Formed claimed for a free urgent slot and started at once; the rest queued for
                # the claim below (or any process's).
                if self._urgent_form_due:
                    self._urgent_form_due, self._urgent_groups = False, set()
                    await self._batcher.form_urgent(None, self._urgent)
                elif self._urgent_groups:
                    groups, self._urgent_groups = self._urgent_groups, set()
                    await self._batcher.form_urgent(groups, self._urgent)
                await self.send_urgent(stop)
            except StoreUnavailable as error:
                self._urgent_form_due = True
                outage += 1
                log.warning("store.unavailable", operation="dispatch_urgent", error=str(error))
                await self._pause(stop, min(5.0, 0.1 * 2**outage))
                continue
            outage = 0
            self._urgent_waiting = True
            try:
                await idle(
                    kick=self._urgent_kick, stop=stop, clock=self._clock, wake_at=None, poll=self._poll
                )
            finally:
                self._urgent_waiting = False

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
        waiting = self._waiting and not self._kick.is_set() and not self._in_flight
        return (
            waiting and self._urgent_waiting and not self._urgent_kick.is_set() and not self._urgent.in_flight
        )

    async def _pause(self, stop: asyncio.Event, seconds: float) -> None:
        """Wait ``seconds`` of real time, or less if the daemon stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)

    async def drain(self) -> None:
        """Let in-flight sends finish (the supervisor cancels them after the grace period)."""
        if self._in_flight or self._urgent.in_flight:
            await asyncio.gather(*self._in_flight, *self._urgent.in_flight, return_exceptions=True)

    # -- batching -------------------------------------------------------------------------------

    async def form_notices(self) -> datetime | None:
        """Close every notice that is due now; return the earliest time one will be due."""
        return await self._batcher.form_notices()

    async def form_urgent(self) -> None:
        """Close at once a notice of every platform's and profile's waiting urgent requests."""
        await self._batcher.form_urgent()

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
            self._start(notice, self._in_flight, self._kick)
        return len(notices)

    async def send_urgent(self, stop: asyncio.Event) -> int:
        """Claim due urgent notices (up to the free urgent send slots) and start sending them."""
        free = self._urgent.free()
        if free <= 0 or stop.is_set():
            return 0
        notices = await self._store.claim_due(
            owner=self.owner, now=self._clock.now(), lease=self._lease, limit=free, urgent_only=True
        )
        for notice in notices:
            self._start(notice, self._urgent.in_flight, self._urgent_kick)
        return len(notices)

    def _start(
        self,
        notice: Notice,
        in_flight: set[asyncio.Task[None]],
        freed: asyncio.Event,
        requests: Sequence[TakedownRequest] | None = None,
    ) -> None:
        task = asyncio.create_task(self._send_guarded(notice, requests), name=f"send {notice.notice_id}")
        in_flight.add(task)

        def sent(task: asyncio.Task[None]) -> None:
            in_flight.discard(task)
            freed.set()  # a slot is free

        task.add_done_callback(sent)

    async def _send_guarded(self, notice: Notice, requests: Sequence[TakedownRequest] | None) -> None:
        try:
            await self.send(notice, requests)
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
            await self._outcomes.internal_failure(notice, f"internal error: {type(error).__name__}")

    async def send(self, notice: Notice, requests: Sequence[TakedownRequest] | None = None) -> None:
        """Send one claimed notice and record what happened. ``requests``: its requests, when they
        were read as it was claimed (else they are read now)."""
        route = self._routes.get(notice.platform)
        if route is None:
            # The platform left the configuration while its notice was open: keep the notice,
            # and try again later (the operator may restore the platform).
            log.error("notice.unroutable", notice_id=notice.notice_id, platform=notice.platform)
            await self._outcomes.internal_failure(notice, f"platform {notice.platform} is not configured")
            return
        structlog.contextvars.bind_contextvars(notice_id=notice.notice_id, platform=notice.platform)
        try:
            channel = route.channel(notice.channel)
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
            # The moment this send states its deadlines from, and the delivery time it records if
            # the platform takes it: the notice states the instant its SLA is judged against.
            sent_at = self._clock.now()
            content = await self._content(notice, route, sent_at, requests)
            async with holding(self._store, notice.notice_id, owner=self.owner, lease=self._lease) as lease:
                outcome = await send_with_retries(
                    channel,
                    content,
                    clock=self._clock,
                    in_call_wait=self._in_call_wait,
                    keep_failed=lambda attempt: self._keep_attempt(notice, attempt),
                    counted=lambda attempt: self._count_attempt(notice, attempt),
                )
            if lease.lost:
                # Another process took the notice over while this send ran: its outcome is theirs
                # to record; writing this one would overwrite the state they have moved on from.
                log.warning("notice.lease_lost", channel=channel.name)
                return
            await self._outcomes.record(notice, route, outcome, sent_at)
        finally:
            structlog.contextvars.unbind_contextvars("notice_id", "platform")

    async def _keep_attempt(self, notice: Notice, attempt: Attempt) -> None:
        await persist(
            "record_attempt",
            lambda: self._store.record_attempt(notice.notice_id, owner=self.owner, attempt=attempt),
            lease=self._lease,
        )

    async def _content(
        self, notice: Notice, route: Route, sent_at: datetime, requests: Sequence[TakedownRequest] | None
    ) -> NoticeContent:
        if requests is None:
            requests = await self._store.notice_requests(notice.notice_id)
        return notice_content(
            notice,
            route,
            requests,
            authority=self._authority,
            labels=self._labels,
            kind=MessageKind.NOTICE,
            sent_at=sent_at,
        )

    def _count_attempt(self, notice: Notice, attempt: Attempt) -> None:
        self._metrics.attempts.labels(
            platform=notice.platform, channel=attempt.channel, outcome=attempt.outcome.value
        ).inc()

    async def send_alerts(self) -> None:
        """Alert the operations staff about failed notices not yet alerted."""
        await self._alerter.send_pending()
