"""What an ingest means, written once for every Store implementation.

A batch gives the same outcomes as its items ingested one by one, in order: the first copy of a
new request id is ``accepted``; every other copy is compared with the version that counts (the
stored one, or the first copy of this batch) and is a ``duplicate`` when the content hashes match,
a ``conflict`` otherwise. A store supplies only the facts it holds: which ids it inserted and the
hashes of those it already had.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from notifier.domain.models import DeadLetter, IntakeOutcome
from notifier.ports import Incoming
from notifier.store.tables import DEAD_LETTER_BODY_LIMIT


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    """One request of a batch with its canonical JSON (the stored body) and content hash."""

    incoming: Incoming
    body: str
    content_hash: str

    @property
    def request_id(self) -> str:
        return self.incoming.request.request_id


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchPlan:
    """The items of one ingest, and where each request id first appears among them."""

    items: list[Item]
    first_index: dict[str, int] = field(default_factory=dict)

    @property
    def first_ids(self) -> list[str]:
        return list(self.first_index)

    @property
    def first_copies(self) -> list[Item]:
        return [self.items[index] for index in self.first_index.values()]

    def judge(
        self, *, inserted: set[str], stored_hashes: dict[str, str]
    ) -> tuple[list[IntakeOutcome], list[Item]]:
        """Outcomes in item order, and the conflicts to record (once per request id and content)."""
        outcomes: list[IntakeOutcome] = []
        conflicts: list[Item] = []
        recorded: set[tuple[str, str]] = set()
        for index, item in enumerate(self.items):
            first = self.first_index[item.request_id]
            if item.request_id in inserted:
                if index == first:
                    outcomes.append(IntakeOutcome.ACCEPTED)
                    continue
                reference = self.items[first].content_hash
            elif item.request_id in stored_hashes:
                reference = stored_hashes[item.request_id]
            else:
                raise RuntimeError(f"request {item.request_id} was neither inserted nor found in the store")
            if item.content_hash == reference:
                outcomes.append(IntakeOutcome.DUPLICATE)
                continue
            outcomes.append(IntakeOutcome.CONFLICT)
            if (item.request_id, item.content_hash) not in recorded:
                recorded.add((item.request_id, item.content_hash))
                conflicts.append(item)
        return outcomes, conflicts


def plan_batch(incoming: Sequence[Incoming]) -> BatchPlan:
    items = []
    for entry in incoming:
        body = entry.request.canonical_json()
        # TakedownRequest.content_hash() is this digest; taking it from the body serialises each
        # request once instead of twice on the intake path (a test pins the equality).
        items.append(Item(incoming=entry, body=body, content_hash=hashlib.sha256(body.encode()).hexdigest()))
    plan = BatchPlan(items=items)
    for index, item in enumerate(items):
        plan.first_index.setdefault(item.request_id, index)
    return plan


def dead_letter_row(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as stored: the body cut to ``DEAD_LETTER_BODY_LIMIT``, its full size and hash kept."""
    return {
        "source": letter.source,
        "reason": letter.reason,
        "request_id": letter.request_id,
        "body": letter.body[:DEAD_LETTER_BODY_LIMIT],
        "body_size": len(letter.body),
        "body_sha256": hashlib.sha256(letter.body).hexdigest(),
        "at": as_utc(letter.at),
    }


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime is refused, as the SQL store's column type refuses it."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime given to the store; pass an aware one (UTC)")
    return value.astimezone(UTC)
