"""One contract for every :class:`~notifier.ports.IntakeQueue`: the in-memory fake, the local SQLite
queue and RabbitMQ. The intake service's unit tests run on the fake; this suite is what makes that
say something true about the real queues.

"The consumer goes away" means: for the fake, :meth:`MemoryQueue.crash`; for the local queue, the
instance is closed and its leases run out; for AMQP, the connection is closed and a new one opened.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from notifier.intake.amqp import AmqpQueue
from notifier.intake.local import LocalQueue
from notifier.intake.memory import MemoryQueue
from notifier.ports import Delivery, IntakeQueue

LOCAL_LEASE_SECONDS = 0.5


@dataclass
class Harness:
    """How to open, and how to abandon, one kind of queue under test."""

    queue: str
    opener: Callable[[], IntakeQueue]
    # Longest a message can take to come back once its consumer has gone away.
    redelivery_after: float
    crash: Callable[[IntakeQueue], None] | None = None
    opened: list[IntakeQueue] = field(default_factory=list)

    async def open(self) -> IntakeQueue:
        queue = self.opener()
        self.opened.append(queue)
        await queue.connect()
        return queue

    async def abandon(self, consumer: IntakeQueue) -> IntakeQueue:
        """The consumer goes away without settling what it holds; returns the next consumer."""
        if self.crash is not None:
            self.crash(consumer)
            return consumer
        await consumer.close()
        return await self.open()

    async def close_all(self) -> None:
        for queue in self.opened:
            await queue.close()


@pytest.fixture(params=["memory", "local", pytest.param("amqp", marks=pytest.mark.rabbitmq)])
def harness_for(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    # A plain fixture: it asks for the RabbitMQ fixtures only when the AMQP case runs, so the other
    # cases run on a machine without RabbitMQ.
    kind: str = request.param
    if kind == "memory":
        memory = MemoryQueue()

        def crash(queue: IntakeQueue) -> None:
            assert isinstance(queue, MemoryQueue)
            queue.crash()

        return Harness(queue="takedown.requests", opener=lambda: memory, redelivery_after=0.1, crash=crash)
    if kind == "local":
        path = tmp_path / "notifier.db"
        return Harness(
            queue="takedown.requests",
            opener=lambda: LocalQueue(path, lease_seconds=LOCAL_LEASE_SECONDS, poll_interval=0.01),
            redelivery_after=LOCAL_LEASE_SECONDS + 1.0,
        )
    url: str = request.getfixturevalue("amqp_server")
    name: str = request.getfixturevalue("queue_name")
    cleanup: list[str] = request.getfixturevalue("amqp_cleanup")
    cleanup.append(name)
    return Harness(queue=name, opener=lambda: AmqpQueue(url, queues=[name]), redelivery_after=2.0)


@pytest.fixture
async def harness(harness_for: Harness) -> AsyncIterator[Harness]:
    try:
        yield harness_for
    finally:
        await harness_for.close_all()


async def receive_exactly(
    queue: IntakeQueue, name: str, count: int, *, within: float = 10.0
) -> list[Delivery]:
    """Receive until ``count`` deliveries are in hand (or ``within`` seconds pass), never more."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    got: list[Delivery] = []
    while len(got) < count and (remaining := deadline - loop.time()) > 0:
        got += await queue.receive(name, max_messages=count - len(got), wait=min(remaining, 1.0))
    return got


def bodies(deliveries: list[Delivery]) -> list[bytes]:
    return [d.body for d in deliveries]


def numbered(count: int, prefix: str = "m") -> list[bytes]:
    return [f'{{"n": "{prefix}{i:05d}"}}'.encode() for i in range(count)]


async def test_published_messages_are_received_in_publish_order(harness: Harness) -> None:
    queue = await harness.open()
    sent = numbered(20)
    await queue.publish(harness.queue, sent)

    got = await receive_exactly(queue, harness.queue, 20)

    assert bodies(got) == sent
    assert not any(d.redelivered for d in got)
    assert all(d.source.endswith(f":{harness.queue}") for d in got)
    await queue.ack(got)


async def test_receive_hands_over_at_most_max_messages(harness: Harness) -> None:
    queue = await harness.open()
    sent = numbered(5)
    await queue.publish(harness.queue, sent)

    first = await queue.receive(harness.queue, max_messages=2, wait=5.0)
    rest = await receive_exactly(queue, harness.queue, 3)

    assert 1 <= len(first) <= 2
    assert bodies(first + rest) == sent[: len(first) + len(rest)]
    await queue.ack(first + rest)


