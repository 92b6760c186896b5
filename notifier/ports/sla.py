"""The SLA monitor's port: open notices to judge, and its decisions, taken once and sent at least once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from notifier.domain.evidence import EvidenceRecord
from notifier.domain.models import NoticeState
from notifier.domain.sla import SlaFacts, SlaKind


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
    # The deadline profile of its requests (SPEC §14): judged by that profile's bounds on its
    # platform; None: by the platform's own.
    deadline: str | None = None


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
        self,
        notice_id: str,
        kind: SlaKind,
        *,
        at: datetime,
        message_ref: str | None,
        evidence: Sequence[EvidenceRecord] = (),
    ) -> None:
        """Keep when (first) and as what the decision went out; a later call changes nothing but
        appends ``evidence`` (what was sent) to the ledger."""
        ...

    async def sla_decisions(self, notice_ids: Sequence[str]) -> list[SlaDecision]:
        """Every decision about ``notice_ids``, sent or not, oldest first (reports, tests)."""
        ...
