"""The store's side of the open-item gauges of ``/metrics`` (SPEC §10), in SQL.

It runs on every scrape, so each statement is answered from an index and costs what the open items
cost, never what the history does (a million removed requests add nothing):

* open requests per platform and state, with the oldest ``ingested_at``: a grouped count over the
  (platform, state) ranges of the batching index, which also holds ``ingested_at`` (index only);
* open notices per platform and state: the same over the notices' (platform, state) index;
* the oldest unacknowledged request: per platform, the first entry of the partial index of
  delivered requests (migration 0006), one probe each.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.domain.models import OPEN_NOTICE_STATES, OPEN_REQUEST_STATES, UNDELIVERED_REQUEST_STATES
from notifier.ports import OpenItems
from notifier.store.tables import UNACKNOWLEDGED, notices, requests

_UNDELIVERED = frozenset(state.value for state in UNDELIVERED_REQUEST_STATES)


def open_requests_query(platforms: Sequence[str]) -> Select[Any]:
    c = requests.c
    return (
        select(c.platform, c.state, func.count(), func.min(c.ingested_at))
        .where(c.platform.in_(platforms), c.state.in_([state.value for state in OPEN_REQUEST_STATES]))
        .group_by(c.platform, c.state)
    )


def open_notices_query(platforms: Sequence[str]) -> Select[Any]:
    c = notices.c
    return (
        select(c.platform, c.state, func.count())
        .where(c.platform.in_(platforms), c.state.in_([state.value for state in OPEN_NOTICE_STATES]))
        .group_by(c.platform, c.state)
    )


def oldest_unacknowledged_query(platforms: Sequence[str]) -> Select[Any]:
    """One row, one column per platform (in order): the earliest ``delivered_at`` of its delivered
    requests, or NULL.

    A scalar subquery per platform rather than one ``GROUP BY``: each reads the first entry of its
    range of the partial index and stops, where a grouped minimum would read every delivered request.
    ``ORDER BY … LIMIT 1`` rather than ``min()``, so that this does not rest on the planner's estimate.
    """
    c = requests.c
    return select(
        *(
            select(c.delivered_at)
            .where(c.platform == platform, UNACKNOWLEDGED)
            .order_by(c.delivered_at)
            .limit(1)
            .scalar_subquery()
            .label(f"oldest_{index}")
            for index, platform in enumerate(platforms)
        )
    )


class OpenItemsSqlMixin:
    """:meth:`open_items` for :class:`notifier.store.sql.SqlStore`."""

    if TYPE_CHECKING:

        def _read(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]: ...

    async def open_items(self, platforms: Sequence[str]) -> OpenItems:
        wanted = list(dict.fromkeys(platforms))
        if not wanted:
            return OpenItems(requests={}, notices={}, oldest_undelivered={}, oldest_unacknowledged={})
        async with self._read("open_items") as conn:
            request_rows = (await conn.execute(open_requests_query(wanted))).all()
            notice_rows = (await conn.execute(open_notices_query(wanted))).all()
            oldest_row = (await conn.execute(oldest_unacknowledged_query(wanted))).one()
        open_requests: dict[str, dict[str, int]] = {}
        undelivered: dict[str, datetime] = {}
        for platform, state, count, oldest in request_rows:
            open_requests.setdefault(platform, {})[state] = count
            if state in _UNDELIVERED:
                known = undelivered.get(platform)
                undelivered[platform] = oldest if known is None else min(known, oldest)
        open_notices: dict[str, dict[str, int]] = {}
        for platform, state, count in notice_rows:
            open_notices.setdefault(platform, {})[state] = count
        return OpenItems(
            requests=open_requests,
            notices=open_notices,
            oldest_undelivered=undelivered,
            oldest_unacknowledged={
                platform: delivered_at
                for platform, delivered_at in zip(wanted, oldest_row, strict=True)
                if delivered_at is not None
            },
        )
