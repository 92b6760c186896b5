"""Acknowledgement parsing (SPEC §5.2) and the ack queue under arbitrary and mutated messages: an
acknowledgement parses and round-trips through its wire form, or is refused with a clean reason
naming the field; on the ack queue every message is applied or dead-lettered with that reason, and
none is left unsettled."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from notifier.clock import SimulatedClock
from notifier.domain.acks import parse_ack
from notifier.domain.errors import InvalidRequest
from notifier.domain.models import RequestState
from notifier.intake.memory import MemoryQueue
from notifier.metrics import Metrics
from notifier.runtime.ack_queue import AckQueueConsumer
from notifier.services.acks import AckService
from notifier.store import SqlStore
from tests.fuzz import targets
from tests.fuzz.budget import budget
from tests.fuzz.strategies import json_values, mutated

NOTICE = "TD-telegram-20240903-000012"
ACK_QUEUE = "takedown.acks"

request_ids = st.from_regex(r"[A-Za-z0-9._:-]{1,20}", fullmatch=True)
items = st.fixed_dictionaries(
    {"request_id": request_ids, "status": st.sampled_from(["received", "removed", "rejected"])}
)


@st.composite
def platform_times(draw: st.DrawFn) -> str:
    moment = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)))
    offset = timezone(timedelta(minutes=draw(st.integers(-14 * 60, 14 * 60))))
    return moment.replace(tzinfo=offset).isoformat()


valid_acks: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "notice_id": st.from_regex(r"TD-[a-z][a-z0-9_]{0,10}-[0-9]{8}-[0-9]{6,9}", fullmatch=True),
        "status": st.sampled_from(["received", "removed", "rejected", "clarification_requested"]),
    },
    optional={
        "items": st.lists(items, min_size=1, max_size=4),
        "ticket": st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=30),
        "at": platform_times(),
    },
)
states = st.lists(st.sampled_from(list(RequestState)), max_size=4).map(tuple)


@budget(300)
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes_are_parsed_or_refused_naming_the_field(raw: bytes) -> None:
    targets.check_ack(raw)


@budget(100)
@given(
    data=st.dictionaries(
        st.sampled_from([*targets.ACK_FIELDS, "Status", "\r\n", "x" * 300, "\x00"]), json_values, max_size=6
    )
)
def test_objects_with_the_real_field_names_and_any_values_are_parsed_or_refused(data: dict[str, Any]) -> None:
    targets.check_ack(json.dumps(data).encode())


@budget(100)
@given(
    ack=valid_acks,
    name=st.text(max_size=300).filter(lambda n: n not in targets.ACK_FIELDS),
    value=json_values,
)
def test_a_valid_acknowledgement_with_one_more_field_is_refused_naming_it_cleanly(
    ack: dict[str, Any], name: str, value: Any
) -> None:
    assert targets.check_ack(json.dumps({**ack, name: value}).encode()) is None


@budget(150)
@given(ack=valid_acks, request_states=states)
def test_a_valid_acknowledgement_parses_round_trips_and_plans_without_moving_back(
    ack: dict[str, Any], request_states: tuple[RequestState, ...]
) -> None:
    parsed = targets.check_ack(json.dumps(ack).encode(), request_states)
    assert parsed is not None
    assert parsed.notice_id == ack["notice_id"]


@budget(80)
@given(text=valid_acks.map(json.dumps).flatmap(mutated))
def test_a_valid_acknowledgement_mutated_anywhere_is_parsed_or_refused(text: bytes) -> None:
    targets.check_ack(text)


# -- regressions ----------------------------------------------------------------------------------


def test_an_unknown_field_name_with_control_characters_is_echoed_cleaned_and_cut() -> None:
    for name, shown in (("\r\n", "??"), ("x" * 3000, "x" * 60 + "…"), ("a\x00b", "a?b")):
        body = json.dumps({"notice_id": NOTICE, "status": "received", name: 1}).encode()
        try:
            parse_ack(body, source="test", received_at=datetime.now(UTC))
        except InvalidRequest as error:
            assert error.reason == f"{shown}: unknown field"
        else:
            raise AssertionError("an unknown field was accepted")


def test_an_items_field_at_fault_is_named_by_its_position() -> None:
    body = json.dumps(
        {"notice_id": NOTICE, "status": "partial", "items": [{"request_id": "r", "status": "x"}]}
    )
    try:
        parse_ack(body.encode(), source="test", received_at=datetime.now(UTC))
    except InvalidRequest as error:
        assert error.reason.startswith("items[0].status: ")
    else:
        raise AssertionError("a bad item status was accepted")


# -- the ack queue: applied or dead-lettered, never lost -----------------------------------------


@budget(25)
@given(
    bodies=st.lists(
        st.binary(max_size=100) | valid_acks.map(json.dumps).flatmap(mutated) | valid_acks.map(json.dumps),
        min_size=1,
        max_size=6,
    )
)
async def test_every_message_on_the_ack_queue_is_applied_or_dead_lettered_with_a_reason(
    store: SqlStore, bodies: list[bytes | str]
) -> None:
    queue, clock, metrics = MemoryQueue(), SimulatedClock(), Metrics()
    acks = AckService(
        store=store, clock=clock, metrics=metrics, fallbacks={}, deliver_within=timedelta(hours=6)
    )
    consumer = AckQueueConsumer(
        store=store, queue=queue, queue_name=ACK_QUEUE, acks=acks, clock=clock, metrics=metrics
    )
    raw = [body.encode() if isinstance(body, str) else body for body in bodies]
    before = (await store.status_counts()).dead_letters_total
    await queue.publish(ACK_QUEUE, raw)
    deliveries = await queue.receive(ACK_QUEUE, max_messages=len(raw), wait=0)

    await consumer.process_batch(deliveries)

    assert queue.pending(ACK_QUEUE) == 0
    # No notice exists in this store: every message is refused, or is about an unknown notice.
    dead = queue.dead_lettered
    assert [letter.body for letter in dead] == raw
    for letter in dead:
        targets.assert_clean_reason(letter.reason)
    assert (await store.status_counts()).dead_letters_total - before <= len(raw)
