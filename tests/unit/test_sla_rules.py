"""The SLA rules (SPEC §7): reminder at remind_at * bound, breach strictly past the bound."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.domain.sla import SlaBounds, SlaFacts, SlaKind, outlook, pause_asked, paused, removal_clock

DELIVERED = datetime(2024, 9, 3, 9, 0, tzinfo=UTC)
BOUNDS = SlaBounds(ack_within=timedelta(hours=36), removal_within=timedelta(hours=36), remind_at=0.66)
REMIND = DELIVERED + timedelta(hours=36) * 0.66
US = timedelta(microseconds=1)


def facts(
    *,
    acknowledged_at: datetime | None = None,
    open_requests: int = 1,
    decided: frozenset[SlaKind] = frozenset(),
) -> SlaFacts:
    return SlaFacts(
        delivered_at=DELIVERED, acknowledged_at=acknowledged_at, open_requests=open_requests, decided=decided
    )


def kinds_due(
    at: datetime,
    *,
    acknowledged_at: datetime | None = None,
    open_requests: int = 1,
    decided: frozenset[SlaKind] = frozenset(),
) -> set[SlaKind]:
    view = outlook(
        facts(acknowledged_at=acknowledged_at, open_requests=open_requests, decided=decided), BOUNDS, now=at
    )
    return {due.kind for due in view.due}


def test_nothing_is_due_before_the_reminder_and_the_reminder_is_next() -> None:
    view = outlook(facts(), BOUNDS, now=REMIND - timedelta(seconds=1))
    assert view.due == ()
    assert view.next_at == REMIND


def test_the_reminder_is_due_at_remind_at_times_the_bound_without_acknowledgement() -> None:
    assert kinds_due(REMIND) == {SlaKind.REMINDER}
    assert kinds_due(REMIND, acknowledged_at=DELIVERED + timedelta(hours=1)) == set()


def test_exactly_36_hours_is_within_the_bound() -> None:
    at = DELIVERED + timedelta(hours=36)
    view = outlook(facts(decided=frozenset({SlaKind.REMINDER})), BOUNDS, now=at)
    assert view.due == ()
    assert view.next_at is not None and view.next_at > at


def test_one_second_past_36_hours_is_a_breach_of_both_bounds() -> None:
    at = DELIVERED + timedelta(hours=36, seconds=1)
    view = outlook(facts(decided=frozenset({SlaKind.REMINDER})), BOUNDS, now=at)
    assert {d.kind for d in view.due} == {SlaKind.ACK_BREACH, SlaKind.REMOVAL_BREACH}
    breach = next(d for d in view.due if d.kind is SlaKind.ACK_BREACH)
    assert breach.elapsed == timedelta(hours=36, seconds=1)
    assert breach.bound == timedelta(hours=36)
    assert view.next_at is None


def test_the_breach_falls_due_the_instant_after_the_bound() -> None:
    view = outlook(facts(decided=frozenset({SlaKind.REMINDER})), BOUNDS, now=DELIVERED + timedelta(hours=30))
    assert view.next_at == DELIVERED + timedelta(hours=36, microseconds=1)
    assert kinds_due(
        DELIVERED + timedelta(hours=36, microseconds=1), decided=frozenset({SlaKind.REMINDER})
    ) == {
        SlaKind.ACK_BREACH,
        SlaKind.REMOVAL_BREACH,
    }


def test_an_acknowledged_notice_can_still_breach_removal() -> None:
    at = DELIVERED + timedelta(hours=40)
    assert kinds_due(at, acknowledged_at=DELIVERED + timedelta(hours=2)) == {SlaKind.REMOVAL_BREACH}
    assert kinds_due(at, acknowledged_at=DELIVERED + timedelta(hours=2), open_requests=0) == set()


def test_a_reminder_missed_until_past_the_bound_is_not_sent_after_the_breach() -> None:
    assert SlaKind.REMINDER not in kinds_due(DELIVERED + timedelta(hours=37))


def test_decided_kinds_are_not_due_again() -> None:
    everything = frozenset(SlaKind)
    view = outlook(facts(decided=everything), BOUNDS, now=DELIVERED + timedelta(days=10))
    assert view.due == ()
    assert view.next_at is None


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="remind_at"):
        SlaBounds(ack_within=timedelta(hours=1), removal_within=timedelta(hours=1), remind_at=1.0)


@given(
    ack_h=st.integers(min_value=1, max_value=200),
    removal_h=st.integers(min_value=1, max_value=200),
    remind_at=st.floats(min_value=0.01, max_value=0.99),
    elapsed_s=st.integers(min_value=0, max_value=250 * 3600),
)
def test_a_breach_is_due_exactly_when_elapsed_time_is_greater_than_the_bound(
    ack_h: int, removal_h: int, remind_at: float, elapsed_s: int
) -> None:
    bounds = SlaBounds(
        ack_within=timedelta(hours=ack_h), removal_within=timedelta(hours=removal_h), remind_at=remind_at
    )
    now = DELIVERED + timedelta(seconds=elapsed_s)
    view = outlook(facts(), bounds, now=now)
    due = {d.kind for d in view.due}
    elapsed = timedelta(seconds=elapsed_s)
    assert (SlaKind.ACK_BREACH in due) == (elapsed > bounds.ack_within)
    assert (SlaKind.REMOVAL_BREACH in due) == (elapsed > bounds.removal_within)
    if view.next_at is not None:
        assert view.next_at > now
        # Nothing new is due before the announced time.
        later = outlook(facts(decided=frozenset(due)), bounds, now=view.next_at - timedelta(microseconds=1))
        assert later.due == ()


# -- the authority's own clock: a portal notice waiting to be filed ------------------------------------

RENDERED = DELIVERED - timedelta(hours=5)
FILE_WITHIN = timedelta(hours=2)
PORTAL = SlaBounds(
    ack_within=timedelta(hours=36), removal_within=timedelta(hours=36), file_within=FILE_WITHIN
)


def waiting(*, delivered_at: datetime | None = None, decided: frozenset[SlaKind] = frozenset()) -> SlaFacts:
    return SlaFacts(
        delivered_at=delivered_at,
        acknowledged_at=None,
        open_requests=1,
        decided=decided,
        rendered_at=RENDERED,
    )


def test_a_portal_notice_unfiled_for_exactly_file_within_is_within_a_microsecond_more_undelivered() -> None:
    at_bound = outlook(waiting(), PORTAL, now=RENDERED + FILE_WITHIN)
    assert at_bound.due == ()
    assert at_bound.next_at == RENDERED + FILE_WITHIN + timedelta(microseconds=1)
    [due] = outlook(waiting(), PORTAL, now=at_bound.next_at).due
    assert (due.kind, due.bound, due.elapsed) == (SlaKind.UNDELIVERED_BREACH, FILE_WITHIN, FILE_WITHIN + US)
    decided = outlook(waiting(decided=frozenset({SlaKind.UNDELIVERED_BREACH})), PORTAL, now=at_bound.next_at)
    assert (decided.due, decided.next_at) == ((), None)  # nothing more until it is filed


def test_a_portal_notice_filed_in_time_owes_nothing_but_the_platforms_bounds() -> None:
    filed = RENDERED + FILE_WITHIN
    view = outlook(waiting(delivered_at=filed), PORTAL, now=filed + timedelta(hours=3))
    assert view.due == ()
    assert view.next_at == filed + timedelta(hours=36) * 0.66  # the platform's reminder, from filing


def test_a_portal_notice_filed_late_is_undelivered_even_when_nobody_looked_in_time() -> None:
    filed = RENDERED + FILE_WITHIN + timedelta(seconds=30)
    [due] = outlook(waiting(delivered_at=filed), PORTAL, now=filed + timedelta(hours=1)).due
    assert (due.kind, due.elapsed) == (SlaKind.UNDELIVERED_BREACH, FILE_WITHIN + timedelta(seconds=30))
    assert due.due_at == RENDERED + FILE_WITHIN + US


def test_file_within_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        SlaBounds(ack_within=timedelta(hours=1), removal_within=timedelta(hours=1), file_within=timedelta(0))


# -- clarification (SPEC §14) -------------------------------------------------------------------


def test_a_clarification_asked_at_minute_40_answered_at_hour_5_moves_a_one_hour_breach_to_hour_6() -> None:
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    hour = timedelta(hours=1)
    one_hour = SlaBounds(ack_within=hour, removal_within=hour)
    asked = SlaFacts(
        delivered_at=start,
        acknowledged_at=start + timedelta(minutes=40),
        open_requests=1,
        clarification_requested_at=start + timedelta(minutes=40),
    )
    # Waiting for the answer, the clock stands still: nothing falls due, however long it takes.
    assert removal_clock(asked) is None
    waiting = outlook(asked, one_hour, now=start + 4 * hour)
    assert (waiting.due, waiting.next_at) == ((), None)
    answered = replace(asked, clarified_at=start + 5 * hour)
    assert removal_clock(answered) == start + 5 * hour
    assert outlook(answered, one_hour, now=start + 6 * hour).due == ()  # exactly the bound: within
    view = outlook(answered, one_hour, now=start + 5 * hour)
    assert view.next_at == start + 6 * hour + timedelta(microseconds=1)
    [breach] = outlook(answered, one_hour, now=start + 6 * hour + timedelta(seconds=1)).due
    assert breach.kind is SlaKind.REMOVAL_BREACH
    assert breach.elapsed == hour + timedelta(seconds=1)  # on the clock since the answer
    assert paused(answered, now=start + 10 * hour) == timedelta(hours=4, minutes=20)
    assert paused(asked, now=start + 2 * hour) == timedelta(hours=1, minutes=20)


def test_a_question_after_an_answer_keeps_the_answered_pause_and_one_while_open_changes_nothing() -> None:
    start = datetime(2024, 9, 2, tzinfo=UTC)
    minute = timedelta(minutes=1)
    facts = SlaFacts(delivered_at=start, acknowledged_at=None, open_requests=1)
    assert pause_asked(facts, at=start + 40 * minute) == (start + 40 * minute, timedelta(0))
    asked = replace(facts, clarification_requested_at=start + 40 * minute)
    # Asked again while open: the pause goes on from the first asking.
    assert pause_asked(asked, at=start + 90 * minute) == (start + 40 * minute, timedelta(0))
    answered = replace(asked, clarified_at=start + 300 * minute)
    # Asked after the answer: the 4 h 20 min pause joins the earlier ones, a new one begins.
    began, earlier = pause_asked(answered, at=start + 330 * minute)
    assert (began, earlier) == (start + 330 * minute, 260 * minute)
    again = replace(answered, clarification_requested_at=began, earlier_paused=earlier)
    assert removal_clock(again) is None
    done = replace(again, clarified_at=start + 420 * minute)
    assert paused(done, now=start + 600 * minute) == 260 * minute + 90 * minute
    assert removal_clock(done) == start + 420 * minute
