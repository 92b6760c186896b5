"""The delivery state machine over random sequences of events (:mod:`notifier.domain.delivery`).

A notice and its requests are carried through whatever can happen to them — claims, sends that go
through or fail for now or for good, bounces of any of its messages on any channel, soft or hard,
acknowledgements, portal filings, retries by hand — each step decided by the pure rules and applied
the way the store applies it. Whatever the order: no request is lost, nothing moves backward, the
delivery window is never reset by a bounce, and the SLA clock restarts only on a bounce of the notice
itself.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.domain.acks import Ack, AckItem, AckStatus, ItemStatus, plan_ack
from notifier.domain.delivery import (
    Bounce,
    Channels,
    DeliveryDecision,
    Step,
    after_bounce,
    after_retry_by_hand,
    after_send,
    after_submission,
)
from notifier.domain.models import NoticeState, RequestState
from notifier.domain.notices import Attempt, AttemptOutcome, Notice

T0 = datetime(2024, 9, 3, 1, 0, tzinfo=UTC)
WINDOW = timedelta(hours=6)
REQUESTS = ("r1", "r2", "r3")
FINAL = {RequestState.REMOVED, RequestState.REJECTED}
PROPERTIES = settings(max_examples=400, deadline=None, derandomize=True, database=None)

events = st.one_of(
    st.tuples(st.just("claim")),
    st.tuples(st.just("send"), st.sampled_from(list(AttemptOutcome)), st.booleans()),
    st.tuples(
        st.just("bounce"),
        st.sampled_from([None, "notice", "reminder", "escalation", "escalation-2", "alert"]),
        st.sampled_from(["email", "api", "manual"]),
        st.sampled_from([None, "4.2.2", "5.1.1", "5.7.1"]),
    ),
    st.tuples(st.just("submit")),
    st.tuples(st.just("retry_by_hand")),
    st.tuples(
        st.just("ack"),
        st.sampled_from([AckStatus.RECEIVED, AckStatus.REMOVED, AckStatus.REJECTED]),
        st.sets(st.sampled_from(REQUESTS)),
    ),
    st.tuples(st.just("wait"), st.integers(min_value=1, max_value=4 * 3600)),
)


@dataclass
class World:
    """A notice and its requests as the store would hold them, and the time."""

    notice: Notice
    requests: dict[str, RequestState]
    delivered_at: dict[str, datetime | None]
    now: datetime
    channels: Channels


def _formed(channels: Channels) -> World:
    notice = Notice(
        notice_id="TD-telegram-20240903-000001",
        platform="telegram",
        channel=channels.primary,
        primary_channel=channels.primary,
        state=NoticeState.QUEUED,
        created_at=T0,
        request_ids=REQUESTS,
        deliver_by=T0 + WINDOW,
        next_attempt_at=T0,
    )
    return World(
        notice=notice,
        requests=dict.fromkeys(REQUESTS, RequestState.BATCHED),
        delivered_at=dict.fromkeys(REQUESTS),
        now=T0,
        channels=channels,
    )


def _attempted(world: World, outcome: AttemptOutcome, channel: str) -> tuple[Attempt, ...]:
    return (*world.notice.attempts, Attempt(at=world.now, channel=channel, outcome=outcome))


def _carry_out(world: World, decision: DeliveryDecision, attempt: AttemptOutcome, channel: str) -> None:
    """What the store does with a decision (``record_delivery`` / ``record_failure`` /
    ``record_bounce`` / ``mark_submitted`` / ``retry_failed``)."""
    if not decision.changes_anything:
        return
    assert world.notice.state is decision.before
    notice = replace(
        world.notice,
        state=decision.state,
        channel=decision.channel,
        deliver_by=decision.deliver_by,
        fallback_used=decision.fallback_used,
        next_attempt_at=decision.next_attempt_at,
        attempts=_attempted(world, attempt, channel),
    )
    if decision.step is Step.DELIVERED:
        notice = replace(notice, delivered_at=world.now)
        for rid, state in world.requests.items():
            if state is RequestState.BATCHED:
                world.requests[rid], world.delivered_at[rid] = RequestState.DELIVERED, world.now
    elif decision.step in (Step.RETRY, Step.FALLBACK, Step.FAIL):
        notice = replace(notice, delivered_at=None)
        back = RequestState.FAILED if decision.step is Step.FAIL else RequestState.BATCHED
        for rid, state in world.requests.items():
            if state in (RequestState.BATCHED, RequestState.DELIVERED):
                world.requests[rid], world.delivered_at[rid] = back, None
    elif decision.step is Step.REQUEUE:
        for rid, state in world.requests.items():
            if state is RequestState.FAILED:
                world.requests[rid] = RequestState.BATCHED
    world.notice = notice


def _happen(world: World, event: tuple[object, ...]) -> bool:
    """Time passing, a claim, an acknowledgement: the events that need no delivery decision."""
    kind, notice = event[0], world.notice
    if kind == "wait":
        assert isinstance(event[1], int)
        world.now += timedelta(seconds=event[1])
    elif kind == "claim":
        if notice.state in (NoticeState.QUEUED, NoticeState.RETRYING):
            world.notice = replace(notice, state=NoticeState.SENDING)
    elif kind == "ack":
        status, items = event[1], event[2]
        assert isinstance(status, AckStatus) and isinstance(items, set)
        ack = Ack(
            notice_id=notice.notice_id,
            status=status,
            received_at=world.now,
            source="test",
            items=tuple(AckItem(request_id=r, status=ItemStatus(status.value)) for r in sorted(items)),
        )
        plan = plan_ack(notice.state, world.requests, ack)
        for change in plan.changes:
            world.requests[change.request_id] = change.after
        world.notice = replace(notice, state=plan.notice_after)
    else:
        return False
    return True


def _step(world: World, event: tuple[object, ...], rng: random.Random) -> DeliveryDecision | None:
    if _happen(world, event):
        return None
    kind, notice = event[0], world.notice
    if kind == "send":
        outcome, awaiting = event[1], event[2]
        assert isinstance(outcome, AttemptOutcome) and isinstance(awaiting, bool)
        decision = after_send(
            notice,
            outcome=outcome,
            at=world.now,
            channels=world.channels,
            deliver_within=WINDOW,
            rng=rng,
            awaiting_submission=awaiting,
        )
        _carry_out(world, decision, outcome, notice.channel)
        return decision
    if kind == "bounce":
        message, channel, status = event[1], event[2], event[3]
        assert isinstance(channel, str)
        bounce = Bounce(message=message, channel=channel, status=status)  # type: ignore[arg-type]
        decision = after_bounce(
            notice, bounce, at=world.now, channels=world.channels, deliver_within=WINDOW, rng=rng
        )
        _carry_out(world, decision, AttemptOutcome.PERMANENT_ERROR, channel)
        return decision
    if kind == "submit":
        decision = after_submission(notice)
        _carry_out(world, decision, AttemptOutcome.DELIVERED, notice.channel)
        return decision
    decision = after_retry_by_hand(notice, at=world.now, channels=world.channels, deliver_within=WINDOW)
    _carry_out(world, decision, AttemptOutcome.TRANSIENT_ERROR, notice.channel)
    return decision


channel_plans = st.sampled_from(
    [Channels(primary="email"), Channels(primary="api", fallback="email"), Channels(primary="manual")]
)


@PROPERTIES
@given(channels=channel_plans, sequence=st.lists(events, max_size=40), seed=st.integers(0, 2**16))
def test_no_sequence_loses_a_request_moves_one_back_or_restarts_a_clock_but_a_notice_bounce(
    channels: Channels, sequence: list[tuple[object, ...]], seed: int
) -> None:
    world = _formed(channels)
    rng = random.Random(seed)
    for event in sequence:
        before_notice, before_requests = world.notice, dict(world.requests)
        before_delivered = dict(world.delivered_at)
        decision = _step(world, event, rng)

        # Every request is still there, in exactly one state; a final one never moves again.
        assert set(world.requests) == set(REQUESTS)
        for rid in REQUESTS:
            if before_requests[rid] in FINAL:
                assert world.requests[rid] is before_requests[rid]

        notice_bounced = (
            event[0] == "bounce"
            and decision is not None
            and decision.changes_anything
            and event[1] in (None, "notice")
        )
        # The SLA clock of a delivered request restarts (or stops) only on a bounce of the notice.
        for rid in REQUESTS:
            if before_delivered[rid] is not None and world.delivered_at[rid] != before_delivered[rid]:
                assert notice_bounced, f"{event} moved the delivery time of {rid}"
        # A bounce of any other message changes nothing at all.
        if event[0] == "bounce" and event[1] not in (None, "notice"):
            assert (world.notice, world.requests) == (before_notice, before_requests)
            assert decision is not None and decision.step is Step.CONTACT_BOUNCED
        # The delivery window is only ever set again by the fallback (once) or by staff.
        if world.notice.deliver_by != before_notice.deliver_by:
            assert decision is not None and decision.step in (Step.FALLBACK, Step.REQUEUE)
        # A retry never lands past the window it was decided in.
        if decision is not None and decision.step is Step.RETRY:
            assert decision.next_attempt_at is not None
            assert decision.next_attempt_at <= before_notice.deliver_by
        # Failed notices fail their undelivered requests, and nothing else.
        if world.notice.state is NoticeState.FAILED:
            assert all(state in FINAL | {RequestState.FAILED} for state in world.requests.values())


@PROPERTIES
@given(status=st.sampled_from(["5.1.1", "5.2.2", "5.7.1"]), seed=st.integers(0, 2**16))
def test_a_hard_bounce_without_a_fallback_fails_the_notice_after_one_send(status: str, seed: int) -> None:
    world = _formed(Channels(primary="email"))
    rng = random.Random(seed)
    for event in [
        ("claim",),
        ("send", AttemptOutcome.DELIVERED, False),
        ("bounce", "notice", "email", status),
    ]:
        _step(world, event, rng)
    assert world.notice.state is NoticeState.FAILED
    assert set(world.requests.values()) == {RequestState.FAILED}


@PROPERTIES
@given(delays=st.lists(st.integers(min_value=60, max_value=3 * 3600), min_size=1, max_size=20))
def test_soft_bounces_stop_at_the_window_from_creation(delays: list[int]) -> None:
    world = _formed(Channels(primary="email"))
    rng = random.Random(0)
    turn = 0
    while world.notice.state is not NoticeState.FAILED:
        assert world.now <= T0 + WINDOW + timedelta(hours=4), "still retrying long past its window"
        _step(world, ("claim",), rng)
        _step(world, ("send", AttemptOutcome.DELIVERED, False), rng)
        _step(world, ("bounce", None, "email", "4.2.2"), rng)
        assert world.notice.deliver_by == T0 + WINDOW  # never reset
        if world.notice.next_attempt_at is not None:
            assert world.notice.next_attempt_at <= T0 + WINDOW
            world.now = max(
                world.notice.next_attempt_at, world.now + timedelta(seconds=delays[turn % len(delays)])
            )
        turn += 1
    assert world.now >= T0 + WINDOW  # it failed at the end of its window, not before
