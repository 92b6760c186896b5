"""The in-memory side of the compliance report: the same rows, figures and counts as
:mod:`notifier.store.report_sql` (``tests/contract/test_report_store_contract.py`` runs on both).
The figures are the domain's reference tally over the rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from notifier.domain.models import DeadLetter
from notifier.domain.report import Bounds, PlatformFigures, ReportRow, in_window, tally
from notifier.store.ingest import as_utc
from notifier.store.report_sql import dead_letter_platform

if TYPE_CHECKING:
    from notifier.store.memory_notices import RequestRow


class _DeadLetterEntry(Protocol):
    @property
    def letter(self) -> DeadLetter: ...


class MemoryReportMixin:
    """:meth:`report_rows`, :meth:`report_figures` and :meth:`dead_letter_counts` over the in-memory
    store's dicts."""

    if TYPE_CHECKING:
        _requests: dict[str, RequestRow]
        _dead_letters: Sequence[_DeadLetterEntry]

        def _check(self) -> None: ...

    async def report_rows(
        self, *, since: datetime | None, until: datetime | None, platforms: Sequence[str] | None
    ) -> list[ReportRow]:
        self._check()
        since = None if since is None else as_utc(since)
        until = None if until is None else as_utc(until)
        wanted = None if platforms is None else set(platforms)
        rows: list[ReportRow] = []
        for entry in self._requests.values():
            stored = entry.stored
            row = ReportRow(
                platform=stored.request.platform,
                state=stored.state,
                ingested_at=stored.ingested_at,
                delivered_at=stored.delivered_at,
                acknowledged_at=stored.acknowledged_at,
                resolved_at=stored.resolved_at,
                notice_id=stored.notice_id,
            )
            if (wanted is None or row.platform in wanted) and in_window(row, since, until):
                rows.append(row)
        return rows

    async def report_figures(
        self,
        *,
        bounds: Mapping[str, Bounds],
        now: datetime,
        since: datetime | None,
        until: datetime | None,
    ) -> dict[str, PlatformFigures]:
        rows = await self.report_rows(since=since, until=until, platforms=list(bounds))
        return tally(rows, bounds=bounds, now=now)

    async def dead_letter_counts(self, since: datetime | None, until: datetime | None) -> dict[str, int]:
        self._check()
        counts: dict[str, int] = {}
        for entry in self._dead_letters:
            letter = entry.letter
            if (since is None or letter.at >= as_utc(since)) and (until is None or letter.at < as_utc(until)):
                platform = dead_letter_platform(letter.body)
                counts[platform] = counts.get(platform, 0) + 1
        return counts
