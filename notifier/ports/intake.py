"""Intake's ports: the queues requests and acknowledgements arrive on, and the store's side of
intake and status."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from notifier.domain.models import Conflict, DeadLetter, IntakeOutcome, StoredRequest, TakedownRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class Incoming:
    """A valid request on its way into the store, with where it came from."""

    request: TakedownRequest
    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusCounts:
    """Counts per platform and state; only states with rows appear (callers fill the zeros)."""

    requests: dict[str, dict[str, int]]
    notices: dict[str, dict[str, int]]
    dead_letters_total: int


class IntakeStore(Protocol):
    """The store's side of intake and status. Every method is one transaction."""

    async def ingest(
        self, incoming: Sequence[Incoming], dead_letters: Sequence[DeadLetter], *, now: datetime
    ) -> list[IntakeOutcome]:
        """Store requests idempotently and record dead letters, atomically.

        Returns one outcome per item of ``incoming``, in order: ``accepted`` for a new request_id
        (stored in state ``pending`` with ``ingested_at = now``), ``duplicate`` when the stored
        request has the same content hash, ``conflict`` when it differs (the later version is
        recorded as a conflict, once per distinct content, and never replaces the first). Items
        repeated inside ``incoming`` are judged against the first of them. A dead letter whose
        ``redelivered`` flag is set is skipped when one with the same source and body is
        already recorded (the queue handed the same message over again).
        """
        ...

    async def get_requests(self, request_ids: Sequence[str]) -> list[StoredRequest]:
        """The stored requests among ``request_ids`` (unknown ids are left out)."""
        ...

    async def status_counts(self) -> StatusCounts: ...

    async def conflicts(self, *, limit: int = 100) -> list[Conflict]:
        """Recorded conflicts, newest first."""
        ...

    async def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, newest first."""
        ...

    async def ping(self) -> None:
        """Raise :class:`notifier.errors.StoreUnavailable` unless the store answers."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One message handed over by a queue, not yet acknowledged to it."""

    body: bytes
    source: str  # e.g. "amqp:takedown.requests", "sqlite:takedown.requests"
    redelivered: bool = False
    handle: Any = field(default=None, compare=False)  # the adapter's own reference


class IntakeQueue(Protocol):
    """A queue notifier consumes from (requests, acks) and ``notifier submit`` publishes to.

    Delivery is at least once: a message is handed over again until it is acknowledged, so the
    consumer acknowledges only after the store has committed what the message said.
    """

    async def connect(self) -> None:
        """Connect and declare the queues this adapter owns (idempotent)."""
        ...

    async def publish(self, queue: str, bodies: Sequence[bytes]) -> None:
        """Publish durably: when this returns, the broker has every body."""
        ...

    async def receive(self, queue: str, *, max_messages: int, wait: float) -> list[Delivery]:
        """Up to ``max_messages`` deliveries, waiting at most ``wait`` seconds for the first."""
        ...

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Settle deliveries; the queue forgets them. Deliveries whose connection has gone are
        skipped silently: the broker hands them over again and the store's idempotency absorbs
        the repeat."""
        ...

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        """Hand deliveries back unprocessed (shutdown), to be delivered again."""
        ...

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Keep a rejected message on the broker's side too (AMQP: ``<queue>.dead`` with the
        reason in a header). The store's dead letter is recorded separately."""
        ...

    async def stop_consuming(self) -> None:
        """Stop taking new messages; deliveries already handed over stay valid for ack/release."""
        ...

    async def ping(self) -> None:
        """Raise :class:`notifier.errors.QueueUnavailable` unless the broker answers."""
        ...

    async def close(self) -> None: ...
