"""The AMQP adapter against the real RabbitMQ: queue arguments, dead letters, misconfiguration,
network drops and unreachable brokers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import ChannelPreconditionFailed

from notifier.errors import ConfigError, QueueUnavailable
from notifier.intake.amqp import MAX_REASON_CHARS, REASON_HEADER, SOURCE_HEADER, AmqpQueue
from notifier.ports import Delivery
from tests.waiting import wait_for

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def queue(queue_name: str, amqp_cleanup: list[str]) -> str:
    amqp_cleanup.append(queue_name)
    return queue_name


@pytest.fixture
async def broker(amqp_server: str) -> AsyncIterator[aio_pika.abc.AbstractConnection]:
    """A plain connection of the test's own, to look at the broker behind notifier's back."""
    connection = await aio_pika.connect(amqp_server)
    try:
        yield connection
    finally:
        await connection.close()


async def get_one(
    broker: aio_pika.abc.AbstractConnection, queue: str, *, within: float = 10.0
) -> AbstractIncomingMessage:
    """The next message of ``queue`` (acknowledged), waiting for it to arrive."""
    channel = await broker.channel()
    try:
        target = await channel.get_queue(queue)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            message = await target.get(fail=False)
            if message is not None:
                await message.ack()
                return message
            if loop.time() > deadline:
                raise AssertionError(f"nothing arrived in {queue} within {within} s")
            await asyncio.sleep(0.05)
    finally:
        await channel.close()


async def receive_exactly(queue: AmqpQueue, name: str, count: int, *, within: float = 10.0) -> list[Delivery]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    got: list[Delivery] = []
    while len(got) < count and (remaining := deadline - loop.time()) > 0:
        got += await queue.receive(name, max_messages=count - len(got), wait=min(remaining, 1.0))
    return got


async def test_queue_is_a_quorum_queue_that_dead_letters_past_the_delivery_limit(
    amqp_server: str, queue: str, broker: aio_pika.abc.AbstractConnection
) -> None:
    adapter = AmqpQueue(amqp_server, queues=[queue], delivery_limit=2)
    await adapter.connect()
    try:
        await adapter.publish(queue, [b'{"n": 1}'])
        # Delivered and handed back delivery_limit + 1 times: the broker gives up on it.
        for _ in range(3):
            (delivery,) = await receive_exactly(adapter, queue, 1)
            await adapter.release([delivery])
        assert await adapter.receive(queue, max_messages=1, wait=0.5) == []
    finally:
        await adapter.close()

    dead = await get_one(broker, f"{queue}.dead")
    assert dead.body == b'{"n": 1}'

    # Declaring it classic is refused: the broker has it as a quorum queue.
    channel = await broker.channel()
    with pytest.raises(ChannelPreconditionFailed):
        await channel.declare_queue(queue, durable=True, arguments={"x-queue-type": "classic"})


async def test_dead_letter_keeps_the_body_and_the_reason_in_the_dead_queue(
    amqp_server: str, queue: str, broker: aio_pika.abc.AbstractConnection
) -> None:
    adapter = AmqpQueue(amqp_server, queues=[queue])
    await adapter.connect()
    try:
        await adapter.publish(queue, [b'{"not": "a request"}'])
        (delivery,) = await receive_exactly(adapter, queue, 1)
        await adapter.dead_letter(delivery, "urls: required " + "x" * 2000)
        await adapter.ack([delivery])
    finally:
        await adapter.close()

    dead = await get_one(broker, f"{queue}.dead")
    assert dead.body == b'{"not": "a request"}'
    reason = dead.headers[REASON_HEADER]
    assert isinstance(reason, str)
    assert reason.startswith("urls: required ")
    assert len(reason) == MAX_REASON_CHARS
    assert dead.headers[SOURCE_HEADER] == f"amqp:{queue}"
    assert dead.content_type == "application/json"
    assert dead.delivery_mode == aio_pika.DeliveryMode.PERSISTENT


async def test_queue_declared_classic_by_someone_else_is_a_config_error_naming_it(
    amqp_server: str, queue: str, broker: aio_pika.abc.AbstractConnection
) -> None:
    channel = await broker.channel()
    await channel.declare_queue(queue, durable=True)

    adapter = AmqpQueue(amqp_server, queues=[queue])
    with pytest.raises(ConfigError) as raised:
        await adapter.connect()

    message = str(raised.value)
    assert repr(queue) in message
    assert "delete the queue or align its arguments" in message
    await adapter.close()


async def test_acknowledgements_in_any_order_settle_each_delivery_once(amqp_server: str, queue: str) -> None:
    adapter = AmqpQueue(amqp_server, queues=[queue])
    await adapter.connect()
    try:
        sent = [f'{{"n": {i}}}'.encode() for i in range(6)]
        await adapter.publish(queue, sent)
        d = await receive_exactly(adapter, queue, 6)

        await adapter.ack([d[1], d[3]])  # gaps: acknowledged one by one
        await adapter.ack([d[0], d[2]])  # fills the gaps: one ack for everything up to d[3]
        await adapter.ack([d[3]])  # already settled: not sent again (the broker would close the channel)
        await adapter.release([d[5]])
        await adapter.ack([d[4]])

        (again,) = await receive_exactly(adapter, queue, 1)
        assert again.body == sent[5]
        assert again.redelivered
        await adapter.ack([again])
    finally:
        await adapter.close()

    after = AmqpQueue(amqp_server, queues=[queue])
    await after.connect()
    try:
        assert await after.receive(queue, max_messages=10, wait=1.0) == []
    finally:
        await after.close()


class DroppableProxy:
    """A TCP relay to the broker whose connections the test can cut, as a network failure would."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers.update((writer, up_writer))
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        await asyncio.gather(*pumps)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    def drop(self) -> None:
        """Cut every relayed connection at once, without a goodbye on either side."""
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.drop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.fixture
async def proxy() -> AsyncIterator[DroppableProxy]:
    relay = DroppableProxy("127.0.0.1", 5672)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.close()


