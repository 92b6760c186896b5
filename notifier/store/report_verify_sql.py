"""The report's verification figures (SPEC §13) in SQL: per platform, requests verified removed,
false claims, re-appearances, checks that concluded nothing, and delivery → verified removal.

On PostgreSQL one grouped statement computes them, the waits ranked with ``percentile_disc`` (the
nearest-rank rule, as :mod:`notifier.store.report_statement` does for the report's other durations);
elsewhere the requests are read and tallied by the domain
(:func:`notifier.domain.verification.verification_figures`), which stays the reference: the
contract tests hold the two equal. Reading one row a request into Python was most of
``notifier report``'s time and memory at a million requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.domain.report import spread
from notifier.domain.verification import CheckOutcome, VerificationRow, verification_figures
from notifier.store.report_statement import interval, ranked, window, without_jit
from notifier.store.tables import requests, url_checks


def _inconclusive() -> Any:
    """Per request, its checks that concluded nothing."""
    return (
        select(url_checks.c.request_id, func.count().label("checks"))
        .where(url_checks.c.outcome == CheckOutcome.INCONCLUSIVE.value)
        .group_by(url_checks.c.request_id)
        .subquery("inconclusive")
    )


def _figures(row: Row[Any]) -> dict[str, Any]:
    # Ranked exact, truncated to whole seconds after (the same figures: see ``spread``).
    waits = None
    if row.waits is not None and row.longest is not None:
        p50, p90 = row.waits
        waits = spread(p50, p90, row.longest)
    return {
        "verified_removed": int(row.verified_removed),
        "false_claims": int(row.false_claims),
        "reappeared": int(row.reappeared),
        "inconclusive": int(row.inconclusive),
        "time_to_verified_removal_s": waits,
    }


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
        """Per platform with requests in the report's window (:func:`window`), its verification
        figures: grouped SQL on PostgreSQL, the domain's tally of :meth:`verification_rows`
        elsewhere."""
        if self.dialect != "postgresql":
            rows = await self.verification_rows(since=since, until=until, platforms=platforms)
            return verification_figures(rows)
        c, inconclusive = requests.c, _inconclusive()
        # NULL where the tally counts no wait (not verified, or never delivered): ignored by
        # percentile_disc and max.
        wait = interval(c.verified_removed_at - c.delivered_at)
        stmt = (
            select(
                c.platform,
                func.count().filter(c.verified_removed_at.is_not(None)).label("verified_removed"),
                func.coalesce(func.sum(c.false_claims), 0).label("false_claims"),
                func.count().filter(c.reappeared_at.is_not(None)).label("reappeared"),
                func.coalesce(func.sum(inconclusive.c.checks), 0).label("inconclusive"),
                ranked(wait).label("waits"),
                func.max(wait).label("longest"),
            )
            .select_from(requests.outerjoin(inconclusive, inconclusive.c.request_id == c.request_id))
            .where(window(since, until))
            .group_by(c.platform)
        )
        if platforms is not None:
            stmt = stmt.where(c.platform.in_(list(platforms)))
        async with self._read("verification_figures") as conn:
            await without_jit(conn)
            return {row.platform: _figures(row) for row in await conn.execute(stmt)}

    async def verification_rows(
        self, *, since: datetime | None, until: datetime | None, platforms: Sequence[str] | None
    ) -> list[VerificationRow]:
        """The report's requests (the window of :func:`notifier.store.report_statement.window`) as
        verification counts them."""
        inconclusive = _inconclusive()
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
            .where(window(since, until))
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
