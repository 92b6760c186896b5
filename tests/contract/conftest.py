"""The store every contract test runs on: the in-memory fake, SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from notifier.ports import Store
from notifier.store import MemoryStore, create_store


@pytest.fixture(
    params=[
        pytest.param("memory"),
        pytest.param("sqlite"),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """Which implementation a test runs on (None: the in-memory fake)."""
    if request.param == "memory":
        return None
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def store(store_url: str | None) -> AsyncIterator[Store]:
    opened: Store = MemoryStore() if store_url is None else await create_store(store_url)
    try:
        yield opened
    finally:
        await opened.close()