def through(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit(":", 1)[0] if parts.port else parts.netloc
    return urlunsplit(parts._replace(netloc=f"{netloc}:{port}", query="reconnect_interval=0.2"))


async def test_consumption_resumes_by_itself_after_a_network_drop_and_loses_nothing(
    amqp_server: str, queue: str, proxy: DroppableProxy
) -> None:
    sent = [f'{{"n": {i}}}'.encode() for i in range(300)]
    publisher = AmqpQueue(amqp_server, queues=[queue])
    await publisher.connect()
    await publisher.publish(queue, sent)
    await publisher.close()

    consumer = AmqpQueue(through(amqp_server, proxy.port), queues=[queue], prefetch=20)
    await consumer.connect()
    try:
        first = await receive_exactly(consumer, queue, 20)
        await consumer.ack(first[:10])
        acked = {d.body for d in first[:10]}
        held_over_the_drop = first[10:]

        proxy.drop()

        # Nobody reconnects by hand: the robust connection does, and its consumer comes back.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while acked != set(sent) and loop.time() < deadline:
            batch = await consumer.receive(queue, max_messages=20, wait=1.0)
            await consumer.ack(batch)
            acked.update(d.body for d in batch)
            # Deliveries of the dead channel are skipped: they are never acknowledged on the new
            # channel, whose delivery tags start again from 1 and name other messages there.
            await consumer.ack(held_over_the_drop)
        assert acked == set(sent)
        assert proxy.connections >= 2
    finally:
        await consumer.close()

    check = AmqpQueue(amqp_server, queues=[queue])
    await check.connect()
    try:
        assert await check.receive(queue, max_messages=10, wait=1.0) == []
    finally:
        await check.close()


async def test_stale_deliveries_do_not_acknowledge_messages_of_the_new_channel(
    amqp_server: str, queue: str, proxy: DroppableProxy
) -> None:
    sent = [f'{{"n": {i}}}'.encode() for i in range(10)]
    consumer = AmqpQueue(through(amqp_server, proxy.port), queues=[queue], prefetch=5)
    await consumer.connect()
    try:
        await consumer.publish(queue, sent)
        stale = await receive_exactly(consumer, queue, 5)
        proxy.drop()
        fresh = await receive_exactly(consumer, queue, 5, within=30)
        assert len(fresh) == 5
        await consumer.ack(stale)  # must not settle tags 1..5 of the new channel, i.e. ``fresh``
    finally:
        await consumer.close()

    # Every message the new channel held unacknowledged is still on the broker.
    check = AmqpQueue(amqp_server, queues=[queue])
    await check.connect()
    try:
        remaining = await receive_exactly(check, queue, 10, within=5)
        assert len(remaining) == 10
        assert {d.body for d in fresh} <= {d.body for d in remaining}
        await check.ack(remaining)
    finally:
        await check.close()


async def test_unreachable_broker_is_queue_unavailable_naming_the_address_not_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    adapter = AmqpQueue("amqp://notifier:s3cret-pa55word@127.0.0.1:1/", queues=["takedown.requests"])
    with caplog.at_level(logging.DEBUG), pytest.raises(QueueUnavailable) as raised:
        await adapter.connect()

    assert "127.0.0.1:1" in str(raised.value)
    assert "s3cret-pa55word" not in str(raised.value)
    assert raised.value.__cause__ is None
    assert "s3cret-pa55word" not in caplog.text
    with pytest.raises(QueueUnavailable):
        await adapter.ping()
    await adapter.close()


async def test_ping_fails_once_closed(amqp_server: str, queue: str) -> None:
    adapter = AmqpQueue(amqp_server, queues=[queue])
    await adapter.connect()
    await adapter.ping()
    await adapter.close()
    with pytest.raises(QueueUnavailable):
        await adapter.ping()


async def test_stopping_while_another_queue_s_consumer_starts_stops_that_one_too(
    amqp_server: str, queue: str, amqp_cleanup: list[str], broker: aio_pika.abc.AbstractConnection
) -> None:
    """The daemon's intake and acknowledgement consumers share one adapter; SIGTERM right after a
    start stopped the one while the other's consumer was still being set up. That consumer was
    missed (it kept taking messages it would never hand over) or, when it was added while the stop
    went through the consumers, the stop crashed ("dictionary changed size during iteration")."""
    other = f"{queue}.other"
    amqp_cleanup.append(other)
    adapter = AmqpQueue(amqp_server, queues=[queue, other])
    await adapter.connect()
    try:
        assert await adapter.receive(queue, max_messages=1, wait=0.1) == []  # its consumer runs
        starting = asyncio.create_task(adapter.receive(other, max_messages=1, wait=2.0))
        await asyncio.sleep(0)  # one turn of the loop: the task is inside its consumer's set-up
        await adapter.stop_consuming()
        assert await starting == []
        await adapter.publish(other, [b'{"n": 1}'])
        # Nothing on the stopped adapter takes it: it waits in the queue for another consumer.
        message = await get_one(broker, other, within=5.0)
        assert message.body == b'{"n": 1}'
    finally:
        await adapter.close()


async def test_a_consumer_started_while_the_connection_is_being_restored_is_queue_unavailable(
    amqp_server: str, queue: str, amqp_cleanup: list[str], proxy: DroppableProxy
) -> None:
    """Opening a channel between a drop and its reconnect raised RuntimeError, which ended the
    consumer's loop (and, through the shared adapter, the daemon's intake) instead of being an
    outage to wait out."""
    other = f"{queue}.other"
    amqp_cleanup.append(other)
    adapter = AmqpQueue(through(amqp_server, proxy.port), queues=[queue, other])
    await adapter.connect()
    try:
        assert await adapter.receive(queue, max_messages=1, wait=0.1) == []
        await proxy.close()  # the broker goes away and stays away

        async def noticed() -> bool:
            try:
                await adapter.ping()
            except QueueUnavailable:
                return True
            return False

        await wait_for(noticed, within=10, what="the drop to be noticed")
        with pytest.raises(QueueUnavailable, match="being restored"):
            await adapter.receive(other, max_messages=1, wait=0.1)
    finally:
        await adapter.close()
