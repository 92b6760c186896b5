"""The report's count of acknowledgements by who gave them (:mod:`notifier.domain.report_acks`)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Integer, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.domain.models import RequestState
from notifier.domain.report_acks import CONSOLE_SOURCE_PREFIX, MANUAL_SOURCE, AckSources
from notifier.store.report_statement import window
from notifier.store.tables import acks, notices, requests

APPLIED = "applied"


class ReportAcksSqlMixin:
    """:meth:`ack_sources` for :class:`notifier.store.sql.SqlStore`."""

    if TYPE_CHECKING:

        def _read(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]: ...

    async def ack_sources(
        self, *, since: datetime | None, until: datetime | None, platforms: Sequence[str]
    ) -> dict[str, AckSources]:
        """Per platform, the applied acknowledgements of the window's notices, the platform's own
        and those entered by hand (:func:`notifier.domain.report_acks.is_manual_source` in SQL)."""
        if not platforms:
            return {}
        in_window = (
            select(requests.c.notice_id)
            .where(
                window(since, until),
                requests.c.platform.in_(list(platforms)),
                requests.c.notice_id.is_not(None),
                requests.c.state != RequestState.WITHDRAWN.value,
            )
            .distinct()
        )
        manual = or_(
            acks.c.by.is_not(None),
            acks.c.source == MANUAL_SOURCE,
            acks.c.source.startswith(CONSOLE_SOURCE_PREFIX, autoescape=True),
        )
        stmt = (
            select(
                notices.c.platform,
                func.sum(case((manual, 1), else_=0), type_=Integer).label("manual"),
                func.count().label("total"),
            )
            .select_from(acks.join(notices, notices.c.notice_id == acks.c.notice_id))
            .where(and_(acks.c.outcome == APPLIED, acks.c.notice_id.in_(in_window)))
            .group_by(notices.c.platform)
        )
        async with self._read("ack_sources") as conn:
            rows = (await conn.execute(stmt)).all()
        return {
            row.platform: AckSources(
                platform=int(row.total) - int(row.manual or 0), manual=int(row.manual or 0)
            )
            for row in rows
        }
