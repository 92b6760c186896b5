"""The ack queue (``queue.acks``): platforms' and partners' acknowledgements as §5.2 messages.

Same treatment as requests: a message is acknowledged to the queue only after what it said is
stored; an invalid one, or one about a notice or requests notifier does not know, becomes a dead
letter with the reason (and on AMQP is republished to ``<acks>.dead``), never lost.
"""

from __future__ import annotations

import asyncio

import structlog

from notifier.clock import Clock
from notifier.domain.acks import parse_ack
from notifier.domain.models import DeadLetter
from notifier.errors import InvalidRequest
from notifier.metrics import Metrics
from notifier.ports import Delivery, IntakeQueue, Store
from notifier.services.acks import AckOutcome, AckService

log = structlog.get_logger("notifier.acks")

RECEIVE_WAIT_SECONDS = 0.2
BATCH = 100


class AckQueueConsumer:
    def __init__(
        self,
        *,
        store: Store,
        queue: IntakeQueue,
        queue_name: str,
        acks: AckService,
        clock: Clock,
        metrics: Metrics,
    ) -> None:
        self._store = store
        self._queue = queue
        self._queue_name = queue_name
        self._acks = acks
        self._clock = clock
        self._metrics = metrics

    async def run(self, stop: asyncio.Event) -> None:
        log.info("ack_queue.started", queue=self._queue_name)
        try:
            while not stop.is_set():
                deliveries = await self._queue.receive(
                    self._queue_name, max_messages=BATCH, wait=RECEIVE_WAIT_SECONDS
                )
                for delivery in deliveries:
                    await self.process(delivery)
        finally:
            await self._queue.stop_consuming()

    async def process(self, delivery: Delivery) -> AckOutcome | None:
        """Apply one message, or dead-letter it; then settle it with the queue."""
        try:
            ack = parse_ack(delivery.body, source=delivery.source, received_at=self._clock.now())
        except InvalidRequest as error:
            await self._dead_letter(delivery, error.reason)
            return None
        try:
            result = await self._acks.acknowledge(ack)
        except asyncio.CancelledError:
            await asyncio.shield(self._queue.release([delivery]))
            raise
        if result.outcome in (AckOutcome.UNKNOWN_NOTICE, AckOutcome.UNKNOWN_ITEMS):
            await self._dead_letter(delivery, result.detail)
            return result.outcome
        await self._queue.ack([delivery])
        return result.outcome

    async def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        letter = DeadLetter(
            source=delivery.source,
            reason=reason,
            at=self._clock.now(),
            body=delivery.body,
            redelivered=delivery.redelivered,
        )
        await self._store.ingest([], [letter], now=letter.at)
        await self._queue.dead_letter(delivery, reason)
        await self._queue.ack([delivery])
        self._metrics.dead_letters.labels(source=delivery.source).inc()
        log.warning("ack.dead_lettered", source=delivery.source, reason=reason)
