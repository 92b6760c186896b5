"""The SLA monitor's port: open notices to judge, and its decisions, taken once and sent at least once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from notifier.domain.sla import SlaFacts, SlaKind


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaCandidate:
    """An open notice (delivered or acknowledged) with what the SLA rules need about it."""

    notice_id: str
    platform: str
    channel: str  # the channel it was delivered over: reminders follow it there
    facts: SlaFacts


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaDecision:
    """A decision as the store keeps it: taken once, then sent at least once."""

    notice_id: str
    kind: SlaKind
    decided_at: datetime
    due_at: datetime
    sent_at: datetime | None = None
    message_ref: str | None = None  # the Message-ID / API id / outbox file it went out as


class SlaStore(Protocol):
    async def sla_candidates(self, *, now: datetime, limit: int) -> list[SlaCandidate]:
        """Notices delivered by ``now`` and still ``delivered`` or ``acknowledged``, oldest delivery
        first, with their request counts and the kinds already decided; notices with nothing left to
        decide (removal breach decided, and acknowledged or acknowledgement breach decided) are
        left out."""
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
        """The unsent decisions of up to ``limit`` notices that no other monitor is sending, claimed
        for ``owner`` for ``lease`` (the store's clock). A notice's unsent decisions are claimed
        together, never split between two monitors, so one escalation covers the breaches owed;
        two processes never send the same one at once, and one that died while sending leaves it
        to the other once the claim runs out."""
        ...

    async def release_decision(self, notice_id: str, kind: SlaKind, *, owner: str) -> None:
        """Give back a claimed decision that could not be sent (it stays unsent)."""
        ...

    async def unsent_decisions(self, *, limit: int) -> list[SlaDecision]:
        """Decisions not sent yet, oldest decision first."""
        ...

    async def mark_decision_sent(
        self, notice_id: str, kind: SlaKind, *, at: datetime, message_ref: str | None
    ) -> None:
        """Keep when (first) and as what the decision went out; a later call changes nothing."""
        ...

    async def sla_decisions(self, notice_ids: Sequence[str]) -> list[SlaDecision]:
        """Every decision about ``notice_ids``, sent or not, oldest first (reports, tests)."""
        ...
