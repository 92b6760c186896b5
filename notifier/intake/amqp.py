"""The AMQP intake queue: RabbitMQ quorum queues, for scale-out.

Every queue notifier uses is a durable quorum queue (replicated, and it counts deliveries) with a
``<queue>.dead`` twin. A message the broker gives up on after ``delivery_limit`` deliveries (a
request that keeps crashing its consumer) is dead-lettered by the broker into ``<queue>.dead``, never
dropped; a message notifier rejects (invalid) is republished there by :meth:`AmqpQueue.dead_letter`
with the reason in the ``x-notifier-reason`` header.

The connection is aio-pika's robust connection: after a network drop or a broker restart it
reconnects, redeclares the queues and restores the consumers by itself. Deliveries handed over
before the drop belong to a channel that no longer exists; acknowledging them is skipped (the broker
hands those messages over again and the store's idempotency absorbs the repeat), and deliveries
still buffered from the old channel are dropped for the same reason.

Acknowledgements are the hot path of intake (thousands per second): a batch whose delivery tags
follow on from everything already settled on its channel is acknowledged with one ``multiple`` ack
(:mod:`notifier.intake.amqp_deliveries` keeps that account).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote

import aio_pika
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection, DeliveryMode, HeadersType
from aio_pika.exceptions import CONNECTION_EXCEPTIONS, ChannelPreconditionFailed
from yarl import URL

from notifier.errors import ConfigError, QueueUnavailable
from notifier.intake.amqp_deliveries import AmqpHandle, Consumer, settle
from notifier.ports import Delivery

REASON_HEADER = "x-notifier-reason"
SOURCE_HEADER = "x-notifier-source"
MAX_REASON_CHARS = 1000

# Publishes in flight at once: enough to keep the broker's confirms streaming, few enough that a
# file of a million requests does not become a million pending tasks.
_PUBLISH_WINDOW = 5000


def dead_letter_queue(queue: str) -> str:
    """Where rejected and given-up messages of ``queue`` are kept."""
    return f"{queue}.dead"


class AmqpQueue:
    """RabbitMQ intake queues (see the module's docstring).

    ``queues`` are declared by :meth:`connect`; a queue used later is declared on first use.
    ``prefetch`` bounds the deliveries buffered per consumed queue; make it at least the intake
    batch size. The URL may carry aio-pika's connection options (``?reconnect_interval=1``,
    ``?heartbeat=30``).
    """

    def __init__(
        self,
        url: str,
        *,
        prefetch: int = 1000,
        delivery_limit: int = 20,
        queues: Sequence[str],
        connect_timeout: float = 10.0,
    ) -> None:
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        if delivery_limit < 1:
            raise ValueError("delivery_limit must be at least 1")
        self._url = url
        parsed = URL(url)
        default_port = 5671 if parsed.scheme == "amqps" else 5672
        self._address = f"{parsed.host or 'localhost'}:{parsed.port or default_port}"
        self._password = parsed.password or ""
        self._prefetch = prefetch
        self._delivery_limit = delivery_limit
        self._queues = tuple(queues)
        self._connect_timeout = connect_timeout
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractRobustChannel | None = None
        self._declared: set[str] = set()
        self._consumers: dict[str, Consumer] = {}
        self._consuming = True
        self._setup_lock = asyncio.Lock()

    # -- connection and declarations ------------------------------------------------------------

    async def connect(self) -> None:
        if self._connection is not None:
            return
        try:
            connection = await aio_pika.connect_robust(self._url, timeout=self._connect_timeout)
        except CONNECTION_EXCEPTIONS as exc:
            raise self._unavailable("connecting", exc) from None  # the cause may quote the URL
        self._connection = connection
        self._consuming = True
        try:
            # Confirms make publish durable; on_return_raises makes a message no queue took an error
            # instead of a silent loss.
            channel = connection.channel(publisher_confirms=True, on_return_raises=True)
            with self._broker_errors("opening the publish channel"):
                await channel.initialize(timeout=self._connect_timeout)
            self._publish_channel = channel
            for queue in self._queues:
                await self._declare(queue)
        except BaseException:
            self._connection = self._publish_channel = None
            await connection.close()
            raise

    def _unavailable(self, doing: str, exc: BaseException) -> QueueUnavailable:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self._password:
            for secret in {self._password, quote(self._password, safe="")}:
                reason = reason.replace(secret, "***")
        return QueueUnavailable(f"AMQP broker at {self._address} failed while {doing}: {reason}")

    @contextlib.contextmanager
    def _broker_errors(self, doing: str) -> Iterator[None]:
        """A lost or refused connection becomes :class:`QueueUnavailable`: worth retrying once the
        robust connection is back."""
        try:
            yield
        except CONNECTION_EXCEPTIONS as exc:
            raise self._unavailable(doing, exc) from None

    def _connected(self) -> AbstractRobustConnection:
        connection = self._connection
        if connection is None:
            raise QueueUnavailable(f"not connected to the AMQP broker at {self._address}")
        if connection.transport is None:
            # Between a drop and its reconnect, opening a channel raises RuntimeError ("Connection
            # was not opened"): that would end a consumer's loop instead of waiting the outage out.
            raise QueueUnavailable(f"the connection to the AMQP broker at {self._address} is being restored")
        return connection

    def _arguments(self, queue: str) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": self._delivery_limit,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dead_letter_queue(queue),
        }

    async def _declare(self, queue: str) -> None:
        """Declare ``queue`` and its ``.dead`` twin, once per connection.

        A queue that exists with other arguments makes the broker close the channel with
        PRECONDITION_FAILED; that is a deployment problem, reported as one. The declaring channel is
        short-lived so that such a failure cannot take the publish or consume channels with it.
        """
        if queue in self._declared:
            return
        channel = self._connected().channel(publisher_confirms=False)
        with self._broker_errors(f"declaring {queue!r}"):
            await channel.initialize(timeout=self._connect_timeout)
        try:
            for name, arguments in (
                (dead_letter_queue(queue), {"x-queue-type": "quorum"}),
                (queue, self._arguments(queue)),
            ):
                try:
                    await channel.declare_queue(name, durable=True, arguments=arguments, robust=False)
                except ChannelPreconditionFailed as exc:
                    wanted = ", ".join(f"{key}={value!r}" for key, value in arguments.items())
                    raise ConfigError(
                        f"AMQP queue {name!r} already exists on {self._address} with other arguments "
                        f"than notifier declares ({wanted}): delete the queue or align its "
                        f"arguments (broker said: {exc})"
                    ) from None
                except CONNECTION_EXCEPTIONS as exc:
                    raise self._unavailable(f"declaring {name!r}", exc) from None
        finally:
            with contextlib.suppress(*CONNECTION_EXCEPTIONS):
                await channel.close()
        self._declared.add(queue)

    # -- publishing ------------------------------------------------------------------------------

    def _publisher(self) -> AbstractRobustChannel:
        if self._publish_channel is None:
            raise QueueUnavailable(f"not connected to the AMQP broker at {self._address}")
        return self._publish_channel

    async def _publish_all(self, messages: Sequence[aio_pika.Message], routing_key: str) -> None:
        """Publish and wait for every confirm; raise if any was not confirmed."""
        exchange = self._publisher().default_exchange
        for start in range(0, len(messages), _PUBLISH_WINDOW):
            window = messages[start : start + _PUBLISH_WINDOW]
            results = await asyncio.gather(
                *(exchange.publish(message, routing_key=routing_key) for message in window),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, asyncio.CancelledError):
                    raise result
                if isinstance(result, BaseException):
                    raise self._unavailable(f"publishing to {routing_key!r}", result) from result

    async def publish(self, queue: str, bodies: Sequence[bytes]) -> None:
        if not bodies:
            return
        await self._declare(queue)
        messages = [
            aio_pika.Message(
                bytes(body), delivery_mode=DeliveryMode.PERSISTENT, content_type="application/json"
            )
            for body in bodies
        ]
        await self._publish_all(messages, queue)

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Republish the message, properties and all, to ``<queue>.dead`` with why it was rejected.

        The delivery itself is left to the caller to acknowledge, after the store has recorded the
        dead letter too.
        """
        handle = delivery.handle
        if not isinstance(handle, AmqpHandle):
            raise TypeError("dead_letter() takes deliveries made by this AmqpQueue")
        original = handle.message
        headers: HeadersType = dict(original.headers or {})
        headers[REASON_HEADER] = reason[:MAX_REASON_CHARS]
        headers[SOURCE_HEADER] = delivery.source
        # Not carried over: expiration (a dead letter must stay until someone looks at it) and
        # user_id (the broker refuses a user_id other than this connection's own).
        message = aio_pika.Message(
            delivery.body,
            headers=headers,
            content_type=original.content_type,
            content_encoding=original.content_encoding,
            delivery_mode=DeliveryMode.PERSISTENT,
            priority=original.priority,
            correlation_id=original.correlation_id,
            reply_to=original.reply_to,
            message_id=original.message_id,
            timestamp=original.timestamp,
            type=original.type,
            app_id=original.app_id,
        )
        await self._declare(handle.queue)
        await self._publish_all([message], dead_letter_queue(handle.queue))

    # -- consuming -------------------------------------------------------------------------------

    async def _consumer(self, queue: str) -> Consumer | None:
        """The consumer of ``queue``, started on first use; None once consuming has stopped."""
        consumer = self._consumers.get(queue)
        if consumer is not None:
            return consumer
        async with self._setup_lock:
            if not self._consuming:
                return None  # stop_consuming() ran meanwhile: start nothing it would not cancel
            consumer = self._consumers.get(queue)
            if consumer is not None:
                return consumer
            await self._declare(queue)
            channel = self._connected().channel(publisher_confirms=False)
            consumer = Consumer(queue_name=queue, channel=channel)
            try:
                with self._broker_errors(f"starting to consume {queue!r}"):
                    await channel.initialize(timeout=self._connect_timeout)
                    await channel.set_qos(prefetch_count=self._prefetch)
                    # Declared again on this channel (a no-op on the broker) so that the robust
                    # channel knows the queue and restores its consumer after a reconnect.
                    consumer.queue = await channel.declare_queue(
                        queue, durable=True, arguments=self._arguments(queue)
                    )
                    consumer.tag = await consumer.queue.consume(consumer.on_message)
            except BaseException:
                if channel.is_initialized:
                    with contextlib.suppress(*CONNECTION_EXCEPTIONS):
                        await channel.close()
                raise
            self._consumers[queue] = consumer
            return consumer

    async def receive(self, queue: str, *, max_messages: int, wait: float) -> list[Delivery]:
        if not self._consuming or max_messages <= 0:
            return []
        consumer = await self._consumer(queue)
        if consumer is None:
            return []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        taken = consumer.take(max_messages)
        while not taken:
            remaining = deadline - loop.time()
            if remaining <= 0 or not self._consuming:
                return []
            try:
                first = await asyncio.wait_for(consumer.buffer.get(), remaining)
            except TimeoutError:
                return []
            # The first delivery, then whatever is buffered behind it: no further waiting.
            taken = [first, *consumer.take(max_messages - 1)]
            taken = [h for h in taken if not h.acks.channel.is_closed]
        if not self._consuming:
            # stop_consuming() ran while we waited: these go back with the rest of the buffer.
            await settle(taken, requeue=True)
            return []
        source = f"amqp:{queue}"
        return [
            Delivery(body=h.message.body, source=source, redelivered=bool(h.message.redelivered), handle=h)
            for h in taken
        ]

    @staticmethod
    def _handles(deliveries: Sequence[Delivery]) -> list[AmqpHandle]:
        return [d.handle for d in deliveries if isinstance(d.handle, AmqpHandle)]

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        await settle(self._handles(deliveries), requeue=None)

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        await settle(self._handles(deliveries), requeue=True)

    async def stop_consuming(self) -> None:
        """Cancel the consumers (the robust connection will not restore them) and give back what was
        buffered but not handed over. Channels stay open so deliveries in hand can be settled."""
        self._consuming = False
        # One consumer (of the requests, or of the acknowledgements) may be starting right now in
        # another task: it is finished first and cancelled with the others; none starts after.
        async with self._setup_lock:
            consumers = list(self._consumers.values())
        for consumer in consumers:
            consumer.active = False
            if consumer.queue is not None and consumer.tag is not None:
                with contextlib.suppress(*CONNECTION_EXCEPTIONS):  # TimeoutError included
                    await consumer.queue.cancel(consumer.tag, timeout=self._connect_timeout)
            await settle(consumer.take(consumer.buffer.qsize()), requeue=True)

    # -- health and shutdown ---------------------------------------------------------------------

    async def ping(self) -> None:
        """Raise :class:`QueueUnavailable` unless the connection is up (not closed, not between a
        drop and its reconnect)."""
        connection = self._connection
        transport = connection.transport if connection is not None else None
        if connection is None or connection.is_closed or transport is None or transport.connection.is_closed:
            raise QueueUnavailable(f"no open connection to the AMQP broker at {self._address}")

    async def close(self) -> None:
        self._consuming = False
        connection, self._connection = self._connection, None
        self._publish_channel = None
        self._consumers.clear()
        self._declared.clear()
        if connection is not None:
            await connection.close()
