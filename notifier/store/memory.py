"""An in-memory :class:`notifier.ports.Store` and :class:`notifier.ports.NoticeStore` for unit
tests of the services.

It passes the same contract tests as :class:`notifier.store.sql.SqlStore`
(``tests/contract/test_store_contract.py``, ``tests/contract/test_notice_store_contract.py``), so
what a service test shows on it holds for the real store. Set ``unavailable = True`` to make every
call fail as an unreachable database does. Batching and dispatch live in
:mod:`notifier.store.memory_notices`, acknowledgements, receipts and bounces in
:mod:`notifier.store.memory_acks`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from notifier.domain.models import (
    Conflict,
    DeadLetter,
    IntakeOutcome,
    RequestState,
    StoredRequest,
)
from notifier.errors import StoreUnavailable
from notifier.ports import Incoming, StatusCounts
from notifier.store.ingest import as_utc, dead_letter_row, plan_batch
from notifier.store.memory_acks import MemoryAckMixin
from notifier.store.memory_notices import MemoryNoticeMixin, RequestRow
from notifier.store.memory_open_items import MemoryOpenItemsMixin
from notifier.store.memory_report import MemoryReportMixin
from notifier.store.memory_sla import MemorySlaMixin


@dataclass(frozen=True, slots=True, kw_only=True)
class _DeadLetterRow:
    seq: int
    letter: DeadLetter
    body_size: int
    body_sha256: str


class MemoryStore(MemoryNoticeMixin, MemoryAckMixin, MemoryReportMixin, MemorySlaMixin, MemoryOpenItemsMixin):
    """Everything in dicts and lists; each method is atomic because it never awaits midway.

    ``lease_clock`` stands in for the database's clock, which judges leases and rate buckets:
    seconds as a float, ``time.monotonic`` unless a test supplies its own.
    """

    def __init__(self, *, lease_clock: Callable[[], float] = time.monotonic) -> None:
        self.unavailable = False
        self._requests: dict[str, RequestRow] = {}
        self._conflicts: list[tuple[int, str, str, Conflict]] = []  # seq, request_id, hash, conflict
        self._dead_letters: list[_DeadLetterRow] = []
        self._seq = itertools.count()
        self._init_notices(lease_clock)
        self._init_acks()
        self._init_sla()

    def _check(self) -> None:
        if self.unavailable:
            raise StoreUnavailable("memory store is unavailable (set by the test)")

    async def ingest(
        self, incoming: Sequence[Incoming], dead_letters: Sequence[DeadLetter], *, now: datetime
    ) -> list[IntakeOutcome]:
        self._check()
        now = as_utc(now)
        plan = plan_batch(incoming)
        rows = [dead_letter_row(letter) for letter in dead_letters]  # validates before any change
        inserted: set[str] = set()
        stored_hashes: dict[str, str] = {}
        for item in plan.first_copies:
            existing = self._requests.get(item.request_id)
            if existing is not None:
                stored_hashes[item.request_id] = existing.content_hash
                continue
            self._requests[item.request_id] = RequestRow(
                stored=StoredRequest(
                    request=item.incoming.request, state=RequestState.PENDING, ingested_at=now
                ),
                content_hash=item.content_hash,
                source=item.incoming.source,
            )
            inserted.add(item.request_id)
        outcomes, conflicts = plan.judge(inserted=inserted, stored_hashes=stored_hashes)
        known = {(request_id, content_hash) for _, request_id, content_hash, _ in self._conflicts}
        for item in conflicts:
            if (item.request_id, item.content_hash) in known:
                continue
            conflict = Conflict(request_id=item.request_id, at=now, source=item.incoming.source)
            self._conflicts.append((next(self._seq), item.request_id, item.content_hash, conflict))
        self._add_dead_letters(dead_letters, rows)
        return outcomes

    def _add_dead_letters(self, letters: Sequence[DeadLetter], rows: list[dict[str, Any]]) -> None:
        seen = {(row.letter.source, row.body_sha256) for row in self._dead_letters}
        for letter, row in zip(letters, rows, strict=True):
            key: tuple[str, str] = (letter.source, row["body_sha256"])
            if letter.redelivered and key in seen:
                continue
            seen.add(key)
            stored = DeadLetter(
                source=letter.source,
                reason=letter.reason,
                at=as_utc(letter.at),
                body=row["body"],
                request_id=letter.request_id,
            )
            self._dead_letters.append(
                _DeadLetterRow(
                    seq=next(self._seq),
                    letter=stored,
                    body_size=len(letter.body),
                    body_sha256=key[1],
                )
            )

    async def get_requests(self, request_ids: Sequence[str]) -> list[StoredRequest]:
        self._check()
        wanted = dict.fromkeys(request_ids)
        return [self._requests[i].stored for i in wanted if i in self._requests]

    async def status_counts(self) -> StatusCounts:
        self._check()
        requests: dict[str, dict[str, int]] = {}
        for row in self._requests.values():
            per_platform = requests.setdefault(row.stored.request.platform, {})
            per_platform[row.stored.state.value] = per_platform.get(row.stored.state.value, 0) + 1
        return StatusCounts(
            requests=requests, notices=self._notice_counts(), dead_letters_total=len(self._dead_letters)
        )

    async def conflicts(self, *, limit: int = 100) -> list[Conflict]:
        self._check()
        ordered = sorted(self._conflicts, key=lambda entry: (entry[3].at, entry[0]), reverse=True)
        return [entry[3] for entry in ordered[:limit]]

    async def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        self._check()
        ordered = sorted(self._dead_letters, key=lambda row: (row.letter.at, row.seq), reverse=True)
        return [row.letter for row in ordered[:limit]]

    async def ping(self) -> None:
        self._check()

    async def close(self) -> None:
        pass
