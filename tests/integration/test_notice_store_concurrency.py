"""Several daemons on one store: batching, claiming and rate limiting stay exact under contention.

Each test opens two :class:`SqlStore` instances (two connection pools, as two daemon processes
have) on one PostgreSQL database or one SQLite file, and lets them race.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from notifier.domain.models import NoticeState, Priority, RequestState, TakedownRequest
from notifier.domain.notices import Notice, parse_notice_id
from notifier.ports import Incoming
from notifier.store import SqlStore, create_store
from notifier.store.tables import notices

NOW = datetime(2024, 9, 3, 1, 0, tzinfo=UTC)
PLATFORMS = ("telegram", "x")


@pytest.fixture(
    params=[
        pytest.param("sqlite"),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def stores(store_url: str) -> AsyncIterator[tuple[SqlStore, SqlStore]]:
    first = await create_store(store_url)
    second = await create_store(store_url)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def ingest_requests(store: SqlStore, count: int) -> list[str]:
    """``count`` pending requests spread over both platforms and over time, one in ten urgent."""
    items = [
        Incoming(
            request=TakedownRequest(
                request_id=f"r{i:05d}",
                platform=PLATFORMS[i % len(PLATFORMS)],
                urls=(f"https://example.org/{i}",),
                category="csam",
                priority=Priority.URGENT if i % 10 == 0 else Priority.NORMAL,
            ),
            source="test",
        )
        for i in range(count)
    ]
    for start in range(0, count, 500):
        await store.ingest(items[start : start + 500], [], now=NOW + timedelta(seconds=start))
    return [item.request.request_id for item in items]


async def form_until_empty(store: SqlStore, *, max_items: int) -> list[Notice]:
    formed: list[Notice] = []
    while True:
        made = [
            await store.form_notice(
                platform, max_items=max_items, channel="email", now=NOW, deliver_by=NOW + timedelta(hours=6)
            )
            for platform in PLATFORMS
        ]
        if not any(made):
            return formed
        formed += [notice for notice in made if notice is not None]


async def test_two_stores_forming_at_once_put_every_request_in_exactly_one_notice(
    stores: tuple[SqlStore, SqlStore],
) -> None:
    first, second = stores
    request_ids = await ingest_requests(first, 2000)

    a, b = await asyncio.gather(form_until_empty(first, max_items=50), form_until_empty(second, max_items=50))

    formed = a + b
    in_notices = Counter(rid for notice in formed for rid in notice.request_ids)
    assert sorted(in_notices) == request_ids
    assert set(in_notices.values()) == {1}
    assert max(len(n.request_ids) for n in formed) <= 50
    assert len({n.notice_id for n in formed}) == len(formed)
    for platform in PLATFORMS:
        sequences = sorted(
            parsed[2] for n in formed if (parsed := parse_notice_id(n.notice_id)) and parsed[0] == platform
        )
        assert sequences == list(range(1, len(sequences) + 1))
    # What the store holds agrees with what the two daemons were told.
    stored = {s.request.request_id: s for s in await first.get_requests(request_ids)}
    for notice in formed:
        assert all(stored[rid].notice_id == notice.notice_id for rid in notice.request_ids)
    assert {s.state for s in stored.values()} == {RequestState.BATCHED}
    assert (await first.pending_summary("telegram")).count == 0


async def claim_until_empty(store: SqlStore, owner: str) -> list[str]:
    claimed: list[str] = []
    while batch := await store.claim_due(owner=owner, now=NOW, lease=timedelta(minutes=10), limit=7):
        claimed += [notice.notice_id for notice in batch]
    return claimed


async def test_two_owners_claiming_at_once_never_get_the_same_notice(
    stores: tuple[SqlStore, SqlStore],
) -> None:
    first, second = stores
    await ingest_requests(first, 600)
    formed = await form_until_empty(first, max_items=5)

    a, b = await asyncio.gather(claim_until_empty(first, "w1"), claim_until_empty(second, "w2"))

    assert not set(a) & set(b)
    assert len(a) + len(b) == len(set(a) | set(b)) == len(formed)
    async with first.engine.connect() as conn:
        result = await conn.execute(select(notices.c.notice_id, notices.c.lease_owner))
        owners = {row.notice_id: row.lease_owner for row in result}
    assert {owners[i] for i in a} <= {"w1"}
    assert {owners[i] for i in b} <= {"w2"}
    counts = (await first.status_counts()).notices
    assert {state for per_platform in counts.values() for state in per_platform} == {
        NoticeState.SENDING.value
    }


async def test_a_rate_bucket_is_shared_by_two_stores(stores: tuple[SqlStore, SqlStore]) -> None:
    first, second = stores

    async def take(store: SqlStore, times: int) -> list[float]:
        return [await store.take_rate_slot("telegram", per_minute=30) for _ in range(times)]

    started = time.monotonic()
    a, b = await asyncio.gather(take(first, 40), take(second, 40))
    elapsed = time.monotonic() - started

    granted = (a + b).count(0.0)
    # A full bucket of 30, plus at most what refills (half a token a second) during the burst.
    assert 30 <= granted <= 30 + int(elapsed * 0.5) + 1
    assert all(0.0 < wait <= 2.0 for wait in a + b if wait != 0.0)
