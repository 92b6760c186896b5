"""The protocols between the services and the adapters.

Each port has a real adapter and an in-memory fake; both pass the same contract tests
(``tests/contract/``), so a unit test on the fake says something true about the real thing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from notifier.domain.acks import Ack, AckPlan
from notifier.domain.batching import Pending
from notifier.domain.models import (
    Conflict,
    DeadLetter,
    IntakeOutcome,
    NoticeState,
    RequestState,
    StoredRequest,
    TakedownRequest,
)
from notifier.domain.notices import Attempt, Notice, NoticeContent, SendResult
from notifier.domain.sla import SlaFacts, SlaKind


@dataclass(frozen=True, slots=True, kw_only=True)
class Incoming:
    """A valid request on its way into the store, with where it came from."""

    request: TakedownRequest
    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusCounts:
    """Counts per platform and state; only states with rows appear (callers fill the zeros)."""

    requests: dict[str, dict[str, int]]
    notices: dict[str, dict[str, int]]
    dead_letters_total: int


class IntakeStore(Protocol):
    """The store's side of intake and status. Every method is one transaction."""

    async def ingest(
        self, incoming: Sequence[Incoming], dead_letters: Sequence[DeadLetter], *, now: datetime
    ) -> list[IntakeOutcome]:
        """Store requests idempotently and record dead letters, atomically.

        Returns one outcome per item of ``incoming``, in order: ``accepted`` for a new request_id
        (stored in state ``pending`` with ``ingested_at = now``), ``duplicate`` when the stored
        request has the same content hash, ``conflict`` when it differs (the later version is
        recorded as a conflict, once per distinct content, and never replaces the first). Items
        repeated inside ``incoming`` are judged against the first of them. A dead letter whose
        ``redelivered`` flag is set is skipped when one with the same source and body is
        already recorded (the queue handed the same message over again).
        """
        ...

    async def get_requests(self, request_ids: Sequence[str]) -> list[StoredRequest]:
        """The stored requests among ``request_ids`` (unknown ids are left out)."""
        ...

    async def status_counts(self) -> StatusCounts: ...

    async def conflicts(self, *, limit: int = 100) -> list[Conflict]:
        """Recorded conflicts, newest first."""
        ...

    async def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, newest first."""
        ...

    async def ping(self) -> None:
        """Raise :class:`notifier.errors.StoreUnavailable` unless the store answers."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One message handed over by a queue, not yet acknowledged to it."""

    body: bytes
    source: str  # e.g. "amqp:takedown.requests", "sqlite:takedown.requests"
    redelivered: bool = False
    handle: Any = field(default=None, compare=False)  # the adapter's own reference


class IntakeQueue(Protocol):
    """A queue notifier consumes from (requests, acks) and ``notifier submit`` publishes to.

    Delivery is at least once: a message is handed over again until it is acknowledged, so the
    consumer acknowledges only after the store has committed what the message said.
    """

    async def connect(self) -> None:
        """Connect and declare the queues this adapter owns (idempotent)."""
        ...

    async def publish(self, queue: str, bodies: Sequence[bytes]) -> None:
        """Publish durably: when this returns, the broker has every body."""
        ...

    async def receive(self, queue: str, *, max_messages: int, wait: float) -> list[Delivery]:
        """Up to ``max_messages`` deliveries, waiting at most ``wait`` seconds for the first."""
        ...

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Settle deliveries; the queue forgets them. Deliveries whose connection has gone are
        skipped silently: the broker hands them over again and the store's idempotency absorbs
        the repeat."""
        ...

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        """Hand deliveries back unprocessed (shutdown), to be delivered again."""
        ...

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Keep a rejected message on the broker's side too (AMQP: ``<queue>.dead`` with the
        reason in a header). The store's dead letter is recorded separately."""
        ...

    async def stop_consuming(self) -> None:
        """Stop taking new messages; deliveries already handed over stay valid for ack/release."""
        ...

    async def ping(self) -> None:
        """Raise :class:`notifier.errors.QueueUnavailable` unless the broker answers."""
        ...

    async def close(self) -> None: ...


class Channel(Protocol):
    """One way of sending to one platform: its email address, its API endpoint, or its portal.

    ``send`` returns when the platform (or the outbox, for a portal) has taken the message, and
    raises :class:`notifier.failures.DeliveryError` otherwise, classified transient or permanent.
    Sending the same notice again is safe: it carries the same notice id, ``Message-ID`` and
    ``Idempotency-Key``.
    """

    name: str  # "email", "api" or "manual"

    async def send(self, content: NoticeContent) -> SendResult: ...

    async def close(self) -> None: ...


