"""The report's verification figures (SPEC §13) in SQL: per platform, requests verified removed,
false claims, re-appearances, checks that concluded nothing, and delivery → verified removal, of
the requests in the window but the withdrawn ones (left out of every figure but their own count).

On PostgreSQL two grouped statements compute them (the columns are
:mod:`notifier.store.report_statement`'s, which the report itself reads in the same pass as its
other figures), the waits ranked with ``percentile_disc`` (the nearest-rank rule); elsewhere the
requests are read and tallied by the domain
(:func:`notifier.domain.verification.verification_figures`), which stays the reference: the
contract tests hold the two equal. Reading one row a request into Python was most of
``notifier report``'s time and memory at a million requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.domain.verification import VerificationRow, verification_figures
from notifier.store.report_statement import (
    counted,
    for_report,
    inconclusive_checks,
    verification_counts,
    verification_of,
    verification_ranks,
)
from notifier.store.tables import requests


class VerificationReportSqlMixin:
    """:meth:`verification_rows` and :meth:`verification_figures` for
    :class:`notifier.store.sql.SqlStore`."""

    if TYPE_CHECKING:

        @property
        def dialect(self) -> str: ...

        def _read(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]: ...

    async def verification_figures(
        self, *, since: datetime | None, until: datetime | None, platforms: Sequence[str] | None
    ) -> dict[str, dict[str, Any]]:
        """Per platform with requests the report counts (:func:`counted`), its verification
        figures: grouped SQL on PostgreSQL, the domain's tally of :meth:`verification_rows`
        elsewhere."""
        if self.dialect != "postgresql":
            rows = await self.verification_rows(since=since, until=until, platforms=platforms)
            return verification_figures(rows)
        c, checks = requests.c, inconclusive_checks()
        counts = (
            select(c.platform, *verification_counts(checks))
            .select_from(requests.outerjoin(checks, checks.c.request_id == c.request_id))
            .where(counted(since, until))
            .group_by(c.platform)
        )
        ranking = select(c.platform, *verification_ranks()).where(counted(since, until)).group_by(c.platform)
        if platforms is not None:
            counts = counts.where(c.platform.in_(list(platforms)))
            ranking = ranking.where(c.platform.in_(list(platforms)))
        async with self._read("verification_figures") as conn:
            await for_report(conn)
            ranks = {row.platform: row for row in await conn.execute(ranking)}
            result = await conn.execute(counts)
            return {row.platform: verification_of(row, ranks.get(row.platform)) for row in result}

    async def verification_rows(
        self, *, since: datetime | None, until: datetime | None, platforms: Sequence[str] | None
    ) -> list[VerificationRow]:
        """The report's requests (:func:`notifier.store.report_statement.counted`) as verification
        counts them."""
        inconclusive = inconclusive_checks()
        c = requests.c
        stmt = (
            select(
                c.platform,
                c.delivered_at,
                c.verified_removed_at,
                c.false_claims,
                c.reappeared_at,
                func.coalesce(inconclusive.c.checks, 0).label("inconclusive"),
            )
            .select_from(requests.outerjoin(inconclusive, inconclusive.c.request_id == c.request_id))
            .where(counted(since, until))
        )
        if platforms is not None:
            stmt = stmt.where(c.platform.in_(list(platforms)))
        async with self._read("verification_rows") as conn:
            return [
                VerificationRow(
                    platform=row.platform,
                    delivered_at=row.delivered_at,
                    verified_removed_at=row.verified_removed_at,
                    false_claims=int(row.false_claims),
                    reappeared=row.reappeared_at is not None,
                    inconclusive=int(row.inconclusive),
                )
                for row in await conn.execute(stmt)
            ]
