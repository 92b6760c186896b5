"""The rules of acknowledgements: forward only, late and repeated ones change nothing, items count."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.domain.acks import Ack, AckItem, AckStatus, ItemStatus, parse_ack, plan_ack
from notifier.domain.models import NoticeState, RequestState
from notifier.errors import InvalidRequest

AT = datetime(2024, 9, 4, 7, 12, tzinfo=UTC)
NOTICE = "TD-telegram-20240903-000012"
D, A, R, X = RequestState.DELIVERED, RequestState.ACKNOWLEDGED, RequestState.REMOVED, RequestState.REJECTED


def ack(status: AckStatus, *items: tuple[str, ItemStatus]) -> Ack:
    return Ack(
        notice_id=NOTICE,
        status=status,
        items=tuple(AckItem(request_id=r, status=s) for r, s in items),
        received_at=AT,
        source="test",
    )


def test_received_acknowledges_the_notice_and_every_request() -> None:
    plan = plan_ack(NoticeState.DELIVERED, {"a": D, "b": D}, ack(AckStatus.RECEIVED))
    assert plan.notice_after is NoticeState.ACKNOWLEDGED
    assert plan.notice_acknowledged_at == AT
    assert {(c.request_id, c.after, c.acknowledged_at) for c in plan.changes} == {("a", A, AT), ("b", A, AT)}


def test_removed_for_all_resolves_the_notice_and_stamps_both_times() -> None:
    plan = plan_ack(NoticeState.DELIVERED, {"a": D, "b": A}, ack(AckStatus.REMOVED))
    assert plan.notice_after is NoticeState.RESOLVED
    assert plan.notice_resolved_at == AT
    by_id = {c.request_id: c for c in plan.changes}
    assert by_id["a"].acknowledged_at == AT and by_id["a"].resolved_at == AT
    assert by_id["b"].acknowledged_at is None and by_id["b"].resolved_at == AT


def test_partial_items_move_only_the_named_requests() -> None:
    plan = plan_ack(
        NoticeState.DELIVERED,
        {"a": D, "b": D, "c": D},
        ack(AckStatus.PARTIAL, ("a", ItemStatus.REMOVED), ("b", ItemStatus.REJECTED)),
    )
    assert {(c.request_id, c.after) for c in plan.changes} == {("a", R), ("b", X)}
    assert plan.notice_after is NoticeState.ACKNOWLEDGED  # c is still open


def test_the_last_open_item_resolves_the_notice() -> None:
    plan = plan_ack(
        NoticeState.ACKNOWLEDGED, {"a": R, "b": A}, ack(AckStatus.PARTIAL, ("b", ItemStatus.REMOVED))
    )
    assert plan.notice_after is NoticeState.RESOLVED
    assert plan.notice_acknowledged_at is None


@pytest.mark.parametrize(
    ("state", "status"),
    [(R, ItemStatus.RECEIVED), (R, ItemStatus.REJECTED), (X, ItemStatus.REMOVED), (A, ItemStatus.RECEIVED)],
)
def test_nothing_moves_backward_or_sideways(state: RequestState, status: ItemStatus) -> None:
    plan = plan_ack(NoticeState.ACKNOWLEDGED, {"a": state, "b": A}, ack(AckStatus.PARTIAL, ("a", status)))
    assert plan.changes == ()
    assert plan.ignored and "a is already" in plan.ignored[0]


def test_a_repeated_acknowledgement_changes_nothing() -> None:
    first = plan_ack(NoticeState.DELIVERED, {"a": D}, ack(AckStatus.RECEIVED))
    assert first.changes_anything
    again = plan_ack(NoticeState.ACKNOWLEDGED, {"a": A}, ack(AckStatus.RECEIVED))
    assert not again.changes_anything


@pytest.mark.parametrize(
    "state", [NoticeState.RESOLVED, NoticeState.RETRYING, NoticeState.AWAITING_SUBMISSION, NoticeState.FAILED]
)
def test_a_notice_not_delivered_or_already_resolved_takes_no_acknowledgement(state: NoticeState) -> None:
    plan = plan_ack(state, {"a": D}, ack(AckStatus.REMOVED))
    assert not plan.changes_anything
    assert plan.ignored


def test_items_the_notice_does_not_contain_are_reported() -> None:
    plan = plan_ack(NoticeState.DELIVERED, {"a": D}, ack(AckStatus.PARTIAL, ("zzz", ItemStatus.REMOVED)))
    assert plan.unknown_items == ("zzz",)
    assert not plan.changes_anything


RANK = {D: 0, A: 1, R: 2, X: 2}


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.dictionaries(st.sampled_from(["a", "b", "c"]), st.sampled_from([D, A, R, X]), min_size=1),
    st.sampled_from(list(AckStatus)),
    st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(list(ItemStatus))), max_size=4),
)
def test_no_plan_ever_moves_a_request_backward(
    states: dict[str, RequestState], status: AckStatus, items: list[tuple[str, ItemStatus]]
) -> None:
    notice_state = (
        NoticeState.ACKNOWLEDGED if any(s is not D for s in states.values()) else NoticeState.DELIVERED
    )
    plan = plan_ack(notice_state, states, ack(status, *items))
    for change in plan.changes:
        assert RANK[change.after] > RANK[change.before]
        assert change.before == states[change.request_id]
    if plan.notice_after is NoticeState.RESOLVED:
        final = {**states, **{c.request_id: c.after for c in plan.changes}}
        assert all(s in (R, X) for s in final.values())


def test_parse_ack_reads_the_spec_example_and_keeps_the_platforms_time_beside_ours() -> None:
    body = (
        b'{"notice_id": "TD-telegram-20240903-000012", "status": "removed",'
        b' "items": [{"request_id": "kcsc-2024-000148", "status": "removed"}],'
        b' "ticket": "TG-99812", "at": "2024-09-04T07:12:00Z"}'
    )
    parsed = parse_ack(body, source="amqp:takedown.acks", received_at=AT)
    assert parsed.status is AckStatus.REMOVED
    assert parsed.items == (AckItem(request_id="kcsc-2024-000148", status=ItemStatus.REMOVED),)
    assert parsed.platform_at == datetime(2024, 9, 4, 7, 12, tzinfo=UTC)
    assert parsed.received_at == AT
    assert parsed.ticket == "TG-99812"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{", "body is not valid JSON"),
        (b"[]", "body must be a JSON object"),
        (b'{"notice_id": "x", "status": "removed"}', "notice_id: is not a notice id"),
        (b'{"notice_id": "TD-t-20240101-000001", "status": "gone"}', "status: Input should be"),
        (b'{"notice_id": "TD-t-20240101-000001", "status": "partial"}', "items: a partial acknowledgement"),
        (b'{"notice_id": "TD-t-20240101-000001", "status": "removed", "extra": 1}', "extra: unknown field"),
        (
            b'{"notice_id": "TD-t-20240101-000001", "status": "removed", "at": "2024-01-01T00:00:00"}',
            "at: needs",
        ),
        (
            b'{"notice_id": "TD-t-20240101-000001", "status": "removed", "ticket": "a\\nb"}',
            "ticket: contains",
        ),
    ],
)
def test_parse_ack_names_the_field_at_fault(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_ack(body, source="test", received_at=AT)
    assert caught.value.reason.startswith(reason)