class NoticeStore(Protocol):
    """The store's side of batching and dispatch. Every method is one short transaction; none is
    held open across network I/O. Work is claimed with leases judged by the store's own clock."""

    async def pending_summary(self, platform: str) -> Pending:
        """Count, oldest ``ingested_at`` and urgent count of the platform's ``pending`` requests."""
        ...

    async def form_notice(
        self, platform: str, *, max_items: int, channel: str, now: datetime, deliver_by: datetime
    ) -> Notice | None:
        """Atomically turn up to ``max_items`` pending requests (urgent first, then oldest) into a
        notice: allocate the platform's next sequence number, insert the notice (``queued``,
        ``next_attempt_at = now``), move the requests to ``batched`` with its id. Every request
        ends in exactly one notice, also with several processes (SKIP LOCKED on PostgreSQL,
        BEGIN IMMEDIATE on SQLite). None when nothing is pending."""
        ...

    async def claim_due(self, *, owner: str, now: datetime, lease: timedelta, limit: int) -> list[Notice]:
        """Claim notices to send: ``queued``/``retrying`` ones whose ``next_attempt_at <= now``
        (business time), and ``sending`` ones whose lease has expired by the store's clock (a
        process died mid-send). They become ``sending`` with ``owner`` and a lease of ``lease``."""
        ...

    async def next_attempt_due(self) -> datetime | None:
        """The earliest ``next_attempt_at`` of any ``queued`` or ``retrying`` notice (business time),
        so the dispatcher can sleep on the clock until a durable retry falls due."""
        ...

    async def notice_requests(self, notice_id: str) -> list[TakedownRequest]:
        """The requests of a notice, in the order they were batched."""
        ...

    async def record_delivery(
        self, notice_id: str, *, owner: str, attempt: Attempt, result: SendResult, channel: str
    ) -> bool:
        """``sending`` → ``delivered`` (requests → ``delivered``, ``delivered_at = attempt.at``) or,
        when ``result.awaiting_submission``, → ``awaiting_submission`` (requests stay ``batched``).
        Keeps the Message-ID, the ticket (and ``receipt_at``) and the attempt. False, changing
        nothing, when ``owner`` no longer holds the lease."""
        ...

    async def record_failure(
        self,
        notice_id: str,
        *,
        owner: str,
        attempt: Attempt,
        channel: str,
        next_attempt_at: datetime | None,
        deliver_by: datetime,
        fallback_used: bool,
    ) -> bool:
        """Keep the attempt; then ``retrying`` at ``next_attempt_at`` on ``channel`` (which may now be
        the fallback, with its own ``deliver_by``), or, when ``next_attempt_at`` is None,
        ``failed`` with its requests. False, changing nothing, when the lease is lost."""
        ...

    async def record_attempt(self, notice_id: str, *, owner: str, attempt: Attempt) -> None:
        """Keep an attempt that changes no state (a short in-call retry that failed)."""
        ...

    async def release(self, notice_id: str, *, owner: str, until: datetime | None = None) -> None:
        """Give a claimed notice back: its lease ends now and it is due again at once (shutdown)
        or at ``until`` (waiting for a rate-limit slot without holding a lease or a send slot)."""
        ...

    async def get_notices(self, notice_ids: Sequence[str]) -> list[Notice]:
        """Notices with their request ids and attempts (unknown ids are left out)."""
        ...

    async def retry_failed(self, notice_id: str, *, now: datetime, deliver_by: datetime) -> Notice | None:
        """``failed`` → ``queued`` on its primary channel, due now, requests back to ``batched``;
        None when the notice is unknown or not failed."""
        ...

    async def mark_submitted(self, notice_id: str, *, at: datetime, ticket: str | None) -> Notice | None:
        """Staff submitted a portal notice: ``awaiting_submission`` → ``delivered`` at ``at``,
        requests → ``delivered``. None when the notice is unknown or not awaiting submission."""
        ...

    async def unalerted_failures(self, *, limit: int) -> list[Notice]:
        """Failed notices whose operations alert has not been sent yet (durable alerting)."""
        ...

    async def mark_alerted(self, notice_id: str, *, at: datetime) -> None: ...

    async def take_rate_slot(self, platform: str, *, per_minute: int) -> float:
        """A token bucket shared by every process: 0 when a notice may go now (the slot is taken),
        else the seconds to wait before asking again. Judged by the store's clock."""
        ...


