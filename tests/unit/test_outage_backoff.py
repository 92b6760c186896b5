"""The consumers' backoff and receive loop: how long they wait, what ends a wait, what they log.

The store and queue here are real (SQLite, the local SQLite queue); what fails is a step of the
test's own, the way a store or broker failure reaches these functions.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from notifier.backoff import Backoff, Stopped, while_store_unavailable
from notifier.errors import QueueUnavailable, StoreUnavailable
from notifier.intake.consumer import consume
from notifier.intake.local import LocalQueue
from notifier.metrics import Metrics
from notifier.ports import Delivery

QUEUE = "takedown.acks"


def test_waits_double_from_the_first_up_to_the_cap_with_at_most_a_tenth_of_jitter() -> None:
    backoff = Backoff(first=0.1, cap=1.0, rng=random.Random(4))
    waits = [backoff.failed() for _ in range(8)]
    bases = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
    assert all(base <= wait <= base * 1.1 for base, wait in zip(bases, waits, strict=True))
    backoff.succeeded()
    assert backoff.failed() <= 0.11


def test_a_long_outage_does_not_overflow_the_wait() -> None:
    backoff = Backoff(first=0.1, cap=5.0, failures=10_000)
    assert backoff.failed() <= 5.5


async def test_an_operation_is_tried_again_until_the_store_answers_and_each_failure_is_logged() -> None:
    metrics = Metrics()
    tries = 0

    async def store_back_at_the_third_try() -> str:
        nonlocal tries
        tries += 1
        if tries < 3:
            raise StoreUnavailable("PostgreSQL store is unavailable (ingest): ConnectionRefusedError")
        return "stored"

    with capture_logs() as logs:
        result = await while_store_unavailable(
            store_back_at_the_third_try,
            operation="ingest",
            stop=asyncio.Event(),
            metrics=metrics,
            backoff=Backoff(first=0.01),
        )
    assert result == "stored"
    assert [e["event"] for e in logs] == ["store.unavailable", "store.unavailable", "store.available"]
    assert {e["operation"] for e in logs} == {"ingest"}
    assert metrics.store_retries.labels(operation="ingest")._value.get() == 2


async def test_stopping_ends_the_wait_with_stopped_and_no_further_try() -> None:
    stop = asyncio.Event()
    tries = 0

    async def store_away() -> None:
        nonlocal tries
        tries += 1
        stop.set()
        raise StoreUnavailable("away")

    hour = Backoff(first=3600)
    waiting = while_store_unavailable(store_away, operation="acknowledge", stop=stop, backoff=hour)
    with pytest.raises(Stopped):
        await asyncio.wait_for(waiting, timeout=10)
    assert tries == 1


async def test_errors_other_than_an_unavailable_store_are_not_waited_out() -> None:
    async def bug() -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        await while_store_unavailable(bug, operation="acknowledge", stop=asyncio.Event())


async def test_the_receive_loop_waits_after_a_lost_broker_and_takes_the_handed_back_message_again(
    tmp_path: Path,
) -> None:
    queue = LocalQueue(tmp_path / "queue.db")
    await queue.connect()
    await queue.publish(QUEUE, [b"ack-1"])
    handled: list[bytes] = []
    stop = asyncio.Event()

    async def handle(deliveries: Sequence[Delivery], stop: asyncio.Event) -> None:
        if not handled:
            handled.append(b"lost")
            await queue.release(deliveries)  # what a handler does before it lets the loss through
            raise QueueUnavailable("AMQP broker at 127.0.0.1:5672 failed while publishing")
        handled.extend(d.body for d in deliveries)
        await queue.ack(deliveries)
        stop.set()

    try:
        with capture_logs() as logs:
            await asyncio.wait_for(
                consume(
                    queue=queue,
                    queue_name=QUEUE,
                    batch_size=10,
                    handle=handle,
                    stop=stop,
                    wait=0.05,
                    backoff=Backoff(first=0.01),
                ),
                timeout=30,
            )
        assert handled == [b"lost", b"ack-1"]
        assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["queue.unavailable"]
        assert await queue.pending(QUEUE) == 0
    finally:
        await queue.close()


async def test_the_receive_loop_returns_when_its_handler_was_stopped_and_stops_consuming(
    tmp_path: Path,
) -> None:
    queue = LocalQueue(tmp_path / "queue.db")
    await queue.connect()
    await queue.publish(QUEUE, [b"ack-1"])
    stop = asyncio.Event()

    async def handle(deliveries: Sequence[Delivery], stop: asyncio.Event) -> None:
        await queue.release(deliveries)
        raise Stopped("acknowledge")

    try:
        await asyncio.wait_for(
            consume(queue=queue, queue_name=QUEUE, batch_size=10, handle=handle, stop=stop, wait=0.05),
            timeout=30,
        )
        assert await queue.receive(QUEUE, max_messages=10, wait=0) == []  # no longer consuming
    finally:
        await queue.close()
    # Handed back, not held under its lease: another consumer takes it at once.
    other = LocalQueue(tmp_path / "queue.db")
    await other.connect()
    try:
        (again,) = await other.receive(QUEUE, max_messages=10, wait=0)
        assert (again.body, again.redelivered) == (b"ack-1", True)
    finally:
        await other.close()


@pytest.mark.timeout(30)
async def test_a_receive_loop_on_a_queue_another_consumer_stopped_gives_the_event_loop_back(
    tmp_path: Path,
) -> None:
    """The intake and acknowledgement consumers share one queue adapter, and one that ends stops
    consuming for both. The other loop then got ``[]`` at once from every receive and never gave
    the event loop back: the daemon hung, busy, not answering ``/readyz``, instead of stopping."""
    queue = LocalQueue(tmp_path / "queue.db")
    await queue.connect()
    await queue.stop_consuming()  # as the other consumer does on its way out
    stop = asyncio.Event()
    task = asyncio.create_task(
        consume(queue=queue, queue_name=QUEUE, batch_size=10, handle=_never, stop=stop, wait=0.05)
    )
    try:
        ticks = 0
        started = asyncio.get_running_loop().time()
        while asyncio.get_running_loop().time() - started < 0.3:
            await asyncio.sleep(0.01)  # would never come back while the loop spins
            ticks += 1
        assert ticks >= 5
        stop.set()
        await asyncio.wait_for(task, timeout=5)
    finally:
        task.cancel()
        await queue.close()


async def _never(deliveries: Sequence[Delivery], stop: asyncio.Event) -> None:
    raise AssertionError("a queue that stopped consuming handed something over")
