"""The store's side of the compliance report (SPEC §8) in SQL: the figures per platform, the request
rows they are made of, and the dead letters per platform.

On PostgreSQL :meth:`ReportSqlMixin.report_figures` computes the figures in two grouped statements
(the percentiles apart, :mod:`notifier.store.report_statement`), so a million requests cost two
scans and a few sorts in the server, not a million rows fetched into Python (SPEC §11:
``notifier report`` over 1,000,000 requests in ≤ 5 s). It spells out
:mod:`notifier.domain.report`'s rules in SQL; the domain's tally stays the reference, and
``tests/contract/test_report_store_contract.py`` compares the two on the same data. SQLite has no
``percentile_disc``: there the rows are read and tallied by the domain.

:meth:`ReportSqlMixin.report_rows` selects only the columns the report needs (never ``body``) and
streams them from a server-side cursor in chunks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Row,
    func,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.domain.models import RequestState
from notifier.domain.report import (
    REMOVED_WITHIN,
    Bounds,
    PlatformFigures,
    ReportRow,
    seconds,
    tally,
)
from notifier.domain.verification import VerificationRow, verification_figures
from notifier.store.ingest import as_utc
from notifier.store.report_statement import (
    figures_statement,
    for_report,
    grouping,
    ranked_seconds,
    ranks_statement,
    unfiled_notices,
    verification_of,
    window,
)
from notifier.store.tables import dead_letters, notices, requests

_CHUNK = 10_000


def dead_letter_platform(body: bytes) -> str:
    """The platform a dead letter's body names, or ``""`` when it names none (not JSON, not an
    object, no string ``platform``). Dead letters have no platform column: they are the messages
    that could not be read as requests, so the body is the only place a platform can come from."""
    try:
        parsed: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    platform = parsed.get("platform") if isinstance(parsed, dict) else None
    return platform if isinstance(platform, str) else ""


def _figures(row: Row[Any], ranks: Row[Any] | None, now: datetime, *, verification: bool) -> PlatformFigures:
    return PlatformFigures(
        requests=row.requests,
        notices=row.notices,
        delivered=row.delivered,
        acknowledged=row.acknowledged,
        removed=row.removed,
        rejected=row.rejected,
        open=row.open,
        undelivered=row.undelivered,
        failed=row.failed,
        ack_breaches=row.ack_breaches,
        removal_breaches=row.removal_breaches,
        undelivered_breaches=row.undelivered_breaches,
        time_to_delivery_s=ranked_seconds(ranks and ranks.to_delivery, row.to_delivery_max),
        time_to_ack_s=ranked_seconds(ranks and ranks.to_ack, row.to_ack_max),
        time_to_removal_s=ranked_seconds(ranks and ranks.to_removal, row.to_removal_max),
        oldest_open_s=None if row.oldest_open is None else seconds(now - row.oldest_open),
        oldest_undelivered_s=None
        if row.oldest_undelivered is None
        else seconds(now - row.oldest_undelivered),
        removed_in_bound=row.removed_in_bound,
        paused_s=int(row.paused_s),
        removed_within=tuple(getattr(row, f"removed_within_{name}") for name, _ in REMOVED_WITHIN),
        verification=verification_of(row, ranks) if verification else None,
    )


class ReportSqlMixin:
    """:meth:`report_figures`, :meth:`report_rows` and :meth:`dead_letter_counts` for
    :class:`notifier.store.sql.SqlStore`."""

    if TYPE_CHECKING:

        @property
        def dialect(self) -> str: ...

        def _read(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]: ...

        async def verification_rows(
            self, *, since: datetime | None, until: datetime | None, platforms: Sequence[str] | None
        ) -> list[VerificationRow]: ...

    async def report_figures(
        self,
        *,
        bounds: Mapping[str, Bounds],
        now: datetime,
        since: datetime | None,
        until: datetime | None,
        profiles: Mapping[tuple[str, str], Bounds] | None = None,
        groups: Mapping[str, Bounds] | None = None,
        verification: bool = False,
    ) -> dict[str, PlatformFigures]:
        """The figures of the platforms of ``bounds`` with requests in the window (per profile of
        ``groups`` instead, with them), each request judged by its profile's bounds on its
        platform when ``profiles`` has them: grouped SQL on PostgreSQL, the domain's tally over
        :meth:`report_rows` elsewhere. With ``verification`` (per platform only), each carries its
        §13 figures too, read in the same statements on PostgreSQL."""
        if not bounds:
            return {}
        if verification and groups is not None:
            raise ValueError("the verification figures are per platform, not per deadline profile")
        if self.dialect != "postgresql":
            rows = await self.report_rows(since=since, until=until, platforms=list(bounds))
            figures = tally(rows, bounds=bounds, now=now, profiles=profiles, groups=groups)
            if not verification:
                return figures
            checked = await self.verification_rows(since=since, until=until, platforms=list(bounds))
            verified = verification_figures(checked)
            return {p: replace(f, verification=verified.get(p)) for p, f in figures.items()}
        statement = figures_statement(
            bounds,
            now=now,
            since=since,
            until=until,
            profiles=profiles,
            groups=groups,
            verification=verification,
        )
        ranking = ranks_statement(bounds, since=since, until=until, groups=groups, verification=verification)
        key, keep = grouping(groups)
        withdrawn = (
            select(key, func.count())
            .where(
                window(since, until),
                requests.c.platform.in_(list(bounds)),
                requests.c.state == RequestState.WITHDRAWN.value,
                *keep,
            )
            .group_by(key)
        )
        async with self._read("report_figures") as conn:
            await for_report(conn)
            ranks = {row.platform: row for row in await conn.execute(ranking)}
            result = await conn.execute(statement)
            figures = {
                row.platform: _figures(row, ranks.get(row.platform), now, verification=verification)
                for row in result
            }
            # Withdrawn requests are counted apart (SPEC §14), out of every other figure.
            for platform, count in await conn.execute(withdrawn):
                figures[platform] = replace(figures.get(platform, PlatformFigures()), withdrawn=count)
            return figures

    async def report_rows(
        self, *, since: datetime | None, until: datetime | None, platforms: Sequence[str] | None
    ) -> list[ReportRow]:
        c = requests.c
        unfiled = unfiled_notices()
        stmt = (
            select(
                c.platform,
                c.state,
                c.ingested_at,
                c.delivered_at,
                c.acknowledged_at,
                c.resolved_at,
                c.notice_id,
                unfiled.c.notice_id.is_not(None).label("undelivered_breach"),
                c.deadline,
                notices.c.clarification_requested_at,
                notices.c.clarified_at,
                notices.c.earlier_paused_s,
            )
            .select_from(
                requests.outerjoin(unfiled, unfiled.c.notice_id == c.notice_id).outerjoin(
                    notices, notices.c.notice_id == c.notice_id
                )
            )
            .where(window(since, until))
        )
        if platforms is not None:
            stmt = stmt.where(c.platform.in_(list(platforms)))
        rows: list[ReportRow] = []
        states = {state.value: state for state in RequestState}
        async with self._read("report_rows") as conn:
            result = await conn.stream(stmt.execution_options(yield_per=_CHUNK))
            async for chunk in result.partitions():
                rows.extend(
                    ReportRow(
                        platform=row.platform,
                        state=states[row.state],
                        ingested_at=row.ingested_at,
                        delivered_at=row.delivered_at,
                        acknowledged_at=row.acknowledged_at,
                        resolved_at=row.resolved_at,
                        notice_id=row.notice_id,
                        undelivered_breach=bool(row.undelivered_breach),
                        deadline=row.deadline,
                        clarification_requested_at=row.clarification_requested_at,
                        clarified_at=row.clarified_at,
                        earlier_paused_s=int(row.earlier_paused_s or 0),
                    )
                    for row in chunk
                )
        return rows

    async def dead_letter_counts(self, since: datetime | None, until: datetime | None) -> dict[str, int]:
        """Dead letters received in the window, per the platform their body names (``""``: none)."""
        stmt = select(dead_letters.c.body)
        if since is not None:
            stmt = stmt.where(dead_letters.c.at >= as_utc(since))
        if until is not None:
            stmt = stmt.where(dead_letters.c.at < as_utc(until))
        counts: dict[str, int] = {}
        async with self._read("dead_letter_counts") as conn:
            result = await conn.stream(stmt.execution_options(yield_per=100))
            async for (body,) in result:
                platform = dead_letter_platform(bytes(body))
                counts[platform] = counts.get(platform, 0) + 1
        return counts
