"""Verification of removals (SPEC §13): notifier checks every request's URLs itself.

Each request carries a durable check timer in the store (``requests.verify_due_at``, business
time): a delivery starts it, a platform's claim of removal sets it to that moment. A round claims
the requests whose timer has come, asks the pure schedule (:mod:`notifier.domain.verification`)
whether a check is due (right after a claim of removal; at the reminder point and at the removal
bound while open; after removal at ``recheck_after`` intervals), checks each URL with the prober,
keeps what was observed (never the body) and moves the timer on.

What a round changes: the first round that saw every URL removed sets ``verified_removed_at``
(a silent platform that removed is credited then); a ``live`` URL after the platform said removed
is a **false claim** (counted once per claim, ``verify.contradicted``), and the notice gets one
follow-up listing only the URLs still up; content live again after a verified removal is a
**re-appearance** (``verify.reappeared``), notified once per request unless
``verify.renotice = false``: a new notice (a new notice id) listing the same request with the URLs
found live, queued for the dispatcher. The request keeps its first notice and its SLA figures.
Follow-ups and re-notices are decided in the store, in the round's transaction, before anything is
sent, and sent at least once.

Between rounds the loop sleeps on the business clock until the earliest timer, or until kicked,
but never longer than ``poll_interval`` of real time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import structlog

from notifier.clock import Clock
from notifier.domain.models import RequestState
from notifier.domain.verification import (
    CheckOutcome,
    InconclusiveReason,
    UrlCheck,
    VerifyFacts,
    VerifyRules,
    VerifySchedule,
    judge_round,
    next_check,
)
from notifier.errors import StoreUnavailable
from notifier.metrics import Metrics
from notifier.ports import Checker, Followup, Renotice, VerificationStore, VerifyClaim, VerifyUpdate
from notifier.settings import Settings
from notifier.waiting import idle

log = structlog.get_logger("notifier.verify")

CLAIM_LEASE = timedelta(minutes=5)
REAPPEARED = "reappeared"
# A request of a platform this process does not verify is looked at again this much later.
UNJUDGED_RECHECK = timedelta(hours=1)

# Sends one follow-up (the platform's channel); returns what it went out as.
FollowupSender = Callable[[Followup], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class RoundResult:
    """One request's round: its checks, as ``notifier verify`` prints them."""

    request_id: str
    checks: tuple[UrlCheck, ...]


