"""The SLA monitor (SPEC §7): reminders before the bound, breaches and escalations after it.

Each notice carries a durable timer in the store (``sla_due_at``): when to look at its SLA next.
A round claims the notices whose timer has come, earliest first, asks the pure rules
(:mod:`notifier.domain.sla`) what is due, and **decides** each due reminder or breach in the store
before anything is sent: the decision is an insert on (notice_id, kind), so of any number of
processes, and across restarts, exactly one decides, logs and counts it; what falls due together on
a notice is decided in one transaction. Then it moves each timer on to the notice's next decision
(nothing when none is left). A backlog of notices waiting for their removal bound costs nothing:
their timers are days ahead, and the next due notice is one index probe away.

Then every decision not yet sent is claimed a notice at a time, checked against the notice once
more (a reminder whose acknowledgement came first is dropped, not sent), sent, and marked sent. A
send that fails stays unsent and is tried again in a later round; since the ids of reminders and
escalations are derived from the notice id (``<id>.reminder@…``, ``<id>.escalation``), every
re-send carries the same Message-ID or API id, and the platform can drop a duplicate. A second
escalation, for a breach of the other bound after the first was sent, is ``<id>.escalation-2``: a
new message, not a copy. A portal notice left unfiled past ``file_within`` is the authority's
breach: its reminder goes to the operations staff, never to the platform.

A notice holds requests of one deadline profile (SPEC §14) and is judged by that profile's bounds
as its platform applies them (``profile_bounds``, by platform and profile); a notice without one,
by its platform's (``bounds``). The timer design is the same for both.

Between rounds the monitor sleeps on the business clock until the earliest timer, or until kicked,
but never longer than ``poll_interval`` of real time, so timers set by other processes are seen.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from notifier.clock import Clock
from notifier.domain.models import NoticeState, TakedownRequest
from notifier.domain.notices import Authority, MessageKind, Notice, NoticeContent, SendResult, api_message_id
from notifier.domain.sla import JUDGED_STATES, PLATFORM_BREACHES, SlaBounds, SlaFacts, SlaKind, outlook
from notifier.errors import StoreUnavailable
from notifier.failures import DeliveryError
from notifier.metrics import Metrics
from notifier.ports import Channel, SlaClaim, SlaDecision, SlaReschedule, SlaStore
from notifier.services.alerts import OperationsAlerts
from notifier.services.dispatcher import Route, notice_content, process_owner
from notifier.services.sla_alerts import UnfiledAlerts
from notifier.waiting import earliest, idle

log = structlog.get_logger("notifier.sla")

# How long a monitor holds a decision it is sending before another may take it over.
SEND_LEASE = timedelta(minutes=2)
# How long (business time) a monitor holds the notices it claimed to decide about: a page of them
# takes well under a second; one that died leaves them to another monitor after this.
CLAIM_LEASE = timedelta(minutes=1)
# A notice of a platform this monitor does not judge (it left the configuration, or another
# process has a newer one) is looked at again this much later.
UNJUDGED_RECHECK = timedelta(hours=1)


class SlaMonitorStore(SlaStore, Protocol):
    """What the monitor needs of the store: the SLA side, and the notices it writes about."""

    async def get_notices(self, notice_ids: Sequence[str]) -> list[Notice]: ...

    async def notice_requests(self, notice_id: str) -> list[TakedownRequest]: ...


class SlaMonitor:
    """Decides reminders and breaches once, then sends them at least once.

    ``escalations`` maps a platform to the channel its escalations go over: for an API platform, an
    email channel to ``platforms.<id>.escalation.email`` with its usual addresses copied. A platform
    without one escalates over the channel its notice was delivered on (an email channel built with
    ``escalation_to`` addresses them itself; a manual one writes ``escalation.txt`` in the outbox).
    ``alerts`` reaches the operations staff: told of a portal notice left unfiled.
    """

    def __init__(
        self,
        *,
        store: SlaMonitorStore,
        routes: Mapping[str, Route],
        bounds: Mapping[str, SlaBounds],
        authority: Authority,
        category_labels: Mapping[str, str],
        clock: Clock,
        metrics: Metrics,
        escalations: Mapping[str, Channel] | None = None,
        alerts: OperationsAlerts | None = None,
        profile_bounds: Mapping[tuple[str, str], SlaBounds] | None = None,
        poll_interval: float = 1.0,
        batch: int = 500,
        send_backoff: float = 5.0,
        owner: str | None = None,
        send_lease: timedelta = SEND_LEASE,
        claim_lease: timedelta = CLAIM_LEASE,
    ) -> None:
        self._owner = owner or process_owner()
        self._send_lease = send_lease
        self._claim_lease = claim_lease
        self._unfiled = UnfiledAlerts(
            store=store, alerts=alerts, bounds=bounds, clock=clock, metrics=metrics, owner=self._owner
        )
        self._store = store
        self._routes = dict(routes)
        self._bounds = dict(bounds)
        self._profile_bounds = dict(profile_bounds or {})
        self._authority = authority
        self._labels = dict(category_labels)
        self._clock = clock
        self._metrics = metrics
        self._escalations = dict(escalations or {})
        self._poll = poll_interval
        self._batch = batch
        self._send_backoff = send_backoff
        self._kick = asyncio.Event()
        # Failed sends of this process, by notice: (failures so far, loop time before which to wait).
        self._paused: dict[str, tuple[int, float]] = {}
        # Observable state, for tests and diagnostics: rounds completed, and whether the loop waits
        # (and for which business time).
        self.rounds = 0
        # The first decision of notices delivered while a round ran (see :meth:`delivered`).
        self._delivered_first: datetime | None = None
        self.idle = False
        self.wake_at: datetime | None = None

    @property
    def claim_lease(self) -> timedelta:
        """How long a claim of this monitor on the notices it decides about lasts."""
        return self._claim_lease

    @property
    def quiet(self) -> bool:
        """Waiting for the next business deadline, with no kick pending (the demo's clock waits for it)."""
        return self.idle and not self._kick.is_set()

    def kick(self) -> None:
        """Something changed (a delivery, an acknowledgement): look now rather than at the next poll."""
        self._kick.set()

    def delivered(self, platform: str, at: datetime) -> None:
        """A notice to ``platform`` was delivered ``at``: make sure the monitor wakes by its first
        decision. Waiting, it looks now only if that comes before its wake-up; in a round, which
        may have read the timers before this one, the time is kept for the wait after it. A burst
        of deliveries costs no round each."""
        # Which profile the notice had is not said: the earliest first decision of any of them
        # (waking earlier only costs a look).
        candidates = [b for (p, _), b in self._profile_bounds.items() if p == platform]
        if platform in self._bounds:
            candidates.append(self._bounds[platform])
        facts = SlaFacts(delivered_at=at, acknowledged_at=None, open_requests=1, decided=frozenset())
        firsts = [f for b in candidates if (f := outlook(facts, b, now=at).next_at) is not None]
        if not firsts:
            return
        first = min(firsts)
        if not self.idle:
            self._delivered_first = earliest(self._delivered_first, first)
        elif self.wake_at is None or first < self.wake_at:
            self.kick()

    async def run(self, stop: asyncio.Event) -> None:
        log.info("sla.started", platforms=sorted(self._bounds))
        outage = 0
        try:
            while not stop.is_set():
                self._kick.clear()
                try:
                    wake_at = await self.round()
                except StoreUnavailable as error:
                    outage += 1
                    self._metrics.store_retries.labels(operation="sla").inc()
                    log.warning("store.unavailable", operation="sla", error=str(error))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=min(5.0, 0.1 * 2**outage))
                    continue
                outage = 0
                await self._idle(stop, earliest(wake_at, self._delivered_first))
        finally:
            log.info("sla.stopped")

    async def round(self) -> datetime | None:
        """Decide what is due, send what is owed; the time the next decision falls due, if known."""
        self._delivered_first = None  # deliveries from here on are read by this round or kept here
        wake_at = await self.decide_due()
        await self.send_decided()
        self.rounds += 1
        return wake_at

    # -- deciding -------------------------------------------------------------------------------

    async def decide_due(self) -> datetime | None:
        """Decide what is due on a page of notices whose timer has come; the earliest timer left
        (at or before now when more are due: the loop comes straight back)."""
        now = self._clock.now()
        claims = await self._store.claim_sla_due(now=now, lease=self._claim_lease, limit=self._batch)
        moves = [await self._decide(claim, now) for claim in claims]
        await self._store.reschedule_sla(moves)
        return await self._store.next_sla_due()

    async def _decide(self, claim: SlaClaim, now: datetime) -> SlaReschedule:
        """Decide what is due on one claimed notice; where its timer goes next."""
        bounds = self.bounds_for(claim.platform, claim.deadline)
        if bounds is None:
            # Not judged here; perhaps by a process with a newer configuration.
            return SlaReschedule(
                notice_id=claim.notice_id, claimed_until=claim.claimed_until, next_at=now + UNJUDGED_RECHECK
            )
        if claim.state not in JUDGED_STATES:  # resolved, failed, or back on its way: nothing owed
            return SlaReschedule(notice_id=claim.notice_id, claimed_until=claim.claimed_until, next_at=None)
        view = outlook(claim.facts, bounds, now=now)
        if view.due:
            decided = await self._store.decide(
                claim.notice_id, {due.kind: due.due_at for due in view.due}, decided_at=now
            )
            for due in view.due:
                if due.kind not in decided:
                    continue  # another process decided it
                fields: dict[str, Any] = {
                    "notice_id": claim.notice_id,
                    "platform": claim.platform,
                    "kind": due.kind.value,
                    "elapsed_s": int(due.elapsed.total_seconds()),
                    "bound_s": int(due.bound.total_seconds()),
                }
                if due.kind is SlaKind.REMINDER:
                    self._metrics.sla_reminders.labels(platform=claim.platform).inc()
                    log.info("sla.reminder", **fields)
                else:
                    self._metrics.sla_breaches.labels(platform=claim.platform, kind=due.kind.value).inc()
                    log.warning("sla.breach", **fields)
        return SlaReschedule(
            notice_id=claim.notice_id, claimed_until=claim.claimed_until, next_at=view.next_at
        )

    def bounds_for(self, platform: str, deadline: str | None) -> SlaBounds | None:
        """The bounds a notice of ``platform`` and profile ``deadline`` is judged by: the profile's
        as the platform applies them, else the platform's (a profile no longer configured)."""
        if deadline is not None and (platform, deadline) in self._profile_bounds:
            return self._profile_bounds[(platform, deadline)]
        return self._bounds.get(platform)

    # -- sending --------------------------------------------------------------------------------

    async def send_decided(self) -> None:
        """Send every decision not sent yet; one escalation covers both breaches owed together."""
        owed = await self._store.claim_unsent_decisions(
            owner=self._owner, lease=self._send_lease, limit=self._batch
        )
        by_notice: dict[str, list[SlaDecision]] = {}
        for decision in owed:
            by_notice.setdefault(decision.notice_id, []).append(decision)
        if not by_notice:
            return
        loop_time = asyncio.get_running_loop().time()
        notices = {n.notice_id: n for n in await self._store.get_notices(list(by_notice))}
        for notice_id, claimed in by_notice.items():
            if self._paused.get(notice_id, (0, 0.0))[1] > loop_time:
                continue
            notice = notices.get(notice_id)
            route = self._routes.get(notice.platform) if notice is not None else None
            if notice is None or route is None:
                log.error("sla.unroutable", notice_id=notice_id)
                continue
            decisions = await self._drop_overtaken(notice, claimed)
            unfiled = [d for d in decisions if d.kind is SlaKind.UNDELIVERED_BREACH]
            reminders = [d for d in decisions if d.kind is SlaKind.REMINDER]
            breaches = [d for d in decisions if d.kind in PLATFORM_BREACHES]
            ok = True
            if unfiled:
                ok = await self._unfiled.alert(notice, route.name, unfiled)
            if reminders and ok:
                ok = await self._send(notice, route, MessageKind.REMINDER, reminders)
            if breaches and ok:
                ok = await self._send(notice, route, MessageKind.ESCALATION, breaches)
            if ok:
                self._paused.pop(notice_id, None)
            else:
                failures = self._paused.get(notice_id, (0, 0.0))[0] + 1
                pause = min(300.0, self._send_backoff * 2 ** (failures - 1))
                self._paused[notice_id] = (failures, loop_time + pause)

    async def _drop_overtaken(self, notice: Notice, decisions: Sequence[SlaDecision]) -> list[SlaDecision]:
        """Leave out, and mark dropped, the reminders that what they were about has overtaken since
        they were decided: the platform acknowledged (or settled) the notice, or staff filed the
        portal notice. The decisions stand (a breach is counted); only the message is not sent."""
        kept: list[SlaDecision] = []
        for decision in decisions:
            if decision.kind is SlaKind.REMINDER and (
                notice.acknowledged_at is not None or notice.state is NoticeState.RESOLVED
            ):
                reason = "acknowledged"
            elif (
                decision.kind is SlaKind.UNDELIVERED_BREACH
                and notice.state is not NoticeState.AWAITING_SUBMISSION
            ):
                reason = "filed"
            else:
                kept.append(decision)
                continue
            if await self._store.drop_decision(
                notice.notice_id, decision.kind, owner=self._owner, at=self._clock.now()
            ):
                log.info(
                    "sla.reminder_dropped",
                    notice_id=notice.notice_id,
                    platform=notice.platform,
                    kind=decision.kind.value,
                    reason=reason,
                )
        return kept

    async def _send(
        self, notice: Notice, route: Route, kind: MessageKind, decisions: Sequence[SlaDecision]
    ) -> bool:
        channel = self._channel(notice, route, kind)
        kinds = [d.kind.value for d in decisions]
        try:
            content = await self._content(notice, route, kind, decisions)
            result = await channel.send(content)
        except StoreUnavailable:
            raise  # the round is given up and tried again once the store answers
        except Exception as error:
            # A delivery failure, or a fault of notifier itself (a template error): either way the
            # decision stays unsent and is tried again later, with the same id.
            code = error.code if isinstance(error, DeliveryError) else None
            transient = error.transient if isinstance(error, DeliveryError) else True
            detail = (
                error.detail
                if isinstance(error, DeliveryError)
                else f"internal error: {type(error).__name__}"
            )
            self._metrics.sla_sends.labels(platform=notice.platform, kind=kind.value, outcome="failed").inc()
            log.warning(
                "sla.send_failed",
                notice_id=notice.notice_id,
                platform=notice.platform,
                kind=kind.value,
                decisions=kinds,
                channel=channel.name,
                code=code,
                transient=transient,
                detail=detail,
            )
            # Hand the claim back: this monitor's backoff decides when to try again, not the lease.
            for decision in decisions:
                await self._store.release_decision(decision.notice_id, decision.kind, owner=self._owner)
            return False
        ref = _reference(channel, content, result)
        at = self._clock.now()
        sent = result.evidence  # with the first decision: one message went out for them all
        for decision in decisions:
            await self._store.mark_decision_sent(
                decision.notice_id, decision.kind, at=at, message_ref=ref, evidence=sent
            )
            sent = ()
        self._metrics.sla_sends.labels(platform=notice.platform, kind=kind.value, outcome="sent").inc()
        log.info(
            "sla.escalated" if kind is MessageKind.ESCALATION else "sla.reminder_sent",
            notice_id=notice.notice_id,
            platform=notice.platform,
            decisions=kinds,
            channel=channel.name,
            message_id=ref,
        )
        return True

    def _channel(self, notice: Notice, route: Route, kind: MessageKind) -> Channel:
        if kind is MessageKind.ESCALATION and notice.platform in self._escalations:
            return self._escalations[notice.platform]
        return route.channel(notice.channel)

    async def _content(
        self, notice: Notice, route: Route, kind: MessageKind, decisions: Sequence[SlaDecision]
    ) -> NoticeContent:
        requests = await self._store.notice_requests(notice.notice_id)
        content = notice_content(
            notice, route, requests, authority=self._authority, labels=self._labels, kind=kind
        )
        if kind is MessageKind.ESCALATION:
            content = replace(content, breaches=tuple(sorted(d.kind for d in decisions)))
            # A breach escalated before the ones owed now (the other bound, passed earlier): this
            # is the second escalation, with ids of its own. Judged from what the store keeps, so
            # every re-send of it carries the same ids.
            owed = {d.kind for d in decisions}
            kept = await self._store.sla_decisions([notice.notice_id])
            if any(
                d.kind in PLATFORM_BREACHES and d.kind not in owed and d.sent_at is not None for d in kept
            ):
                content = replace(content, follow_up=2)
        return content

    async def _idle(self, stop: asyncio.Event, wake_at: datetime | None) -> None:
        """Wait for a kick, a stop, the real-time poll, or the next business deadline."""
        self.idle, self.wake_at = True, wake_at
        try:
            await idle(kick=self._kick, stop=stop, clock=self._clock, wake_at=wake_at, poll=self._poll)
        finally:
            self.idle, self.wake_at = False, None


def _reference(channel: Channel, content: NoticeContent, result: SendResult) -> str | None:
    """What the message went out as: its Message-ID, its API id, else what the channel said (the
    follow-up file of a portal notice)."""
    if result.message_id:
        return result.message_id
    if channel.name == "api":
        return api_message_id(content)
    return result.detail[:500] or None
