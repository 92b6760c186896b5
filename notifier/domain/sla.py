"""The SLA rules (SPEC §7): when a reminder is due, when a bound is breached, and when to look again.

Pure: the time is passed in. Clocks run from delivery. A breach is elapsed time *strictly* greater
than the bound, so exactly 36 h after delivery is still within a 36 h bound; a reminder is due at
``remind_at * ack_within`` after delivery while no acknowledgement has come.

The authority's own clock runs before delivery: a portal notice rendered for staff to file and left
unfiled for longer than ``file_within`` is an ``undelivered`` breach, told to the operations staff
(never the platform). It is judged from the facts alone, so a notice filed after the bound had
passed still gets it, even when nobody looked in time.

Each decision is taken once per notice (the store keeps it under its kind); these rules only say
which are due and leave out the kinds already decided. :attr:`SlaOutlook.next_at` is the notice's
next timer: the store keeps it (``notices.sla_due_at``) so the monitor looks at a notice only when
something may fall due.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from notifier.domain.models import NoticeState

# The smallest step of a datetime: a breach is due one step after the bound has passed, which is
# the earliest moment "elapsed > bound" holds.
_TICK = timedelta(microseconds=1)


class SlaKind(enum.StrEnum):
    REMINDER = "reminder"
    ACK_BREACH = "ack_breach"
    REMOVAL_BREACH = "removal_breach"
    # A portal notice left unfiled past ``file_within``: the authority's breach, not the platform's.
    UNDELIVERED_BREACH = "undelivered_breach"


# The breaches of the platform's bounds, escalated to the platform.
PLATFORM_BREACHES = frozenset({SlaKind.ACK_BREACH, SlaKind.REMOVAL_BREACH})

# The notices whose SLA is judged: rendered and waiting to be filed, or delivered and not settled.
# Any other (resolved, failed, back on its way after a bounce) owes nothing.
JUDGED_STATES = frozenset({NoticeState.AWAITING_SUBMISSION, NoticeState.DELIVERED, NoticeState.ACKNOWLEDGED})


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaBounds:
    """One platform's bounds: ``settings.sla`` overridden by ``platforms.<id>.sla``."""

    ack_within: timedelta
    removal_within: timedelta
    remind_at: float = 0.66
    # How long a portal notice may wait for staff to file it, from when it was rendered.
    file_within: timedelta = timedelta(hours=2)

    def __post_init__(self) -> None:
        if not 0 < self.remind_at < 1:
            raise ValueError("remind_at must be between 0 and 1")
        if min(self.ack_within, self.removal_within, self.file_within) <= timedelta(0):
            raise ValueError("SLA bounds must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaFacts:
    """What the rules need to know about one notice: delivered, or rendered for the portal and
    waiting to be filed (``delivered_at`` None, ``rendered_at`` set)."""

    delivered_at: datetime | None
    acknowledged_at: datetime | None
    open_requests: int  # requests neither removed nor rejected (nor withdrawn or failed)
    decided: Collection[SlaKind] = ()
    rendered_at: datetime | None = None  # when a portal notice began to wait for staff to file it
    # Clarification (SPEC §14): the platform asked at ``clarification_requested_at``; until the
    # authority answers, the removal clock stands still. Answered at ``clarified_at``, it runs again
    # for the full bound from that moment (TCO Regulation Art. 3(8)).
    clarification_requested_at: datetime | None = None
    clarified_at: datetime | None = None
    # Every pause counts: the earlier clarifications' pauses, answered before the current one.
    earlier_paused: timedelta = timedelta(0)


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


def removal_clock(facts: SlaFacts) -> datetime | None:
    """When the removal clock (last) started: delivery, or the answer to a clarification; None
    while a clarification is asked and not answered (the clock stands still)."""
    asked, answered = facts.clarification_requested_at, facts.clarified_at
    if asked is not None and (answered is None or answered < asked):
        return None
    return answered if answered is not None else facts.delivered_at


def paused(facts: SlaFacts, *, now: datetime) -> timedelta:
    """How long the removal clock stood still, every pause summed: the earlier clarifications'
    pauses, and the current one from its asking to its answer (or to ``now`` while unanswered)."""
    asked = facts.clarification_requested_at
    if asked is None:
        return facts.earlier_paused
    answered = facts.clarified_at
    end = answered if answered is not None and answered >= asked else now
    return facts.earlier_paused + max(timedelta(0), end - asked)


def pause_asked(facts: SlaFacts, *, at: datetime) -> tuple[datetime, timedelta]:
    """A clarification asked at ``at``: when the pause it is part of began, and the earlier pauses
    to keep. Asked again while one is unanswered, the clock was already stopped: the pause goes
    on from the first asking. Asked after an answer, the answered pause joins the earlier ones."""
    asked, answered = facts.clarification_requested_at, facts.clarified_at
    if asked is None:
        return at, facts.earlier_paused
    if answered is None or answered < asked:
        return asked, facts.earlier_paused
    return at, facts.earlier_paused + (answered - asked)


def reminder_at(delivered_at: datetime, bounds: SlaBounds) -> datetime:
    return delivered_at + bounds.ack_within * bounds.remind_at


def breached(elapsed: timedelta, bound: timedelta) -> bool:
    """Strictly greater: exactly the bound is within it."""
    return elapsed > bound


def outlook(facts: SlaFacts, bounds: SlaBounds, *, now: datetime) -> SlaOutlook:
    """The decisions due at ``now`` and when the next one will be (None: nothing left to decide).

    A reminder that was never sent before the acknowledgement bound passed (the daemon was down)
    is no longer due: the breach and its escalation say more, and a reminder after them would
    only confuse the platform. A notice neither delivered nor rendered owes nothing yet.
    """
    due: list[SlaDue] = []
    upcoming: list[datetime] = []

    def consider(kind: SlaKind, at: datetime, elapsed: timedelta, bound: timedelta, is_due: bool) -> None:
        if kind in facts.decided:
            return
        if is_due:
            due.append(SlaDue(kind=kind, due_at=at, elapsed=elapsed, bound=bound))
        else:
            upcoming.append(at)

    if facts.rendered_at is not None:
        # Unfiled until delivery, or until now while it is still waiting.
        filed_at = facts.delivered_at if facts.delivered_at is not None else now
        unfiled = filed_at - facts.rendered_at
        late = breached(unfiled, bounds.file_within)
        if late or facts.delivered_at is None:
            at = facts.rendered_at + bounds.file_within + _TICK
            consider(SlaKind.UNDELIVERED_BREACH, at, unfiled, bounds.file_within, late)
    delivered_at = facts.delivered_at
    if delivered_at is None:
        return SlaOutlook(due=tuple(due), next_at=min(upcoming) if upcoming else None)
    elapsed = now - delivered_at
    if facts.acknowledged_at is None:
        ack_breach = breached(elapsed, bounds.ack_within)
        if not ack_breach:
            at = reminder_at(delivered_at, bounds)
            consider(SlaKind.REMINDER, at, elapsed, bounds.ack_within, now >= at)
        at = delivered_at + bounds.ack_within + _TICK
        consider(SlaKind.ACK_BREACH, at, elapsed, bounds.ack_within, ack_breach)
    started = removal_clock(facts)
    if facts.open_requests > 0 and started is not None:
        # A clarification answered restarts the clock for the full bound; one asked and not
        # answered stops it (``started`` None: nothing falls due until the answer).
        on_clock = now - started
        at = started + bounds.removal_within + _TICK
        consider(
            SlaKind.REMOVAL_BREACH,
            at,
            on_clock,
            bounds.removal_within,
            breached(on_clock, bounds.removal_within),
        )
    return SlaOutlook(due=tuple(due), next_at=min(upcoming) if upcoming else None)
