"""Fixtures of the fuzz tests: a real SQLite store in the test's own folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from notifier.store import SqlStore
from tests.stores import sqlite_store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    opened = await sqlite_store(tmp_path)
    try:
        yield opened
    finally:
        await opened.close()
