"""The open-item queries run on every scrape of ``/metrics``: each must be answered from an index,
on SQLite and PostgreSQL, so a scrape costs what the open items cost and never a pass over the
whole history (SPEC §10, and §11's million requests in the store)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Select

from notifier.store import SqlStore, create_store
from notifier.store.open_items_sql import (
    oldest_unacknowledged_query,
    open_notices_query,
    open_requests_query,
)

PLATFORMS = ["telegram", "videohost", "forum"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SqlStore]:
    opened = await create_store(store_url)
    try:
        yield opened
    finally:
        await opened.close()


async def plan(store: SqlStore, stmt: Select[Any]) -> str:
    """The database's plan for ``stmt`` as the store sends it (bound parameters and all)."""
    async with store.engine.connect() as conn:
        compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        params = tuple(compiled.params[name] for name in compiled.positiontup or ())
        if store.dialect == "sqlite":
            explain = "EXPLAIN QUERY PLAN "
        else:
            # The tables are empty, so PostgreSQL would rightly read them whole; forbidding that
            # asks whether an index can answer the query at all.
            explain = "EXPLAIN "
            await conn.exec_driver_sql("SET enable_seqscan = off")
        rows = (await conn.exec_driver_sql(explain + str(compiled), params)).all()
    return "\n".join(str(row[-1]) for row in rows)


def assert_indexed(store: SqlStore, text: str, index: str) -> None:
    assert index in text, text
    if store.dialect == "sqlite":
        # SEARCH reads ranges of an index; SCAN would read a table or index from end to end.
        assert "SCAN requests" not in text and "SCAN notices" not in text, text
    else:
        assert "Seq Scan" not in text, text


async def test_open_requests_are_counted_from_ranges_of_the_batching_index(store: SqlStore) -> None:
    text = await plan(store, open_requests_query(PLATFORMS))
    assert_indexed(store, text, "ix_requests_platform_state_priority_ingested_at_request_id")


async def test_open_notices_are_counted_from_the_platform_state_index(store: SqlStore) -> None:
    text = await plan(store, open_notices_query(PLATFORMS))
    assert_indexed(store, text, "ix_notices_platform_state")


async def test_the_oldest_unacknowledged_request_is_one_probe_of_the_partial_index(store: SqlStore) -> None:
    text = await plan(store, oldest_unacknowledged_query(PLATFORMS))
    assert_indexed(store, text, "ix_requests_platform_delivered_at")
    # The index's order is the order asked for: the first entry answers, nothing is sorted.
    if store.dialect == "sqlite":
        assert "TEMP B-TREE" not in text, text
    else:
        assert text.count("Limit") == len(PLATFORMS) and "Sort" not in text, text
