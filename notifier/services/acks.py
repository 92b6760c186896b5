"""Acknowledgements, receipts and bounces: whatever a platform answers, tied to its notice (SPEC §7).

Every source ends here: signed callbacks, the ack queue, email replies (IMAP or inbound SMTP) and
operators' manual entries. An acknowledgement is planned by the pure rules of
:mod:`notifier.domain.acks` and applied only if nothing changed meanwhile; a late or repeated one
changes nothing and is logged. A receipt (auto-reply, API ticket) is recorded without stopping the
acknowledgement clock. What a bounce changes is decided by :mod:`notifier.domain.delivery`: only a
bounce of the notice itself moves it (back to ``retrying`` within its window, to its fallback, or to
``failed``), and its SLA clock restarts at the next delivery; a bounced reminder or escalation leaves
the notice as it is and tells the operations staff.
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog

from notifier.clock import Clock
from notifier.domain.acks import Ack, AckPlan, AckStatus, plan_ack
from notifier.domain.delivery import Bounce, Channels, DeliveryDecision, Step, after_bounce
from notifier.domain.evidence import EvidenceKind, EvidenceRecord
from notifier.domain.models import DeadLetter, RequestState
from notifier.domain.notices import Attempt, AttemptOutcome, Notice, parse_notice_id
from notifier.domain.replies import ALERT, MailKind, MailVerdict, classify
from notifier.errors import StoreUnavailable, TransientError
from notifier.failures import DeliveryError
from notifier.metrics import Metrics
from notifier.ports import Store
from notifier.services.alerts import OperationsAlerts

log = structlog.get_logger("notifier.acks")

_CLASSIFY_INLINE_BYTES = 256 * 1024
# Mail that came in over SMTP exists nowhere else once it is answered 250: kept (as a dead letter
# with the reason) when it matches no notice of ours. Mail read over IMAP stays in its mailbox.
KEPT_WHEN_UNMATCHED = frozenset({"email:smtp"})
_PLAN_TRIES = 5  # concurrent acknowledgements of one notice: plan again this often before giving up


class AckOutcome(enum.StrEnum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"  # late or repeated: nothing moves backward
    UNKNOWN_NOTICE = "unknown_notice"
    UNKNOWN_ITEMS = "unknown_items"
    REPLAYED = "replayed"  # a callback whose webhook-id was taken in before: not applied again


@dataclass(frozen=True, slots=True)
class AckResult:
    outcome: AckOutcome
    detail: str = ""


@dataclass(frozen=True, slots=True)
class FallbackRule:
    """What a bounce needs to know of a platform: its primary and fallback channel names."""

    primary: str
    fallback: str | None


class AckService:
    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        metrics: Metrics,
        fallbacks: Mapping[str, FallbackRule],
        deliver_within: timedelta,
        our_domains: Sequence[str] = (),
        on_redelivery: Callable[[], None] | None = None,
        rng: random.Random | None = None,
        alerts: OperationsAlerts | None = None,
    ) -> None:
        self._alerts = alerts
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._fallbacks = dict(fallbacks)
        self._deliver_within = deliver_within
        self._our_domains = tuple(our_domains)
        self._on_redelivery = on_redelivery
        self._rng = rng or random.Random()  # noqa: S311 - retry jitter, not cryptography

    # -- acknowledgements -----------------------------------------------------------------------

    async def acknowledge(self, ack: Ack) -> AckResult:
        """Apply one acknowledgement; the result says what happened and why."""
        bound = {"notice_id": ack.notice_id, "source": ack.source, "status": ack.status.value}
        for _ in range(_PLAN_TRIES):
            if ack.webhook_id is not None and await self._store.webhook_seen(
                ack.source.removeprefix("callback:"), ack.webhook_id
            ):
                log.info("callback.replayed", webhook_id=ack.webhook_id, **bound)
                return AckResult(AckOutcome.REPLAYED)
            context = await self._store.ack_context(ack.notice_id)
            if context is None:
                await self._store.record_ack_history(ack, outcome="unknown notice")
                log.warning("ack.unknown_notice", **bound)
                return AckResult(AckOutcome.UNKNOWN_NOTICE, f"no notice {ack.notice_id}")
            notice, states = context
            plan = plan_ack(notice.state, states, ack)
            if plan.unknown_items:
                detail = f"not in {ack.notice_id}: {', '.join(plan.unknown_items[:10])}"
                await self._store.record_ack_history(ack, outcome=f"unknown items: {detail}")
                log.warning(
                    "ack.unknown_items",
                    platform=notice.platform,
                    items=list(plan.unknown_items[:10]),
                    **bound,
                )
                return AckResult(AckOutcome.UNKNOWN_ITEMS, detail)
            if not plan.changes_anything:
                why = "; ".join(plan.ignored[:5]) or "nothing to change"
                await self._store.record_ack_history(ack, outcome=f"unchanged: {why}")
                log.info("ack.unchanged", platform=notice.platform, reason=why, **bound)
                return AckResult(AckOutcome.UNCHANGED, why)
            if await self._store.apply_ack(ack, plan):
                self._count(notice.platform, ack)
                self._observe(notice, plan)
                log.info(
                    "ack.received",
                    platform=notice.platform,
                    notice_state=plan.notice_after.value,
                    requests_changed=len(plan.changes),
                    ticket=ack.ticket,
                    ignored=list(plan.ignored[:5]) or None,
                    **bound,
                )
                return AckResult(AckOutcome.APPLIED)
        raise StoreUnavailable(f"acknowledgement of {ack.notice_id} kept losing to concurrent changes")

    def _observe(self, notice: Notice, plan: AckPlan) -> None:
        """Time from delivery to the acknowledgement and to the removal, per request changed."""
        if notice.delivered_at is None:
            return
        for change in plan.changes:
            if change.acknowledged_at is not None:
                elapsed = (change.acknowledged_at - notice.delivered_at).total_seconds()
                self._metrics.time_to_ack.labels(platform=notice.platform).observe(max(0.0, elapsed))
            if change.resolved_at is not None and change.after is RequestState.REMOVED:
                elapsed = (change.resolved_at - notice.delivered_at).total_seconds()
                self._metrics.time_to_removal.labels(platform=notice.platform).observe(max(0.0, elapsed))

    def _count(self, platform: str, ack: Ack) -> None:
        self._metrics.acks.labels(
            platform=platform, source=ack.source.split(":", 1)[0], status=ack.status.value
        ).inc()

    # -- receipts and bounces -------------------------------------------------------------------

    async def receipt(self, notice_id: str, *, ticket: str | None, source: str) -> bool:
        recorded = await self._store.record_receipt(
            notice_id, at=self._clock.now(), ticket=ticket, source=source
        )
        if recorded:
            log.info("receipt.received", notice_id=notice_id, source=source, ticket=ticket)
        else:
            log.warning("receipt.unknown_notice", notice_id=notice_id, source=source)
        return recorded

    async def bounce(
        self, notice_id: str, *, message: str | None, status: str | None, source: str, channel: str = "email"
    ) -> DeliveryDecision | None:
        """A message of a notice bounced: what that changes is decided by the delivery rules.

        Only a bounce of the notice itself, while it is delivered on that channel, moves it (a soft
        one retries within the notice's window, a hard one goes to the fallback or fails it); a
        bounce of a reminder, an escalation or an alert changes nothing in the notice, and the
        operations staff are told that the address it went to is dead. None for an unknown notice.
        """
        context = await self._store.ack_context(notice_id)
        if context is None:
            log.warning("bounce.unknown_notice", notice_id=notice_id, source=source, message=message)
            return None
        notice, _ = context
        now = self._clock.now()
        rule = self._fallbacks.get(notice.platform)
        channels = Channels(
            primary=rule.primary if rule else notice.channel, fallback=rule.fallback if rule else None
        )
        decision = after_bounce(
            notice,
            Bounce(message=message, channel=channel, status=status),
            at=now,
            channels=channels,
            deliver_within=self._deliver_within,
            rng=self._rng,
        )
        fields = {"notice_id": notice_id, "platform": notice.platform, "status": status, "source": source}
        self._metrics.bounces.labels(
            platform=notice.platform, message=message or "notice", step=decision.step.value
        ).inc()
        if decision.step is Step.CONTACT_BOUNCED:
            await self._contact_bounced(notice, message or "message", status, fields)
            return decision
        if not decision.changes_anything:
            log.info("bounce.ignored", state=notice.state.value, reason=decision.reason, **fields)
            return decision
        attempt = Attempt(
            at=now, channel=channel, outcome=AttemptOutcome.PERMANENT_ERROR, detail=decision.reason
        )
        if not await self._store.record_bounce(notice_id, attempt=attempt, delivery=decision):
            log.info("bounce.ignored", reason="the notice moved on meanwhile", **fields)
            return None
        log.warning("notice.bounced", next_channel=decision.channel, step=decision.step.value, **fields)
        self._metrics.notice_outcomes.labels(platform=notice.platform, outcome="bounced").inc()
        if decision.step is Step.FAIL:
            self._metrics.notice_outcomes.labels(platform=notice.platform, outcome="failed").inc()
            log.error("notice.failed", detail=decision.reason, requests=len(notice.request_ids), **fields)
        if self._on_redelivery is not None:
            self._on_redelivery()  # a retry to send, or a failure to alert about
        return decision

    async def _contact_bounced(
        self, notice: Notice, message: str, status: str | None, fields: dict[str, Any]
    ) -> None:
        """A reminder, an escalation or an alert bounced: the notice stands, its address is dead."""
        kind = message.split("-", 1)[0]
        log.warning(f"{kind}.bounced", message=message, **fields)
        if self._alerts is None:
            return
        subject = f"notifier: the {kind} about {notice.notice_id} to {notice.platform} bounced"
        text = (
            f"The {message} about notice {notice.notice_id} to {notice.platform} bounced "
            f"({status or 'no status given'}).\n"
            "The notice itself stands as delivered and its deadlines are unchanged, but the address the "
            f"{kind} went to does not take mail: check the platform's {kind} contacts in the configuration.\n"
        )
        try:
            await self._alerts.alert(subject=subject, text=text, key=f"{notice.notice_id}.{message}.bounced")
        except (DeliveryError, TransientError) as error:
            log.error("alert.failed", notice_id=notice.notice_id, detail=str(error))
            return
        self._metrics.alerts.labels(kind="contact_bounced").inc()

    # -- email replies (the MailSink of the IMAP reader and the inbound SMTP listener) -------------

    async def handle_mail(self, raw: bytes, *, source: str, envelope_recipients: Sequence[str] = ()) -> None:
        """Take in one received email: applied, kept as a dead letter with the reason, or (read over
        IMAP, where it stays in its mailbox) logged as unmatched. Raises only a transient error (the
        store is away): the sender, or the next poll, hands the mail over again."""
        # Recorded as received, before anything is read from it: the acknowledgement, receipt or
        # bounce it turns out to be is recorded with the change it makes.
        received = EvidenceRecord(
            kind=EvidenceKind.MAIL_RECEIVED,
            payload=raw,
            meta={"source": source, "envelope_recipients": list(envelope_recipients)},
        )
        await self._store.record_evidence([received], at=self._clock.now())
        try:
            await self._handle_mail(raw, source=source, envelope_recipients=envelope_recipients)
        except TransientError:
            raise
        except Exception as error:
            # A mail that makes its handling fail would fail the same way each time it is handed
            # over again (refused with 451, or read again at every poll): kept instead, with the
            # reason. Only the exception's type and place are logged: its text may quote the mail.
            reason = f"mail could not be handled ({type(error).__name__} at {_where(error)})"
            log.error("mail.failed", source=source, error=type(error).__name__, where=_where(error))
            await self._keep_mail(raw, source=source, reason=reason)

    async def _handle_mail(self, raw: bytes, *, source: str, envelope_recipients: Sequence[str]) -> None:
        if len(raw) > _CLASSIFY_INLINE_BYTES:
            # Parsing megabytes of MIME takes a fraction of a second: not on the event loop.
            verdict = await asyncio.to_thread(
                classify, raw, envelope_recipients=envelope_recipients, our_domains=self._our_domains
            )
        else:
            verdict = classify(raw, envelope_recipients=envelope_recipients, our_domains=self._our_domains)
        notice_ids = list(verdict.notice_ids)
        kind, matched_by = verdict.kind, verdict.matched_by
        if (
            not notice_ids
            and verdict.ticket
            and verdict.kind in (MailKind.HUMAN, MailKind.AUTO_REPLY, MailKind.UNRELATED)
        ):
            found = await self._store.notice_by_ticket(verdict.ticket)
            if found is not None:
                notice_ids, matched_by = [found], "ticket"
                if kind is MailKind.UNRELATED:
                    kind = MailKind.HUMAN  # no automated markers, and about a notice of ours
        fields = {"source": source, "kind": kind.value, "matched_by": matched_by or None}
        if not notice_ids or parse_notice_id(notice_ids[0]) is None:
            why = verdict.reason if not notice_ids else "matched text is not a notice id"
            log.info("mail.unmatched", reason=why, **fields)
            if source in KEPT_WHEN_UNMATCHED:
                await self._keep_mail(raw, source=source, reason=f"unmatched mail ({kind.value}): {why}")
            return
        if source in KEPT_WHEN_UNMATCHED and await self._store.ack_context(notice_ids[0]) is None:
            log.info("mail.unmatched", reason="no such notice", notice_id=notice_ids[0], **fields)
            reason = f"unmatched mail ({kind.value}): about {notice_ids[0]}, which is no notice of ours"
            await self._keep_mail(raw, source=source, reason=reason)
            return
        # The mail as received, now named with the notice it answers, so that the notice's case
        # bundle carries it (the payload is kept once: the entry made on arrival has the same hash).
        matched = EvidenceRecord(
            kind=EvidenceKind.MAIL_RECEIVED,
            notice_id=notice_ids[0],
            payload=raw,
            meta={"source": source, "kind": kind.value, "matched_by": matched_by or None},
        )
        await self._store.record_evidence([matched], at=self._clock.now())
        await self._answer(notice_ids[0], kind, verdict, source=source, fields=fields)

    async def _keep_mail(self, raw: bytes, *, source: str, reason: str) -> None:
        """Keep a mail nothing else keeps, as a dead letter with the reason (``status`` lists it).
        Handed over again (its 250 lost on the way), the same mail is kept once."""
        letter = DeadLetter(source=source, reason=reason, at=self._clock.now(), body=raw, redelivered=True)
        await self._store.ingest([], [letter], now=letter.at)
        self._metrics.dead_letters.labels(source=source).inc()
        log.warning("mail.dead_lettered", source=source, reason=reason, size=len(raw))

    async def _answer(
        self, notice_id: str, kind: MailKind, verdict: MailVerdict, *, source: str, fields: dict[str, Any]
    ) -> None:
        """What a mail matched to ``notice_id`` says: a bounce, a receipt, an acknowledgement, or nothing."""
        if kind is MailKind.BOUNCE and verdict.delayed:
            # The report says the mail is delayed and still being tried: not a failure.
            log.info("mail.delay_notice", notice_id=notice_id, status=verdict.bounce_status, **fields)
        elif kind is MailKind.BOUNCE:
            await self.bounce(notice_id, message=verdict.message, status=verdict.bounce_status, source=source)
        elif kind is MailKind.AUTO_REPLY:
            await self.receipt(notice_id, ticket=verdict.ticket, source=source)
        elif kind is MailKind.HUMAN and verdict.message == ALERT:
            # Someone answered one of our operations alerts: the authority's own staff, not the
            # platform. Never an acknowledgement.
            log.info("mail.ignored", notice_id=notice_id, reason="a reply to an operations alert", **fields)
        elif kind is MailKind.HUMAN:
            status = AckStatus.RECEIVED
            if verdict.removal_claimed:
                status = AckStatus.REMOVED
            elif verdict.clarification_requested:  # a question about the notice (SPEC §14)
                status = AckStatus.CLARIFICATION_REQUESTED
            ack = Ack(
                notice_id=notice_id,
                status=status,
                received_at=self._clock.now(),
                source=source,
                ticket=verdict.ticket,
                dkim=verdict.dkim,
            )
            await self.acknowledge(ack)
        else:
            # Feedback reports and other automated mail are never a platform's acknowledgement.
            log.info("mail.ignored", notice_id=notice_id, reason=verdict.reason, **fields)


def _where(error: BaseException) -> str:
    """The file and line an exception was raised at (``kinds.py:120``): enough to find the fault,
    nothing of the data it was raised about."""
    traceback = error.__traceback__
    while traceback is not None and traceback.tb_next is not None:
        traceback = traceback.tb_next
    if traceback is None:
        return "unknown place"
    return f"{traceback.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{traceback.tb_lineno}"
