"""The ack queue (``queue.acks``): platforms' and partners' acknowledgements as §5.2 messages.

Same treatment as requests: a message is acknowledged to the queue only after what it said is
stored; an invalid one, or one about a notice or requests notifier does not know, becomes a dead
letter with the reason (and on AMQP is republished to ``<acks>.dead``), never lost.

Store and broker outages are ridden out like intake's (:mod:`notifier.intake.consumer`): while the
store is unavailable a message waits in hand, unacknowledged, and is tried again; if the daemon
stops meanwhile, it and the rest of its batch are handed back. A message whose acknowledgement was
committed just before the store or the broker went away may come again; the repeat changes
nothing (it is recorded as unchanged), so nothing is applied twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

import structlog

from notifier.backoff import Stopped, while_store_unavailable
from notifier.clock import Clock
from notifier.domain.acks import parse_ack
from notifier.domain.evidence import EvidenceKind, EvidenceRecord
from notifier.domain.models import DeadLetter
from notifier.errors import InvalidRequest, QueueUnavailable
from notifier.intake.consumer import consume
from notifier.metrics import Metrics
from notifier.ports import Delivery, IntakeQueue, Store
from notifier.services.acks import AckOutcome, AckService

log = structlog.get_logger("notifier.acks")

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
            await consume(
                queue=self._queue,
                queue_name=self._queue_name,
                batch_size=BATCH,
                handle=self.process_batch,
                stop=stop,
            )
        finally:
            log.info("ack_queue.stopped", queue=self._queue_name)

    async def process_batch(
        self, deliveries: Sequence[Delivery], stop: asyncio.Event | None = None
    ) -> list[AckOutcome | None]:
        """Process the messages in order; if one cannot be finished (the daemon stops while the
        store is away, the task is cancelled, the broker is lost), it and the rest are handed back."""
        outcomes: list[AckOutcome | None] = []
        for index, delivery in enumerate(deliveries):
            try:
                outcomes.append(await self.process(delivery, stop))
            except (asyncio.CancelledError, Stopped, QueueUnavailable):
                await asyncio.shield(self._queue.release(deliveries[index:]))
                raise
        return outcomes

    async def process(self, delivery: Delivery, stop: asyncio.Event | None = None) -> AckOutcome | None:
        """Apply one message, or dead-letter it; then settle it with the queue.

        Waits while the store is unavailable (until ``stop`` is set: then :class:`Stopped`, and the
        caller hands the message back).
        """
        try:
            ack = parse_ack(delivery.body, source=delivery.source, received_at=self._clock.now())
        except InvalidRequest as error:
            await self._dead_letter(delivery, error.reason, stop)
            return None
        received = EvidenceRecord(
            kind=EvidenceKind.QUEUE_ACK,
            notice_id=ack.notice_id,
            payload=delivery.body,
            meta={"source": delivery.source},
        )
        ack = replace(ack, evidence=(received,))
        result = await while_store_unavailable(
            lambda: self._acks.acknowledge(ack),
            operation="acknowledge",
            stop=stop,
            metrics=self._metrics,
        )
        if result.outcome in (AckOutcome.UNKNOWN_NOTICE, AckOutcome.UNKNOWN_ITEMS):
            await self._dead_letter(delivery, result.detail, stop)
            return result.outcome
        await self._queue.ack([delivery])
        return result.outcome

    async def _dead_letter(self, delivery: Delivery, reason: str, stop: asyncio.Event | None) -> None:
        letter = DeadLetter(
            source=delivery.source,
            reason=reason,
            at=self._clock.now(),
            body=delivery.body,
            redelivered=delivery.redelivered,
        )
        await while_store_unavailable(
            lambda: self._store.ingest([], [letter], now=letter.at),
            operation="dead_letter",
            stop=stop,
            metrics=self._metrics,
        )
        await self._queue.dead_letter(delivery, reason)
        await self._queue.ack([delivery])
        self._metrics.dead_letters.labels(source=delivery.source).inc()
        log.warning("ack.dead_lettered", source=delivery.source, reason=reason)
