"""Intake: from a queue message (or an HTTP body) to a durable takedown request.

The rules of SPEC §5.1 live here: validate, store idempotently, keep what cannot be taken in as a
dead letter with its reason, and acknowledge a queue message only once the store has committed what
it said. Nothing is acknowledged that is not stored; a message handed over twice is absorbed by the
store's idempotency.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Sequence
from datetime import datetime

import structlog

from notifier.backoff import Stopped, while_store_unavailable
from notifier.clock import Clock
from notifier.domain.models import DeadLetter, IntakeOutcome, Priority, TakedownRequest
from notifier.domain.validation import Vocabulary, parse_request, request_id_hint
from notifier.errors import InvalidRequest, QueueUnavailable
from notifier.intake.consumer import consume
from notifier.metrics import Metrics
from notifier.ports import Delivery, Incoming, IntakeQueue, Store

log = structlog.get_logger("notifier.intake")

# Messages validated (or logged) between two turns given to the rest of the event loop.
TURN_EVERY = 50


class IntakeService:
    def __init__(
        self,
        *,
        store: Store,
        queue: IntakeQueue,
        queue_name: str,
        vocabulary: Vocabulary,
        clock: Clock,
        metrics: Metrics,
        batch_size: int = 500,
        urgent_deadlines: Collection[str] = (),
    ) -> None:
        self._store = store
        self._queue = queue
        self._queue_name = queue_name
        self._vocabulary = vocabulary
        self._clock = clock
        self._metrics = metrics
        self._batch_size = batch_size
        self._urgent_deadlines = frozenset(urgent_deadlines)
        # Called after a batch with accepted requests is committed (the dispatcher's kick), so the
        # batcher looks at them without waiting for its next poll.
        self.on_accepted: Callable[[], None] | None = None
        # Called with the urgent requests (``priority = "urgent"`` or of an urgent deadline
        # profile) once committed: the dispatcher's urgent path closes their notice and sends it
        # at once.
        self.on_urgent: Callable[[Sequence[TakedownRequest]], None] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then finish the batch in hand and stop consuming."""
        log.info("intake.started", queue=self._queue_name)
        try:
            await consume(
                queue=self._queue,
                queue_name=self._queue_name,
                batch_size=self._batch_size,
                handle=self.process,
                stop=stop,
            )
        finally:
            log.info("intake.stopped", queue=self._queue_name)

    async def process(
        self, deliveries: Sequence[Delivery], stop: asyncio.Event | None = None
    ) -> list[IntakeOutcome | None]:
        """Store one batch, dead-letter what is invalid, then acknowledge the batch.

        Returns the outcome per delivery (None for a dead letter). While the store is unavailable
        the batch waits in hand. If the daemon stops (``stop``) or the task is cancelled before the
        store has committed, the deliveries are handed back to the queue, never acknowledged; so
        they are too when the broker is lost before the batch is settled (the store's idempotency
        absorbs the repeat).
        """
        started = time.perf_counter()
        now = self._clock.now()
        try:
            incoming, positions, dead = await self._parse(deliveries, now)
            outcomes = await self._ingest(incoming, [letter for _, letter in dead], now=now, stop=stop)
        except (asyncio.CancelledError, Stopped):
            await asyncio.shield(self._queue.release(deliveries))
            raise

        try:
            for delivery, letter in dead:
                await self._queue.dead_letter(delivery, letter.reason)
        except QueueUnavailable:
            await asyncio.shield(self._queue.release(deliveries))
            raise
        await self._queue.ack(deliveries)

        accepted = [
            item.request for item, o in zip(incoming, outcomes, strict=True) if o is IntakeOutcome.ACCEPTED
        ]
        self._accepted(accepted)
        results: list[IntakeOutcome | None] = [None] * len(deliveries)
        for count, (position, item, outcome) in enumerate(zip(positions, incoming, outcomes, strict=True), 1):
            results[position] = outcome
            self._record(item, outcome)
            if count % TURN_EVERY == 0:
                await asyncio.sleep(0)  # let other work (an urgent request's) run between log lines
        for _, letter in dead:
            self._metrics.dead_letters.labels(source=letter.source).inc()
            log.warning(
                "request.dead_lettered",
                source=letter.source,
                reason=letter.reason,
                request_id=letter.request_id,
            )
        self._metrics.intake_batch_seconds.observe(time.perf_counter() - started)
        return results

    async def _parse(
        self, deliveries: Sequence[Delivery], now: datetime
    ) -> tuple[list[Incoming], list[int], list[tuple[Delivery, DeadLetter]]]:
        """The valid requests (with their positions in the batch) and the dead letters.

        A big batch is validated a slice at a time, passing the event loop's turn in between, so
        that other work of the process (an urgent request's) never waits for a whole batch."""
        incoming: list[Incoming] = []
        positions: list[int] = []
        dead: list[tuple[Delivery, DeadLetter]] = []
        for index, delivery in enumerate(deliveries):
            if index and index % TURN_EVERY == 0:
                await asyncio.sleep(0)
            try:
                request = parse_request(delivery.body, self._vocabulary)
            except InvalidRequest as error:
                letter = DeadLetter(
                    source=delivery.source,
                    reason=error.reason,
                    at=now,
                    body=delivery.body,
                    request_id=request_id_hint(delivery.body),
                    redelivered=delivery.redelivered,
                )
                dead.append((delivery, letter))
                continue
            incoming.append(Incoming(request=request, source=delivery.source))
            positions.append(index)
        return incoming, positions, dead

    async def accept(self, body: bytes, *, source: str) -> tuple[str, IntakeOutcome]:
        """Take in one request outside the queue (``POST /v1/requests``).

        Raises :class:`InvalidRequest` with the reason instead of dead-lettering, and
        :class:`~notifier.errors.StoreUnavailable` at once instead of waiting for the store: the
        caller is there to read the answer (and to send the request again).
        """
        request = parse_request(body, self._vocabulary)
        item = Incoming(request=request, source=source)
        (outcome,) = await self._store.ingest([item], [], now=self._clock.now())
        self._record(item, outcome)
        self._accepted([request] if outcome is IntakeOutcome.ACCEPTED else [])
        return request.request_id, outcome

    def is_urgent(self, request: TakedownRequest) -> bool:
        return request.priority is Priority.URGENT or request.deadline in self._urgent_deadlines

    def _accepted(self, requests: Sequence[TakedownRequest]) -> None:
        """Wake the dispatcher for newly stored requests: its urgent path first if any is urgent."""
        if not requests:
            return
        urgent = [r for r in requests if self.is_urgent(r)]
        if self.on_urgent is not None and urgent:
            self.on_urgent(urgent)
        if self.on_accepted is not None:
            self.on_accepted()

    async def _ingest(
        self,
        incoming: Sequence[Incoming],
        dead: Sequence[DeadLetter],
        *,
        now: datetime,
        stop: asyncio.Event | None = None,
    ) -> list[IntakeOutcome]:
        """Store the batch, retrying for as long as the store is unavailable.

        Messages stay unacknowledged on the queue meanwhile, so waiting out a store restart loses
        nothing; a stop (or a cancellation) ends the wait and the caller hands the messages back.
        """
        return await while_store_unavailable(
            lambda: self._store.ingest(incoming, dead, now=now),
            operation="ingest",
            stop=stop,
            metrics=self._metrics,
        )

    def _record(self, item: Incoming, outcome: IntakeOutcome) -> None:
        request = item.request
        self._metrics.requests.labels(platform=request.platform, outcome=outcome.value).inc()
        fields = {"request_id": request.request_id, "platform": request.platform, "source": item.source}
        if outcome is IntakeOutcome.ACCEPTED:
            log.info("request.accepted", priority=request.priority.value, urls=len(request.urls), **fields)
        elif outcome is IntakeOutcome.DUPLICATE:
            log.info("request.duplicate", **fields)
        else:
            log.warning("request.conflict", **fields)
