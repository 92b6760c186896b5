"""The reads of the operations console's pages (:class:`notifier.ports.ConsoleStore`) in SQL.

Each statement reads index ranges and stops at a ``LIMIT``: the overview's figures are counts over
the (platform, state, delivered_at) index and the receipt and acknowledgement time indexes (migration
0030), the work queue reads one state's notices, a notice's history its own rows. A search for
an id or a ticket is an exact match on a key; one for part of a URL or case reference reads, on
PostgreSQL, the trigram index over ``request_search`` (migration 0055; without ``pg_trgm``, the
table itself), on SQLite the requests' bodies, stopping at its limit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.domain.models import NoticeState
from notifier.domain.notices import Notice
from notifier.ports import AckRecord, Cutoffs, PlatformFigures, SearchHit
from notifier.store.console_tables import request_search
from notifier.store.ingest import as_utc
from notifier.store.notice_queries import with_details
from notifier.store.tables import acks, notices, requests

_DELIVERED = NoticeState.DELIVERED.value
_ACKNOWLEDGED = NoticeState.ACKNOWLEDGED.value
_WAS_DELIVERED = (_DELIVERED, _ACKNOWLEDGED, NoticeState.RESOLVED.value)
_FIGURES = ("breached", "due_soon", "delivered_today", "receipts_today", "acks_today")
# A part of a URL shorter than this matches too much to be worth reading the bodies for (and
# trigrams need three characters).
MIN_PART = 3
# What SQLite searches (it has no trigram index, and no search table written: it reads the bodies).
_SEARCHED_SQLITE = "(json_extract(body, '$.urls') || ' ' || coalesce(json_extract(body, '$.case_ref'), ''))"


def _count(*where: Any, table: Any = notices) -> Any:
    return select(func.count()).select_from(table).where(*where).scalar_subquery()


def _figures(platform: str, cut: Cutoffs, day_start: datetime) -> list[Any]:
    c = notices.c
    mine = c.platform == platform
    delivered = and_(mine, c.state == _DELIVERED)
    acknowledged = and_(mine, c.state == _ACKNOWLEDGED)
    return [
        _count(delivered, c.delivered_at < as_utc(cut.delivered_breached))
        + _count(acknowledged, c.delivered_at < as_utc(cut.acknowledged_breached)),
        _count(
            delivered,
            c.delivered_at >= as_utc(cut.delivered_breached),
            c.delivered_at < as_utc(cut.delivered_due),
        )
        + _count(
            acknowledged,
            c.delivered_at >= as_utc(cut.acknowledged_breached),
            c.delivered_at < as_utc(cut.acknowledged_due),
        ),
        _count(mine, c.state.in_(_WAS_DELIVERED), c.delivered_at >= as_utc(day_start)),
        _count(mine, c.receipt_at >= as_utc(day_start)),
        _count(
            acks.c.received_at >= as_utc(day_start),
            notices.c.platform == platform,
            table=acks.join(notices, notices.c.notice_id == acks.c.notice_id),
        ),
    ]


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def index_fragment(term: str) -> str:
    """The part of ``term`` the trigram index is asked for: its most distinctive piece.

    The whole term would be right too, but a platform's host, a URL scheme or a case reference's
    prefix are in a large share of all requests, and the index reads every row number filed under
    each of their trigrams (a fifth of a second over a million requests). So the index is asked
    for the term without its scheme and host, and within that for its longest piece of letters and
    digits that holds a digit (where ids are); every row it finds is then checked for the whole
    term."""
    rest = term.split("://", 1)[-1]
    host, slash, path = rest.partition("/")
    if slash and "." in host and len(path) >= MIN_PART:
        rest = path
    pieces = [p for p in re.split(r"[^0-9A-Za-z]+", rest) if len(p) >= 4 and any(c.isdigit() for c in p)]
    if pieces:
        return max(reversed(pieces), key=len)
    return rest if len(rest) >= MIN_PART else term


def _part_query(dialect: str, term: str, limit: int) -> Any:
    r = requests.c
    query = select(r.request_id, r.platform, r.state, r.notice_id)
    if dialect != "postgresql":
        searched: Any = literal_column(_SEARCHED_SQLITE)
        return query.where(searched.ilike(_like(term), escape="\\")).limit(limit)
    fragment = index_fragment(term)
    # The index answers the ILIKE on the fragment; strpos (which no index answers) checks the
    # whole term on the rows found, so the index is never asked for the common trigrams. The
    # OFFSET 0 keeps the lookup a query of its own, planned without the LIMIT: with it, the
    # planner expects the few hundred rows the fragment matches to come early in a scan of the
    # whole (narrow) table, and reads a million rows instead of the index (0.7 s at that size).
    found = (
        select(request_search.c.request_id, request_search.c.text)
        .where(request_search.c.text.ilike(_like(fragment), escape="\\"))
        .offset(0)
        .subquery("found")
    )
    return (
        query.join(found, found.c.request_id == r.request_id)
        .where(func.strpos(func.lower(found.c.text), func.lower(term)) > 0)
        .limit(limit)
    )


def _request_hit(row: Any) -> SearchHit:
    return SearchHit(
        kind="request", id=row.request_id, platform=row.platform, state=row.state, notice_id=row.notice_id
    )


class ConsoleSqlMixin:
    """:class:`notifier.ports.ConsoleStore` for :class:`notifier.store.sql.SqlStore`."""

    if TYPE_CHECKING:

        def _read(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]: ...

    async def console_figures(
        self, cutoffs: Mapping[str, Cutoffs], *, day_start: datetime
    ) -> dict[str, PlatformFigures]:
        platforms = list(cutoffs)
        if not platforms:
            return {}
        columns = [col for p in platforms for col in _figures(p, cutoffs[p], day_start)]
        async with self._read("console_figures") as conn:
            row = (await conn.execute(select(*columns))).one()
        width = len(_FIGURES)
        return {
            platform: PlatformFigures(
                **dict(zip(_FIGURES, (int(v or 0) for v in row[i * width : (i + 1) * width]), strict=True))
            )
            for i, platform in enumerate(platforms)
        }

    async def breached_notices(self, platform: str, cut: Cutoffs, *, limit: int) -> list[Notice]:
        c = notices.c
        found: list[Any] = []
        async with self._read("breached_notices") as conn:
            for state, before in (
                (_DELIVERED, cut.delivered_breached),
                (_ACKNOWLEDGED, cut.acknowledged_breached),
            ):
                stmt = (
                    select(notices)
                    .where(c.platform == platform, c.state == state, c.delivered_at < as_utc(before))
                    .order_by(c.delivered_at, c.notice_id)
                    .limit(limit)
                )
                found += (await conn.execute(stmt)).all()
            found.sort(key=lambda row: (row.delivered_at, row.notice_id))
            return await with_details(conn, found[:limit])

    async def notices_in_state(self, state: str, *, limit: int) -> list[Notice]:
        stmt = (
            select(notices)
            .where(notices.c.state == state)
            .order_by(notices.c.created_at, notices.c.notice_id)
            .limit(limit)
        )
        async with self._read("notices_in_state") as conn:
            rows = (await conn.execute(stmt)).all()
            return await with_details(conn, rows)

    async def ack_history(self, notice_id: str, *, limit: int) -> list[AckRecord]:
        stmt = select(acks).where(acks.c.notice_id == notice_id).order_by(acks.c.id).limit(limit)
        async with self._read("ack_history") as conn:
            rows = (await conn.execute(stmt)).all()
        return [
            AckRecord(
                source=row.source,
                status=row.status,
                items=row.items,
                ticket=row.ticket,
                received_at=row.received_at,
                note=row.note,
                outcome=row.outcome,
                by=row.by,
                entered_at=row.entered_at,
                dkim=row.dkim,
            )
            for row in rows
        ]

    async def search(self, term: str, *, limit: int) -> list[SearchHit]:
        term = term.strip()
        if not term:
            return []
        r, n = requests.c, notices.c
        hits: dict[tuple[str, str], SearchHit] = {}
        async with self._read("search") as conn:
            found = await conn.execute(
                select(n.notice_id, n.platform, n.state)
                .where(or_(n.notice_id == term, n.ticket == term))
                .limit(limit)
            )
            for row in found:
                hits[("notice", row.notice_id)] = SearchHit(
                    kind="notice", id=row.notice_id, platform=row.platform, state=row.state, notice_id=None
                )
            found = await conn.execute(
                select(r.request_id, r.platform, r.state, r.notice_id).where(r.request_id == term)
            )
            for row in found:
                hits[("request", row.request_id)] = _request_hit(row)
            # An id or a ticket found is the answer; only a term that is none of them is looked
            # for in the requests' URLs and case references.
            if not hits and len(term) >= MIN_PART:
                found = await conn.execute(_part_query(conn.dialect.name, term, limit))
                for row in found:
                    hits[("request", row.request_id)] = _request_hit(row)
        return list(hits.values())[:limit]