async def test_receive_on_an_empty_queue_returns_nothing_after_waiting(harness: Harness) -> None:
    queue = await harness.open()
    loop = asyncio.get_running_loop()

    started = loop.time()
    got = await queue.receive(harness.queue, max_messages=10, wait=0.3)
    elapsed = loop.time() - started

    assert got == []
    assert 0.25 <= elapsed < 3.0


async def test_acknowledged_messages_are_not_handed_over_again(harness: Harness) -> None:
    queue = await harness.open()
    await queue.publish(harness.queue, numbered(3))
    got = await receive_exactly(queue, harness.queue, 3)
    await queue.ack(got)

    queue = await harness.abandon(queue)

    assert await queue.receive(harness.queue, max_messages=10, wait=harness.redelivery_after) == []


async def test_unacknowledged_messages_come_back_redelivered_after_the_consumer_goes_away(
    harness: Harness,
) -> None:
    queue = await harness.open()
    sent = numbered(3)
    await queue.publish(harness.queue, sent)
    first = await receive_exactly(queue, harness.queue, 3)
    assert not any(d.redelivered for d in first)

    queue = await harness.abandon(queue)
    again = await receive_exactly(queue, harness.queue, 3, within=harness.redelivery_after + 5)

    assert sorted(bodies(again)) == sorted(sent)
    assert all(d.redelivered for d in again)
    await queue.ack(again)


async def test_released_messages_are_handed_over_again(harness: Harness) -> None:
    queue = await harness.open()
    sent = numbered(2)
    await queue.publish(harness.queue, sent)
    first = await receive_exactly(queue, harness.queue, 2)

    await queue.release(first)
    again = await receive_exactly(queue, harness.queue, 2)

    assert sorted(bodies(again)) == sorted(sent)
    assert all(d.redelivered for d in again)
    await queue.ack(again)


async def test_stop_consuming_stops_new_deliveries_but_ack_still_settles(harness: Harness) -> None:
    queue = await harness.open()
    sent = numbered(3)
    await queue.publish(harness.queue, sent)
    in_hand = await receive_exactly(queue, harness.queue, 2)
    assert bodies(in_hand) == sent[:2]

    await queue.stop_consuming()
    await queue.publish(harness.queue, [b'{"n": "late"}'])
    assert await queue.receive(harness.queue, max_messages=10, wait=0.3) == []
    await queue.ack(in_hand)

    queue = await harness.abandon(queue)
    rest = await receive_exactly(queue, harness.queue, 2, within=harness.redelivery_after + 5)
    assert sorted(bodies(rest)) == sorted([sent[2], b'{"n": "late"}'])
    await queue.ack(rest)
    assert await queue.receive(harness.queue, max_messages=10, wait=harness.redelivery_after) == []


async def test_five_thousand_published_messages_are_each_received_exactly_once(harness: Harness) -> None:
    queue = await harness.open()
    sent = numbered(5000)
    await queue.publish(harness.queue, sent)

    seen: Counter[bytes] = Counter()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while sum(seen.values()) < len(sent) and loop.time() < deadline:
        batch = await queue.receive(harness.queue, max_messages=1000, wait=1.0)
        seen.update(bodies(batch))
        await queue.ack(batch)

    assert set(seen) == set(sent)
    assert max(seen.values()) == 1
    assert await queue.receive(harness.queue, max_messages=10, wait=harness.redelivery_after) == []


async def test_settling_a_delivery_twice_is_harmless(harness: Harness) -> None:
    queue = await harness.open()
    sent = numbered(3)
    await queue.publish(harness.queue, sent)
    got = await receive_exactly(queue, harness.queue, 3)

    await queue.ack(got[:2])
    await queue.ack(got[:2])
    await queue.release(got[1:])  # the second was acknowledged already: only the third comes back

    again = await receive_exactly(queue, harness.queue, 1)
    assert bodies(again) == [sent[2]]
    await queue.ack(again)
    assert await queue.receive(harness.queue, max_messages=10, wait=0.5) == []


async def test_ping_answers_while_connected(harness: Harness) -> None:
    queue = await harness.open()
    await queue.ping()
