"""The SLA rules (SPEC §7): when a reminder is due, when a bound is breached, and when to look again.

Pure: the time is passed in. Clocks run from delivery. A breach is elapsed time *strictly* greater
than the bound, so exactly 36 h after delivery is still within a 36 h bound; a reminder is due at
``remind_at * ack_within`` after delivery while no acknowledgement has come.

Each decision is taken once per notice (the store keeps it under its kind); these rules only say
which are due and leave out the kinds already decided.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

# The smallest step of a datetime: a breach is due one step after the bound has passed, which is
# the earliest moment "elapsed > bound" holds.
_TICK = timedelta(microseconds=1)


class SlaKind(enum.StrEnum):
    REMINDER = "reminder"
    ACK_BREACH = "ack_breach"
    REMOVAL_BREACH = "removal_breach"


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaBounds:
    """One platform's bounds: ``settings.sla`` overridden by ``platforms.<id>.sla``."""

    ack_within: timedelta
    removal_within: timedelta
    remind_at: float = 0.66

    def __post_init__(self) -> None:
        if not 0 < self.remind_at < 1:
            raise ValueError("remind_at must be between 0 and 1")
        if self.ack_within <= timedelta(0) or self.removal_within <= timedelta(0):
            raise ValueError("SLA bounds must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaFacts:
    """What the rules need to know about one delivered notice."""

    delivered_at: datetime
    acknowledged_at: datetime | None
    open_requests: int  # requests neither removed nor rejected (nor withdrawn or failed)
    decided: Collection[SlaKind] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaDue:
    """A decision that is due: its kind, the moment it fell due, elapsed time and the bound."""

    kind: SlaKind
    due_at: datetime
    elapsed: timedelta
    bound: timedelta


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaOutlook:
    due: tuple[SlaDue, ...]
    next_at: datetime | None  # the earliest time a decision not due yet will be due


def reminder_at(facts: SlaFacts, bounds: SlaBounds) -> datetime:
    return facts.delivered_at + bounds.ack_within * bounds.remind_at


def breached(elapsed: timedelta, bound: timedelta) -> bool:
    """Strictly greater: exactly the bound is within it."""
    return elapsed > bound


def outlook(facts: SlaFacts, bounds: SlaBounds, *, now: datetime) -> SlaOutlook:
    """The decisions due at ``now`` and when the next one will be.

    A reminder that was never sent before the acknowledgement bound passed (the daemon was down)
    is no longer due: the breach and its escalation say more, and a reminder after them would
    only confuse the platform.
    """
    elapsed = now - facts.delivered_at
    due: list[SlaDue] = []
    upcoming: list[datetime] = []
    unacknowledged = facts.acknowledged_at is None

    def consider(kind: SlaKind, at: datetime, bound: timedelta, is_due: bool) -> None:
        if kind in facts.decided:
            return
        if is_due:
            due.append(SlaDue(kind=kind, due_at=at, elapsed=elapsed, bound=bound))
        else:
            upcoming.append(at)

    if unacknowledged:
        ack_breach = breached(elapsed, bounds.ack_within)
        if not ack_breach:
            at = reminder_at(facts, bounds)
            consider(SlaKind.REMINDER, at, bounds.ack_within, now >= at)
        consider(
            SlaKind.ACK_BREACH, facts.delivered_at + bounds.ack_within + _TICK, bounds.ack_within, ack_breach
        )
    if facts.open_requests > 0:
        consider(
            SlaKind.REMOVAL_BREACH,
            facts.delivered_at + bounds.removal_within + _TICK,
            bounds.removal_within,
            breached(elapsed, bounds.removal_within),
        )
    return SlaOutlook(due=tuple(due), next_at=min(upcoming) if upcoming else None)
