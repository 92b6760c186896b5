"""The ack-queue consumer rides out a store outage: on RabbitMQ, with a PostgreSQL store that goes away.

The store goes away for real (its connections terminated, its database renamed: see
``tests/integration/outage.py``). The queue's delivery limit is set low, so a consumer that handed
its message back at every failed try would see the broker dead-letter it instead of applying it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from notifier.clock import SimulatedClock
from notifier.domain.models import NoticeState
from notifier.domain.notices import Notice
from notifier.intake.amqp import AmqpQueue, dead_letter_queue
from notifier.metrics import Metrics
from notifier.runtime.ack_queue import AckQueueConsumer
from notifier.services.acks import AckService
from notifier.store import SqlStore, create_store
from notifier.store.tables import acks
from tests.integration.outage import DatabaseOutage, delivered_notice
from tests.waiting import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.timeout(120)]

NOW = datetime(2024, 9, 3, 1, 0, tzinfo=UTC)
DELIVERY_LIMIT = 2


@dataclass
class World:
    store: SqlStore
    queue: AmqpQueue
    queue_name: str
    amqp_url: str
    consumer: AckQueueConsumer
    outage: DatabaseOutage
    clock: SimulatedClock

    async def delivered_notice(self) -> Notice:
        return await delivered_notice(self.store, now=NOW)

    async def state(self, notice_id: str) -> NoticeState:
        (notice,) = await self.store.get_notices([notice_id])
        return notice.state

    async def ack_outcomes(self, notice_id: str) -> list[str]:
        async with self.store.engine.connect() as conn:
            result = await conn.execute(select(acks.c.outcome).where(acks.c.notice_id == notice_id))
            return [row.outcome for row in result]

    async def depth(self, queue: str) -> int:
        """Messages waiting in ``queue`` (ready ones: call after the consumer's connection closed)."""
        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            channel = await connection.channel()
            declared = await channel.declare_queue(queue, passive=True)
            return int(declared.declaration_result.message_count or 0)


@pytest.fixture
async def world(
    postgres_server: str, postgres_url: str, amqp_server: str, queue_name: str, amqp_cleanup: list[str]
) -> AsyncIterator[World]:
    amqp_cleanup.append(queue_name)
    store = await create_store(postgres_url)
    queue = AmqpQueue(amqp_server, queues=[queue_name], delivery_limit=DELIVERY_LIMIT, prefetch=10)
    await queue.connect()
    clock = SimulatedClock(NOW + timedelta(hours=1))
    metrics = Metrics()
    service = AckService(
        store=store, clock=clock, metrics=metrics, fallbacks={}, deliver_within=timedelta(hours=6)
    )
    consumer = AckQueueConsumer(
        store=store, queue=queue, queue_name=queue_name, acks=service, clock=clock, metrics=metrics
    )
    outage = DatabaseOutage(postgres_server, postgres_url)
    try:
        yield World(store, queue, queue_name, amqp_server, consumer, outage, clock)
    finally:
        await outage.end()
        await queue.close()
        await store.close()


def unavailable(logs: Sequence[Mapping[str, Any]], operation: str) -> int:
    return sum(1 for e in logs if e["event"] == "store.unavailable" and e.get("operation") == operation)


async def test_an_acknowledgement_arriving_while_the_store_is_away_is_applied_once_when_it_is_back(
    world: World,
) -> None:
    notice = await world.delivered_notice()
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(world.consumer.run(stop))
        await world.outage.begin()
        body = json.dumps({"notice_id": notice.notice_id, "status": "removed"}).encode()
        await world.queue.publish(world.queue_name, [body])

        async def tried_past_the_delivery_limit() -> bool:
            return unavailable(logs, "acknowledge") > DELIVERY_LIMIT + 1

        await wait_for(tried_past_the_delivery_limit, within=60, what="the consumer retrying the store")
        assert not task.done(), "the consumer stopped while the store was away"

        await world.outage.end()

        async def resolved() -> bool:
            return await world.state(notice.notice_id) is NoticeState.RESOLVED

        await wait_for(resolved, within=60, what="the acknowledgement applied")
        stop.set()
        await asyncio.wait_for(task, timeout=30)  # returns: neither crashed nor stuck

    assert await world.ack_outcomes(notice.notice_id) == ["applied"]
    assert await world.store.dead_letters() == []
    assert [e["event"] for e in logs].count("store.available") == 1
    await world.queue.close()  # whatever was delivered and not acknowledged is ready again
    assert await world.depth(world.queue_name) == 0
    assert await world.depth(dead_letter_queue(world.queue_name)) == 0


async def test_stopping_while_the_store_is_away_hands_the_acknowledgement_back_unapplied(
    world: World,
) -> None:
    notice = await world.delivered_notice()
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(world.consumer.run(stop))
        await world.outage.begin()
        body = json.dumps({"notice_id": notice.notice_id, "status": "received"}).encode()
        await world.queue.publish(world.queue_name, [body])

        async def tried() -> bool:
            return unavailable(logs, "acknowledge") >= 1

        await wait_for(tried, within=60, what="the consumer finding the store away")
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    await world.outage.end()

    assert await world.ack_outcomes(notice.notice_id) == []
    assert await world.state(notice.notice_id) is NoticeState.DELIVERED
    await world.queue.close()
    assert await world.depth(world.queue_name) == 1, "the acknowledgement was not handed back"


async def test_an_invalid_message_arriving_while_the_store_is_away_is_dead_lettered_once_when_it_is_back(
    world: World,
) -> None:
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(world.consumer.run(stop))
        await world.outage.begin()
        await world.queue.publish(world.queue_name, [b'{"notice_id": "TD-telegram-20240903-000001"}'])

        async def tried() -> bool:
            return unavailable(logs, "dead_letter") >= 2

        await wait_for(tried, within=60, what="the consumer retrying the dead letter")
        await world.outage.end()

        async def dead_lettered() -> bool:
            return len(await world.store.dead_letters()) == 1

        await wait_for(dead_lettered, within=60, what="the dead letter stored")
        stop.set()
        await asyncio.wait_for(task, timeout=30)

    await world.queue.close()
    assert await world.depth(world.queue_name) == 0
    assert await world.depth(dead_letter_queue(world.queue_name)) == 1
    assert len(await world.store.dead_letters()) == 1
