"""When the pending requests of one platform become a notice (SPEC §6, issue "batching").

A notice closes when it reaches ``max_items``, when its oldest request has waited ``max_wait``, or
at once when an urgent request is waiting. The decision is a value; the dispatcher carries it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Pending:
    """What the store knows about one platform's pending requests."""

    count: int
    oldest_at: datetime | None
    urgent: int


@dataclass(frozen=True, slots=True)
class PendingGroup:
    """One platform's pending requests of one deadline profile (None: the platform's bounds):
    they form notices of their own (SPEC §14)."""

    deadline: str | None
    pending: Pending


@dataclass(frozen=True, slots=True)
class BatchDecision:
    close: bool  # form a notice now
    reason: str  # "full", "waited", "urgent" or "" when not closing
    wake_at: datetime | None = None  # when to look again if not closing (None: nothing pending)


def decide(pending: Pending, *, now: datetime, max_items: int, max_wait: timedelta) -> BatchDecision:
    if pending.count == 0 or pending.oldest_at is None:
        return BatchDecision(close=False, reason="")
    if pending.urgent > 0:
        return BatchDecision(close=True, reason="urgent")
    if pending.count >= max_items:
        return BatchDecision(close=True, reason="full")
    due = pending.oldest_at + max_wait
    if now >= due:
        return BatchDecision(close=True, reason="waited")
    return BatchDecision(close=False, reason="", wake_at=due)