class AckStore(Protocol):
    """The store's side of acknowledgements, receipts and bounces (SPEC §7)."""

    async def ack_context(self, notice_id: str) -> tuple[Notice, dict[str, RequestState]] | None:
        """The notice and the state of each of its requests, or None for an unknown notice."""
        ...

    async def apply_ack(self, ack: Ack, plan: AckPlan) -> bool:
        """Carry out ``plan`` atomically, only if the notice is still in ``plan.notice_before`` and
        every changed request still in its ``before`` state; else change nothing and return False
        (the caller plans again). Sets the notice's ``acknowledged_at``/``resolved_at`` and each
        request's ``acknowledged_at``/``resolved_at`` from the plan, keeps ``ack.ticket`` as the
        notice's ticket when it has none, and records the acknowledgement in the history."""
        ...

    async def record_ack_history(self, ack: Ack, *, outcome: str) -> None:
        """Keep an acknowledgement that changed nothing (late, repeated, unknown items), with why."""
        ...

    async def record_receipt(self, notice_id: str, *, at: datetime, ticket: str | None, source: str) -> bool:
        """An automated confirmation (auto-reply, API ticket): set ``receipt_at`` if unset, the
        ticket if the notice has none. False when the notice is unknown."""
        ...

    async def record_bounce(
        self,
        notice_id: str,
        *,
        attempt: Attempt,
        channel: str,
        next_attempt_at: datetime,
        deliver_by: datetime,
        fallback_used: bool,
    ) -> bool:
        """The notice was not delivered after all: only from ``delivered``, back to ``retrying``
        on ``channel`` at ``next_attempt_at`` (its SLA clock restarts at the next delivery), its
        delivered requests back to ``batched`` with ``delivered_at`` cleared, the bounce kept as
        an attempt. False, changing nothing, in any other state."""
        ...

    async def remember_webhook(self, platform: str, webhook_id: str, *, at: datetime) -> bool:
        """True the first time a platform's ``webhook-id`` is seen, False for a replay."""
        ...

    async def remember_mail(self, mailbox: str, uidvalidity: int, uid: int, *, at: datetime) -> bool:
        """True the first time an IMAP message (mailbox, UIDVALIDITY, UID) is seen."""
        ...

    async def remembered_mail(self, mailbox: str, uidvalidity: int, uids: Sequence[int]) -> set[int]:
        """The UIDs among ``uids`` already remembered for that mailbox and UIDVALIDITY (a read)."""
        ...

    async def notice_by_ticket(self, ticket: str, *, platform: str | None = None) -> str | None:
        """The notice a platform's ticket was recorded on (receipts, acknowledgements), if any."""
        ...


class MailSink(Protocol):
    """Where inbound mail goes (IMAP reader, inbound SMTP listener): classified, matched, applied."""

    async def handle_mail(
        self, raw: bytes, *, source: str, envelope_recipients: Sequence[str] = ()
    ) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaClaim:
    """A notice whose SLA timer has come, claimed by one monitor, with what the rules need."""

    notice_id: str
    platform: str
    channel: str  # the channel it was delivered over: reminders follow it there
    state: NoticeState
    facts: SlaFacts
    # The timer as the claim set it (a lease ahead): :meth:`SlaStore.reschedule_sla` moves it on
    # only if it still holds this value.
    claimed_until: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaReschedule:
    """Where a claimed notice's timer goes next: its next decision's due time, or None (nothing
    left to decide)."""

    notice_id: str
    claimed_until: datetime
    next_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaDecision:
    """A decision as the store keeps it: taken once, then sent at least once (or dropped, for a
    reminder overtaken by what it was about)."""

    notice_id: str
    kind: SlaKind
    decided_at: datetime
    due_at: datetime
    sent_at: datetime | None = None
    message_ref: str | None = None  # the Message-ID / API id / outbox file it went out as
    dropped_at: datetime | None = None  # never sent: overtaken (the acknowledgement came first)