class VerificationService:
    """Checks due requests, keeps what the checks saw, and chases what stays up."""

    def __init__(
        self,
        *,
        store: VerificationStore,
        checker: Checker,
        rules: Mapping[str, VerifyRules],
        schedules: Mapping[str, VerifySchedule],
        clock: Clock,
        metrics: Metrics,
        renotice: bool = True,
        send_followup: FollowupSender | None = None,
        poll_interval: float = 1.0,
        batch: int = 200,
        concurrency: int = 64,
        claim_lease: timedelta = CLAIM_LEASE,
    ) -> None:
        self._store = store
        self._checker = checker
        self._rules = dict(rules)
        self._schedules = dict(schedules)
        self._clock = clock
        self._metrics = metrics
        self._renotice = renotice
        self._send_followup = send_followup
        self._poll = poll_interval
        self._batch = batch
        self._slots = asyncio.Semaphore(concurrency)
        self._claim_lease = claim_lease
        self._kick = asyncio.Event()
        # Told when a round queued re-notices, so the dispatcher sends them now.
        self.on_renotice: Callable[[], None] | None = None
        self.rounds = 0
        self.idle = False
        self.wake_at: datetime | None = None

    @property
    def quiet(self) -> bool:
        return self.idle and not self._kick.is_set()

    def kick(self) -> None:
        self._kick.set()

    async def run(self, stop: asyncio.Event) -> None:
        log.info("verify.started", platforms=sorted(self._schedules))
        outage = 0
        try:
            while not stop.is_set():
                self._kick.clear()
                try:
                    wake_at = await self.round()
                except StoreUnavailable as error:
                    outage += 1
                    self._metrics.store_retries.labels(operation="verify").inc()
                    log.warning("store.unavailable", operation="verify", error=str(error))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=min(5.0, 0.1 * 2**outage))
                    continue
                outage = 0
                self.idle, self.wake_at = True, wake_at
                try:
                    await idle(
                        kick=self._kick, stop=stop, clock=self._clock, wake_at=wake_at, poll=self._poll
                    )
                finally:
                    self.idle, self.wake_at = False, None
        finally:
            log.info("verify.stopped")

    async def round(self) -> datetime | None:
        """Check what is due, send the follow-ups owed; the next timer."""
        while True:
            now = self._clock.now()
            claims = await self._store.claim_verify_due(now=now, lease=self._claim_lease, limit=self._batch)
            await self._process(claims, now)
            if len(claims) < self._batch:
                break
        await self.send_followups()
        self.rounds += 1
        return await self._store.next_verify_due()

    async def verify_now(self, ids: Sequence[str]) -> list[RoundResult]:
        """Check the requests named by ``ids`` (requests or notices) now (``notifier verify``)."""
        claims = await self._store.verify_targets(ids)
        results = await self._process(claims, self._clock.now(), force=True)
        await self.send_followups()
        return results

    async def due_now(self) -> list[RoundResult]:
        """One pass over what is due now (``notifier verify`` without ids)."""
        now = self._clock.now()
        claims = await self._store.claim_verify_due(now=now, lease=self._claim_lease, limit=10_000)
        results = await self._process(claims, now)
        await self.send_followups()
        return results

    # -- one round ------------------------------------------------------------------------------

    async def _process(
        self, claims: Sequence[VerifyClaim], now: datetime, *, force: bool = False
    ) -> list[RoundResult]:
        outcomes = await asyncio.gather(*(self._one(claim, now, force=force) for claim in claims))
        # One follow-up per notice and kind: the URLs of all its requests found up in this round.
        owed: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
        live: dict[str, set[str]] = {}
        results: list[RoundResult] = []
        for claim, (update, followup) in zip(claims, outcomes, strict=True):
            if update.checks:
                results.append(RoundResult(claim.request_id, update.checks))
            if followup is not None and claim.notice_id is not None:
                ids, urls = owed.setdefault((claim.notice_id, followup[0]), ([], []))
                ids.append(claim.request_id)
                urls.extend(followup[1])
                live[claim.request_id] = set(followup[1])
        followups = [
            Followup(
                notice_id=notice_id,
                seq=0,
                kind=kind,
                request_ids=tuple(ids),
                urls=tuple(urls),
                decided_at=now,
            )
            for (notice_id, kind), (ids, urls) in owed.items()
            if kind != REAPPEARED
        ]
        # Content back after a verified removal: a new notice per earlier notice, listing each
        # request found up again with the URLs seen live (the same requests, a new notice id).
        renotices = [
            Renotice(
                of_notice=notice_id,
                requests=tuple(
                    (request_id, tuple(u for u in urls if u in live[request_id])) for request_id in ids
                ),
                decided_at=now,
            )
            for (notice_id, kind), (ids, urls) in owed.items()
            if kind == REAPPEARED
        ]
        updates = [update for update, _ in outcomes]
        numbers = await self._store.record_rounds(updates, followups, renotices)
        if renotices and self.on_renotice is not None:
            self.on_renotice()
        for renotice in renotices:
            log.info(
                "verify.renotice_decided",
                notice_id=renotice.of_notice,
                request_ids=[request_id for request_id, _ in renotice.requests],
            )
        for decided, seq in zip(followups, numbers, strict=True):
            log.info(
                "verify.followup_decided",
                notice_id=decided.notice_id,
                kind=decided.kind,
                seq=seq,
                urls=len(decided.urls),
            )
        return results

    async def _one(
        self, claim: VerifyClaim, now: datetime, *, force: bool
    ) -> tuple[VerifyUpdate, tuple[str, tuple[str, ...]] | None]:
        schedule = self._schedules.get(claim.platform)
        if schedule is None:
            later = now + UNJUDGED_RECHECK
            return self._reschedule(claim, later), None
        due = next_check(claim.facts, schedule)
        if not force and (due is None or due > now):
            return self._reschedule(claim, due), None
        rules = self._rules.get(claim.platform, VerifyRules())
        async with self._slots:
            checks = tuple(
                await asyncio.gather(*(self._checker.check(url, rules, at=now) for url in claim.urls))
            )
        for check in checks:
            self._observed(claim, check)
        return await self._judge(claim, checks, now, schedule)

    def _reschedule(self, claim: VerifyClaim, next_at: datetime | None) -> VerifyUpdate:
        """No check this time: only the timer moves."""
        return VerifyUpdate(
            request_id=claim.request_id,
            platform=claim.platform,
            checks=(),
            checked_at=None,
            next_at=next_at,
            claimed_until=claim.claimed_until,
        )

    def _observed(self, claim: VerifyClaim, check: UrlCheck) -> None:
        self._metrics.checks.labels(platform=claim.platform, outcome=check.outcome.value).inc()
        fields = {
            "request_id": claim.request_id,
            "platform": claim.platform,
            # The host only: a URL may identify a victim; the store keeps it with the check.
            "host": urlsplit(check.url).hostname or "",
            "outcome": check.outcome.value,
            "http_status": check.http_status,
            "rule": check.rule,
            "bytes_read": check.bytes_read,
        }
        log.info("verify.checked", reason=check.reason, **fields)
        if check.reason == InconclusiveReason.REFUSED_PRIVATE_ADDRESS.value:
            log.warning("verify.refused", reason=check.reason, **fields)

    async def _judge(
        self, claim: VerifyClaim, checks: tuple[UrlCheck, ...], now: datetime, schedule: VerifySchedule
    ) -> tuple[VerifyUpdate, tuple[str, tuple[str, ...]] | None]:
        facts = claim.facts
        verdict = judge_round(checks)
        verified = base = reappeared = contradicted = None
        last: str | None = None
        followup: tuple[str, tuple[str, ...]] | None = None
        ids = {"request_id": claim.request_id, "platform": claim.platform, "notice_id": claim.notice_id}
        if verdict.all_removed:
            last = CheckOutcome.REMOVED.value
            if facts.verified_removed_at is None or claim.verify_last == CheckOutcome.LIVE.value:
                verified = now if facts.verified_removed_at is None else None
                base = now
                log.info("verify.removed", first=verified is not None, **ids)
        elif verdict.live_urls:
            last = CheckOutcome.LIVE.value
            if facts.verified_removed_at is not None and claim.verify_last == CheckOutcome.REMOVED.value:
                reappeared = base = now
                self._metrics.reappeared.inc()
                log.warning("verify.reappeared", urls=len(verdict.live_urls), **ids)
                if self._renotice and not await self._store.renoticed(claim.request_id):
                    followup = (REAPPEARED, verdict.live_urls)
            elif facts.state is RequestState.REMOVED and facts.verified_removed_at is None:
                claimed_at = facts.resolved_at
                if claim.contradicted_at is None or (
                    claimed_at is not None and claim.contradicted_at < claimed_at
                ):
                    contradicted = now
                    self._metrics.false_claims.inc()
                    log.warning("verify.contradicted", urls=len(verdict.live_urls), **ids)
                    followup = ("contradicted", verdict.live_urls)
        after = VerifyFacts(
            state=facts.state,
            delivered_at=facts.delivered_at,
            resolved_at=facts.resolved_at,
            verified_removed_at=facts.verified_removed_at or verified,
            verify_base=base or facts.verify_base,
            checked_at=now,
        )
        update = VerifyUpdate(
            request_id=claim.request_id,
            platform=claim.platform,
            checks=checks,
            checked_at=now,
            next_at=next_check(after, schedule),
            claimed_until=claim.claimed_until,
            verified_removed_at=verified,
            verify_base=base,
            verify_last=last,
            reappeared_at=reappeared,
            contradicted_at=contradicted,
        )
        return update, followup

    # -- follow-ups -----------------------------------------------------------------------------

    async def send_followups(self) -> None:
        """Send every follow-up not sent yet, through the platform's channel."""
        if self._send_followup is None:
            return
        for followup in await self._store.followups(unsent_only=True, limit=self._batch):
            try:
                ref = await self._send_followup(followup)
            except StoreUnavailable:
                raise
            except Exception as error:  # tried again next round, with the same ids
                log.warning(
                    "verify.followup_failed",
                    notice_id=followup.notice_id,
                    seq=followup.seq,
                    error=type(error).__name__,
                )
                continue
            await self._store.mark_followup_sent(
                followup.notice_id, followup.seq, at=self._clock.now(), message_ref=ref
            )
            log.info(
                "verify.followup_sent",
                notice_id=followup.notice_id,
                seq=followup.seq,
                kind=followup.kind,
                message_id=ref,
            )


def verify_rules(settings: Settings) -> dict[str, VerifyRules]:
    """Each platform's rules of what means removed (``[platforms.<id>.verify]``)."""
    return {
        platform_id: VerifyRules.build(
            removed_status=platform.verify.removed_status,
            removed_markers=platform.verify.removed_markers,
            removed_redirect=platform.verify.removed_redirect,
        )
        for platform_id, platform in settings.platforms.items()
    }


def verify_schedules(settings: Settings) -> dict[str, VerifySchedule]:
    """When each platform's requests are checked: its SLA points, then ``verify.recheck_after``."""
    sla = settings.sla
    schedules: dict[str, VerifySchedule] = {}
    for platform_id, platform in settings.platforms.items():
        ack_within = platform.sla.ack_within or sla.ack_within
        remind_at = platform.sla.remind_at or sla.remind_at
        schedules[platform_id] = VerifySchedule(
            remind_after=ack_within * remind_at,
            removal_within=platform.sla.removal_within or sla.removal_within,
            recheck_after=tuple(settings.verify.recheck_after),
        )
    return schedules
