"""Request parsing (SPEC §5.1) and the intake path under arbitrary and mutated bodies: a body parses
and round-trips through its canonical form, or is refused with :class:`InvalidRequest` whose
reason names the field at fault; on the queue every message is stored or dead-lettered with that
reason, and none is left unsettled. ``tests/unit/test_validation_properties.py`` holds the
properties of valid requests; these explore the bytes around them."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from notifier.clock import SimulatedClock
from notifier.domain.errors import InvalidRequest
from notifier.domain.models import IntakeOutcome
from notifier.domain.validation import parse_request
from notifier.intake.memory import MemoryQueue
from notifier.intake.service import IntakeService
from notifier.metrics import Metrics
from notifier.store import SqlStore
from tests.fuzz import targets
from tests.fuzz.budget import budget
from tests.fuzz.strategies import json_values, mutated
from tests.unit.test_validation_properties import valid_requests

QUEUE = "takedown.requests"
hostile_strings = st.sampled_from(
    [
        "javascript:alert(1)",
        "https://user:pw@t.example/",
        "https://t.example/\r\nX: y",
        "https://t.example:99999/",
        "https://[::1/",
        "https://\u202et.example/",
        "http://",
        "https://t.example/" + "a" * 2100,
        "https://t.example:" + "p" * 1500 + "/",
        "\ud800",
        "",
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+14:00",
        "2024-02-30T00:00:00Z",
    ]
)


@budget(300)
@given(raw=st.binary(max_size=400))
def test_arbitrary_bytes_are_parsed_or_refused_naming_the_field(raw: bytes) -> None:
    targets.check_request(raw)


@budget(60)
@given(text=valid_requests.map(json.dumps).flatmap(mutated))
def test_a_valid_request_mutated_anywhere_is_parsed_or_refused(text: bytes) -> None:
    targets.check_request(text)


@budget(60)
@given(
    request=valid_requests,
    field=st.sampled_from(targets.REQUEST_FIELDS),
    value=json_values | hostile_strings | st.lists(hostile_strings, min_size=1, max_size=3),
)
def test_a_valid_request_with_one_field_made_hostile_is_parsed_or_refused(
    request: dict[str, Any], field: str, value: Any
) -> None:
    targets.check_request(json.dumps({**request, field: value}))


@budget(25)
@given(request=valid_requests)
def test_a_valid_request_round_trips_through_its_canonical_form(request: dict[str, Any]) -> None:
    assert targets.check_request(json.dumps(request).encode()) is not None


@budget(10)
@given(
    bodies=st.lists(
        st.binary(max_size=200)
        | valid_requests.map(json.dumps).flatmap(mutated)
        | valid_requests.map(json.dumps),
        min_size=1,
        max_size=8,
    )
)
async def test_every_message_on_the_intake_queue_is_stored_or_dead_lettered_with_a_reason(
    store: SqlStore, bodies: list[bytes | str]
) -> None:
    queue = MemoryQueue()
    intake = IntakeService(
        store=store,
        queue=queue,
        queue_name=QUEUE,
        vocabulary=targets.VOCABULARY,
        clock=SimulatedClock(),
        metrics=Metrics(),
        batch_size=100,
    )
    raw = [body.encode() if isinstance(body, str) else body for body in bodies]
    await queue.publish(QUEUE, raw)
    deliveries = await queue.receive(QUEUE, max_messages=len(raw), wait=0)

    outcomes = await intake.process(deliveries)

    assert queue.pending(QUEUE) == 0
    refused = [body for body, outcome in zip(raw, outcomes, strict=True) if outcome is None]
    assert [letter.body for letter in queue.dead_lettered] == refused
    for letter in queue.dead_lettered:
        targets.assert_clean_reason(letter.reason)
    stored = {
        s.request.request_id
        for s in await store.get_requests(
            [json.loads(body)["request_id"] for body, o in zip(raw, outcomes, strict=True) if o is not None]
        )
    }
    for body, outcome in zip(raw, outcomes, strict=True):
        if outcome is not None:
            assert outcome in tuple(IntakeOutcome)
            assert json.loads(body)["request_id"] in stored


# -- regressions ----------------------------------------------------------------------------------


def test_a_url_whose_port_is_long_text_is_refused_with_a_short_reason() -> None:
    url = "https://t.example:" + "p" * 1500 + "/"
    body = json.dumps({"request_id": "r-1", "platform": "telegram", "urls": [url], "category": "terrorism"})
    try:
        parse_request(body, targets.VOCABULARY)
    except InvalidRequest as error:
        assert error.reason.startswith("urls[0]: is not a valid URL (Port could not be cast")
        assert len(error.reason) < 200
    else:
        raise AssertionError("a URL with a port of letters was accepted")
