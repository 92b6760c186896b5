"""An in-memory :class:`~notifier.ports.IntakeQueue` for unit tests of the services.

It keeps the semantics the services rely on from the real queues: delivery is at least once, a
message handed over stays owned by its consumer until it is acknowledged or released, and a consumer
that goes away (:meth:`MemoryQueue.crash`) has its unacknowledged messages handed over again, marked
``redelivered``. Deliveries made before a crash are stale afterwards: acknowledging or releasing
them does nothing, as on AMQP after a reconnect. It passes the same contract suite as the real
adapters (``tests/contract/test_queue_contract.py``).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from notifier.errors import QueueUnavailable
from notifier.ports import Delivery


@dataclass(slots=True)
class _Message:
    id: int
    body: bytes
    delivery_count: int = 0


@dataclass(frozen=True, slots=True)
class _MemoryHandle:
    queue: str
    message_id: int
    generation: int  # the crash() generation the delivery belongs to


@dataclass(slots=True)
class _Queue:
    ready: list[_Message] = field(default_factory=list)  # ordered by id
    unacked: dict[int, _Message] = field(default_factory=dict)
    published: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLettered:
    """A message :meth:`MemoryQueue.dead_letter` kept, as AMQP keeps it in ``<queue>.dead``."""

    queue: str
    body: bytes
    reason: str
    source: str


class MemoryQueue:
    """A queue in this process's memory: nothing survives the process, everything else is real.

    ``available = False`` makes :meth:`connect`, :meth:`publish` and :meth:`ping` raise
    :class:`~notifier.errors.QueueUnavailable`, to test how the services ride out a broker outage.
    """

    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}
        self._ids = itertools.count(1)
        self._generation = 0
        self._consuming = True
        self.available = True
        self.dead_lettered: list[DeadLettered] = []

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _Queue()
        return queue

    def _check_available(self) -> None:
        if not self.available:
            raise QueueUnavailable("the in-memory queue is marked unavailable")

    async def connect(self) -> None:
        self._check_available()
        self._consuming = True

    async def publish(self, queue: str, bodies: Sequence[bytes]) -> None:
        self._check_available()
        target = self._queue(queue)
        target.ready.extend(_Message(id=next(self._ids), body=bytes(body)) for body in bodies)
        if bodies:
            target.published.set()

    async def receive(self, queue: str, *, max_messages: int, wait: float) -> list[Delivery]:
        source = self._queue(queue)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while self._consuming and not source.ready:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            source.published.clear()
            try:
                await asyncio.wait_for(source.published.wait(), remaining)
            except TimeoutError:
                return []
        if not self._consuming:
            return []
        taken, source.ready = source.ready[:max_messages], source.ready[max_messages:]
        deliveries = []
        for message in taken:
            message.delivery_count += 1
            source.unacked[message.id] = message
            deliveries.append(
                Delivery(
                    body=message.body,
                    source=f"memory:{queue}",
                    redelivered=message.delivery_count > 1,
                    handle=_MemoryHandle(queue, message.id, self._generation),
                )
            )
        return deliveries

    def _settle(self, deliveries: Sequence[Delivery]) -> list[tuple[_Queue, _Message]]:
        """Take the current (not stale, not yet settled) deliveries out of their unacked sets."""
        settled = []
        for delivery in deliveries:
            handle = delivery.handle
            if not isinstance(handle, _MemoryHandle) or handle.generation != self._generation:
                continue
            queue = self._queue(handle.queue)
            message = queue.unacked.pop(handle.message_id, None)
            if message is not None:
                settled.append((queue, message))
        return settled

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        self._settle(deliveries)

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        for queue, message in self._settle(deliveries):
            self._requeue(queue, message)

    @staticmethod
    def _requeue(queue: _Queue, message: _Message) -> None:
        bisect.insort(queue.ready, message, key=lambda m: m.id)
        queue.published.set()

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        handle = delivery.handle
        queue = handle.queue if isinstance(handle, _MemoryHandle) else delivery.source
        self.dead_lettered.append(
            DeadLettered(queue=queue, body=delivery.body, reason=reason, source=delivery.source)
        )

    async def stop_consuming(self) -> None:
        self._consuming = False
        for queue in self._queues.values():
            queue.published.set()  # wake receivers so they return [] now

    def crash(self) -> None:
        """The consumer went away: every unacknowledged message is handed over again.

        Consumption resumes (as a restarted daemon would) and deliveries made before the crash become
        stale.
        """
        self._generation += 1
        self._consuming = True
        for queue in self._queues.values():
            for message in queue.unacked.values():
                self._requeue(queue, message)
            queue.unacked.clear()

    def pending(self, queue: str) -> int:
        """Messages not yet acknowledged: ready or handed over."""
        state = self._queue(queue)
        return len(state.ready) + len(state.unacked)

    async def ping(self) -> None:
        self._check_available()

    async def close(self) -> None:
        await self.stop_consuming()