class SlaStore(Protocol):
    """The store's side of the SLA monitor (SPEC §7).

    Each notice carries a durable timer (``sla_due_at``, business time): when to look at its SLA
    next. It is never later than the first decision still owed (earlier only costs a look that
    finds nothing due), NULL when nothing is left to decide. A delivery (``record_delivery``,
    ``mark_submitted``) and a rendering for the portal set it to that moment; a bounce back to
    ``retrying`` clears it; acknowledgements leave it, since they only move decisions later. The
    monitor claims due notices in due order, decides, and moves each timer on, so the next due
    notice is one index probe whatever the number of open notices.
    """

    async def claim_sla_due(self, *, now: datetime, lease: timedelta, limit: int) -> list[SlaClaim]:
        """Up to ``limit`` notices whose timer is at or before ``now`` (business time), earliest
        timer first, each claimed by pushing its timer to ``now + lease`` in the same transaction,
        so a concurrent monitor skips it (and takes it over once that time comes, if this one
        died). Each comes with its state, times, open requests (neither removed, rejected,
        withdrawn nor failed) and the kinds already decided."""
        ...

    async def reschedule_sla(self, moves: Sequence[SlaReschedule]) -> int:
        """Set each claimed notice's timer to ``next_at``, only where it still holds the claim's
        ``claimed_until`` (compare-and-set: a delivery or bounce since the claim is kept). Returns
        how many timers were moved."""
        ...

    async def next_sla_due(self) -> datetime | None:
        """The earliest timer of any notice (business time), or None: the monitor sleeps until
        then. One probe of the timers' index."""
        ...

    async def drop_decision(self, notice_id: str, kind: SlaKind, *, owner: str, at: datetime) -> bool:
        """Mark a decision ``owner`` has claimed and not sent as dropped at ``at`` (a reminder
        whose acknowledgement came first): it is never sent nor claimed again, and it stays
        decided. False, changing nothing, when it is sent, dropped or not held by ``owner``."""
        ...

    async def decide(
        self, notice_id: str, due: Mapping[SlaKind, datetime], *, decided_at: datetime
    ) -> frozenset[SlaKind]:
        """Record the decisions due together on one notice (kind → due time) in one transaction,
        ``INSERT … ON CONFLICT DO NOTHING``: the kinds this caller recorded, each returned to one
        caller only, whatever the number of processes. Breaches due together are therefore decided,
        claimed and escalated together, never one by each of two processes."""
        ...

    async def claim_unsent_decisions(self, *, owner: str, lease: timedelta, limit: int) -> list[SlaDecision]:
        """The unsent (and not dropped) decisions of up to ``limit`` notices that no other monitor is
        sending, claimed for ``owner`` for ``lease`` (the store's clock). A notice's unsent
        decisions are claimed together, never split between two monitors, so one escalation covers
        the breaches owed; two processes never send the same one at once, and one that died while
        sending leaves it to the other once the claim runs out."""
        ...

    async def release_decision(self, notice_id: str, kind: SlaKind, *, owner: str) -> None:
        """Give back a claimed decision that could not be sent (it stays unsent)."""
        ...

    async def unsent_decisions(self, *, limit: int) -> list[SlaDecision]:
        """Decisions neither sent nor dropped yet, oldest decision first."""
        ...

    async def mark_decision_sent(
        self, notice_id: str, kind: SlaKind, *, at: datetime, message_ref: str | None
    ) -> None:
        """Keep when (first) and as what the decision went out; a later call changes nothing."""
        ...

    async def sla_decisions(self, notice_ids: Sequence[str]) -> list[SlaDecision]:
        """Every decision about ``notice_ids``, sent or not, oldest first (reports, tests)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenItems:
    """What is still open, per platform, for the gauges of ``/metrics`` (SPEC §10).

    Only the platforms asked about appear, and only the states and ages that have rows: callers
    fill the zeros. Times are as stored; the caller turns them into ages with its clock.
    """

    # platform → state (one of OPEN_REQUEST_STATES / OPEN_NOTICE_STATES) → count
    requests: dict[str, dict[str, int]]
    notices: dict[str, dict[str, int]]
    # platform → ``ingested_at`` of its oldest request not delivered yet (pending or batched)
    oldest_undelivered: dict[str, datetime]
    # platform → ``delivered_at`` of its oldest request delivered and not acknowledged (delivered)
    oldest_unacknowledged: dict[str, datetime]


class MonitoringStore(Protocol):
    async def open_items(self, platforms: Sequence[str]) -> OpenItems:
        """Counts of the requests and notices of ``platforms`` not in a final state, and the oldest
        undelivered and unacknowledged request of each. Runs on every scrape of ``/metrics``, so it
        reads indexes only: its cost grows with the open items, never with the history."""
        ...


class Store(IntakeStore, NoticeStore, AckStore, SlaStore, MonitoringStore, Protocol):
    """Durable state of notifier: what the SQL store and its in-memory fake both implement."""
