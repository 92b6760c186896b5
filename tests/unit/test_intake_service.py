"""The intake use case on the in-memory store and queue: what is acknowledged, when, and why."""

from __future__ import annotations

import asyncio
import json

import pytest
from structlog.testing import capture_logs

from notifier.clock import SimulatedClock
from notifier.domain.models import IntakeOutcome, RequestState
from notifier.domain.validation import Vocabulary
from notifier.intake.memory import MemoryQueue
from notifier.intake.service import IntakeService
from notifier.metrics import Metrics
from notifier.ports import Store
from notifier.store import SqlStore
from tests.stores import Switchable
from tests.waiting import wait_for

QUEUE = "takedown.requests"
VOCABULARY = Vocabulary(platforms={"telegram"}, categories={"deepfake_sexual_abuse"})


def body(request_id: str, url: str = "https://t.me/c/1", **extra: object) -> bytes:
    return json.dumps(
        {
            "request_id": request_id,
            "platform": "telegram",
            "urls": [url],
            "category": "deepfake_sexual_abuse",
            **extra,
        }
    ).encode()


def make(store: Store, queue: MemoryQueue, clock: SimulatedClock | None = None) -> IntakeService:
    return IntakeService(
        store=store,
        queue=queue,
        queue_name=QUEUE,
        vocabulary=VOCABULARY,
        clock=clock or SimulatedClock(),
        metrics=Metrics(),
        batch_size=100,
    )


async def test_a_batch_is_stored_then_acknowledged_with_one_outcome_per_message(store: SqlStore) -> None:
    queue = MemoryQueue()
    clock = SimulatedClock()
    await queue.publish(
        QUEUE,
        [
            body("r-1"),
            body("r-1"),
            body("r-1", url="https://t.me/c/2"),
            b"{not json",
            body("r-2", priority="urgent"),
        ],
    )
    service = make(store, queue, clock)
    deliveries = await queue.receive(QUEUE, max_messages=10, wait=0)
    with capture_logs() as logs:
        outcomes = await service.process(deliveries)

    assert outcomes == [
        IntakeOutcome.ACCEPTED,
        IntakeOutcome.DUPLICATE,
        IntakeOutcome.CONFLICT,
        None,
        IntakeOutcome.ACCEPTED,
    ]
    assert queue.pending(QUEUE) == 0
    stored = await store.get_requests(["r-1", "r-2"])
    assert [s.state for s in stored] == [RequestState.PENDING, RequestState.PENDING]
    assert {s.ingested_at for s in stored} == {clock.now()}
    events = [entry["event"] for entry in logs]
    assert events.count("request.accepted") == 2
    assert events.count("request.duplicate") == 1
    assert events.count("request.conflict") == 1
    assert events.count("request.dead_lettered") == 1
    (letter,) = await store.dead_letters()
    assert letter.reason.startswith("body is not valid JSON")
    assert [d.reason for d in queue.dead_lettered] == [letter.reason]


async def test_nothing_is_acknowledged_while_the_store_is_unavailable(store: SqlStore) -> None:
    queue, switch = MemoryQueue(), Switchable(store)
    await queue.publish(QUEUE, [body("r-1"), body("r-2")])
    service = make(switch.as_store(), queue)
    switch.down = True
    deliveries = await queue.receive(QUEUE, max_messages=10, wait=0)
    task = asyncio.create_task(service.process(deliveries))

    async def retried_twice() -> bool:
        return bool(service._metrics.store_retries.labels(operation="ingest")._value.get() >= 2)

    await wait_for(retried_twice, within=10, what="two store retries")
    assert queue.pending(QUEUE) == 2
    assert not task.done()

    switch.down = False
    outcomes = await asyncio.wait_for(task, timeout=10)
    assert outcomes == [IntakeOutcome.ACCEPTED, IntakeOutcome.ACCEPTED]
    assert queue.pending(QUEUE) == 0


async def test_cancelling_before_the_store_commits_hands_the_messages_back(store: SqlStore) -> None:
    queue, switch = MemoryQueue(), Switchable(store)
    await queue.publish(QUEUE, [body("r-1")])
    service = make(switch.as_store(), queue)
    switch.down = True
    deliveries = await queue.receive(QUEUE, max_messages=10, wait=0)
    task = asyncio.create_task(service.process(deliveries))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    switch.down = False
    again = await queue.receive(QUEUE, max_messages=10, wait=1)
    assert [d.body for d in again] == [body("r-1")]
    assert again[0].redelivered
    assert await store.get_requests(["r-1"]) == []


async def test_a_message_handed_over_twice_is_stored_once(store: SqlStore) -> None:
    queue = MemoryQueue()
    await queue.publish(QUEUE, [body("r-1"), b"\xff garbage"])
    service = make(store, queue)
    first = await queue.receive(QUEUE, max_messages=10, wait=0)
    await store.ingest([], [], now=SimulatedClock().now())  # the store is up
    queue.crash()  # the consumer died before acknowledging
    second = await queue.receive(QUEUE, max_messages=10, wait=0)
    assert len(first) == len(second) == 2
    assert await service.process(second) == [IntakeOutcome.ACCEPTED, None]
    queue.crash()
    await queue.publish(QUEUE, [body("r-1"), b"\xff garbage"])
    third = await queue.receive(QUEUE, max_messages=10, wait=0)
    assert await service.process(third) == [IntakeOutcome.DUPLICATE, None]
    # The garbage arrived twice as two publications (not a redelivery): two dead letters.
    assert len(await store.dead_letters()) == 2


async def test_run_stops_on_the_stop_event_and_stops_consuming(store: SqlStore) -> None:
    queue = MemoryQueue()
    service = make(store, queue)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    await queue.publish(QUEUE, [body("r-1")])

    async def stored() -> bool:
        return bool(await store.get_requests(["r-1"]))

    await wait_for(stored, within=10, what="r-1 stored")
    stop.set()
    await asyncio.wait_for(task, timeout=10)
    await queue.publish(QUEUE, [body("r-2")])
    assert await queue.receive(QUEUE, max_messages=10, wait=0) == []


async def test_http_accept_raises_the_reason_instead_of_dead_lettering(store: SqlStore) -> None:
    from notifier.errors import InvalidRequest

    queue = MemoryQueue()
    service = make(store, queue)
    assert await service.accept(body("r-1"), source="http") == ("r-1", IntakeOutcome.ACCEPTED)
    assert await service.accept(body("r-1"), source="http") == ("r-1", IntakeOutcome.DUPLICATE)
    assert await service.accept(body("r-1", url="https://t.me/c/9"), source="http") == (
        "r-1",
        IntakeOutcome.CONFLICT,
    )
    with pytest.raises(InvalidRequest, match=r"urls\[0\]: scheme 'javascript' is not allowed"):
        await service.accept(body("r-2", url="javascript:alert(1)"), source="http")
    assert await store.dead_letters() == []


async def test_urgent_requests_wake_the_urgent_path_and_normal_ones_do_not(store: SqlStore) -> None:
    vocabulary = Vocabulary(
        platforms={"telegram"},
        categories={"deepfake_sexual_abuse"},
        deadlines={"tco", "standard"},
    )
    queue = MemoryQueue()
    service = IntakeService(
        store=store,
        queue=queue,
        queue_name=QUEUE,
        vocabulary=vocabulary,
        clock=SimulatedClock(),
        metrics=Metrics(),
        urgent_deadlines={"tco"},
    )
    woken: list[str] = []
    service.on_urgent = lambda requests: woken.append("urgent " + ",".join(r.request_id for r in requests))
    service.on_accepted = lambda: woken.append("accepted")

    for bodies, expected in [
        ([body("n-1"), body("n-2", deadline="standard")], ["accepted"]),
        ([body("u-1", priority="urgent"), body("n-3")], ["urgent u-1", "accepted"]),
        ([body("p-1", deadline="tco")], ["urgent p-1", "accepted"]),
        ([body("u-1", priority="urgent")], []),  # a duplicate: nothing new to send
    ]:
        woken.clear()
        await queue.publish(QUEUE, bodies)
        await service.process(await queue.receive(QUEUE, max_messages=10, wait=0))
        assert woken == expected, bodies

    woken.clear()
    await service.accept(body("h-1", priority="urgent"), source="http")
    assert woken == ["urgent h-1", "accepted"]
