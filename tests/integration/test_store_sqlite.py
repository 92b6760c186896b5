"""The SQLite store shared by several writers, its run lock, and its migrations."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text

from notifier.domain.models import DeadLetter, IntakeOutcome, TakedownRequest
from notifier.errors import AlreadyRunning, PermanentError, StoreUnavailable
from notifier.ports import Incoming
from notifier.store import SqlStore, acquire_run_lock, create_store
from notifier.store.migrate import head_revision
from notifier.store.tables import dead_letters, metadata, requests

NOW = datetime(2024, 9, 3, 1, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


def batch(ids: range, *, source: str) -> list[Incoming]:
    return [
        Incoming(
            request=TakedownRequest(
                request_id=f"r{i:06d}", platform="telegram", urls=(f"https://t.me/c/{i}",), category="csam"
            ),
            source=source,
        )
        for i in ids
    ]


def url_of(path: Path) -> str:
    return f"sqlite:///{path}"


def _aiosqlite_workers() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if "_connection_worker_thread" in thread.name}


async def test_several_stores_opening_one_new_file_together_all_open(tmp_path: Path) -> None:
    # A new file must be switched to WAL, which needs the exclusive lock; SQLite refuses it at once
    # (no busy wait) while another connection holds any lock, so openers racing a migration used to
    # fail with "database is locked". Repeated on fresh files so the race is actually run.
    for attempt in range(8):
        url = url_of(tmp_path / f"store{attempt}.db")
        stores = await asyncio.gather(*(create_store(url) for _ in range(4)))
        try:
            for store in stores:
                assert (await store.status_counts()).requests == {}
        finally:
            for store in stores:
                await store.close()


async def test_two_stores_on_one_file_write_at_once_without_locking_errors(tmp_path: Path) -> None:
    url = url_of(tmp_path / "store.db")
    first, second = await asyncio.gather(create_store(url), create_store(url))
    try:

        async def writer(store: SqlStore, start: int, name: str) -> list[IntakeOutcome]:
            outcomes: list[IntakeOutcome] = []
            for offset in range(0, 3000, 300):
                ids = range(start + offset, start + offset + 300)
                letters = [DeadLetter(source=name, reason="bad", at=NOW, body=f"{name}{offset}".encode())]
                outcomes += await store.ingest(batch(ids, source=name), letters, now=NOW)
            return outcomes

        async def reader(store: SqlStore) -> None:
            # The CLI reading while the daemons write: reads never take the write lock.
            for _ in range(20):
                await store.status_counts()
                await asyncio.sleep(0)

        # Overlapping ranges: ids 1500..2999 are written by both.
        a, b, _ = await asyncio.gather(writer(first, 0, "a"), writer(second, 1500, "b"), reader(first))

        assert len(a) == len(b) == 3000
        assert (a + b).count(IntakeOutcome.ACCEPTED) == 4500
        assert (a + b).count(IntakeOutcome.DUPLICATE) == 1500
        counts = await second.status_counts()
        assert counts.requests == {"telegram": {"pending": 4500}}
        assert counts.dead_letters_total == 20
    finally:
        await first.close()
        await second.close()


async def test_a_process_and_this_one_write_the_same_file_at_once(tmp_path: Path) -> None:
    url = url_of(tmp_path / "store.db")
    store = await create_store(url)
    script = (
        "import asyncio, sys\n"
        "from datetime import UTC, datetime\n"
        "from notifier.store import create_store\n"
        "from tests.integration.test_store_sqlite import batch\n"
        "async def main():\n"
        "    store = await create_store(sys.argv[1])\n"
        "    try:\n"
        "        for start in range(0, 2000, 200):\n"
        "            items = batch(range(start, start + 200), source='child')\n"
        "            await store.ingest(items, [], now=datetime.now(UTC))\n"
        "    finally:\n"
        "        await store.close()\n"
        "asyncio.run(main())\n"
    )
    try:
        child = await asyncio.create_subprocess_exec(sys.executable, "-c", script, url, cwd=REPO)
        for start in range(1000, 3000, 200):
            await store.ingest(batch(range(start, start + 200), source="parent"), [], now=NOW)
        assert await child.wait() == 0
        assert (await store.status_counts()).requests == {"telegram": {"pending": 3000}}
    finally:
        await store.close()


async def test_reopening_a_migrated_file_keeps_the_data_and_migrates_nothing(tmp_path: Path) -> None:
    url = url_of(tmp_path / "store.db")
    store = await create_store(url)
    try:
        await store.ingest(batch(range(3), source="q"), [], now=NOW)
    finally:
        await store.close()

    reopened = await create_store(url)
    try:
        assert len(await reopened.get_requests(["r000000", "r000001", "r000002"])) == 3
        async with reopened.engine.connect() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
        assert versions == [head_revision()]
    finally:
        await reopened.close()


async def test_the_migrations_create_exactly_the_tables_the_code_describes(tmp_path: Path) -> None:
    store = await create_store(url_of(tmp_path / "store.db"))
    try:
        async with store.engine.connect() as conn:
            differences = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
        assert differences == []
    finally:
        await store.close()


async def test_a_schema_newer_than_this_notifier_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    url = url_of(tmp_path / "store.db")
    store = await create_store(url)
    try:
        async with store.engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        await store.close()

    with pytest.raises(PermanentError, match="revision 9999"):
        await create_store(url)


async def test_the_database_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    store = await create_store(url_of(tmp_path / "store.db"))
    try:
        async with store.engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 30000
            assert (await conn.execute(text("PRAGMA synchronous"))).scalar() == 2  # FULL
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
    finally:
        await store.close()


async def test_a_big_dead_letter_keeps_the_size_and_hash_of_the_whole_body(tmp_path: Path) -> None:
    body = os.urandom(3 * 1024 * 1024)
    store = await create_store(url_of(tmp_path / "store.db"))
    try:
        await store.ingest([], [DeadLetter(source="q", reason="body too large", at=NOW, body=body)], now=NOW)
        async with store.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(
                        func.length(dead_letters.c.body), dead_letters.c.body_size, dead_letters.c.body_sha256
                    )
                )
            ).one()
        assert tuple(row) == (1024 * 1024, len(body), hashlib.sha256(body).hexdigest())
    finally:
        await store.close()


async def test_a_file_that_cannot_be_opened_makes_the_store_unavailable(tmp_path: Path) -> None:
    (tmp_path / "not-a-directory").write_text("")
    path = tmp_path / "not-a-directory" / "store.db"

    before = _aiosqlite_workers()

    with pytest.raises(StoreUnavailable, match=f"SQLite store {path}"):
        await create_store(url_of(path))

    # aiosqlite hands the worker thread of a connection that failed to open its stop order without
    # waiting for it; the thread then reports to this test's event loop, which must still be open.
    for worker in _aiosqlite_workers() - before:
        await asyncio.to_thread(worker.join, 30)
        assert not worker.is_alive()


async def test_stored_bodies_are_the_canonical_json_of_the_request(tmp_path: Path) -> None:
    store = await create_store(url_of(tmp_path / "store.db"))
    try:
        [item] = batch(range(1), source="q")
        await store.ingest([item], [], now=NOW)
        async with store.engine.connect() as conn:
            body, content_hash = (await conn.execute(select(requests.c.body, requests.c.content_hash))).one()
        assert body == item.request.canonical_json()
        assert content_hash == item.request.content_hash()
    finally:
        await store.close()


# -- run lock ----------------------------------------------------------------------------------


def test_the_run_lock_refuses_a_second_holder_and_frees_on_close(tmp_path: Path) -> None:
    db = tmp_path / "notifier.db"
    lock = acquire_run_lock(db)

    with pytest.raises(AlreadyRunning) as refused:
        acquire_run_lock(db)
    assert str(db) in str(refused.value)
    assert f"process {os.getpid()}" in str(refused.value)

    lock.close()
    again = acquire_run_lock(db)
    again.close()


def test_the_run_lock_holds_for_the_real_file_whatever_path_reaches_it(tmp_path: Path) -> None:
    real = tmp_path / "data" / "notifier.db"
    real.parent.mkdir()
    real.touch()
    (tmp_path / "linked.db").symlink_to(real)
    (tmp_path / "folder").symlink_to(real.parent)
    lock = acquire_run_lock(real)
    try:
        for other in (tmp_path / "linked.db", tmp_path / "folder" / "notifier.db"):
            with pytest.raises(AlreadyRunning):
                acquire_run_lock(other)
    finally:
        lock.close()


def test_the_run_lock_is_freed_when_its_holder_is_killed(tmp_path: Path) -> None:
    db = tmp_path / "notifier.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from notifier.store import acquire_run_lock\n"
            "lock = acquire_run_lock(Path(sys.argv[1]))\n"
            "print('locked', flush=True)\n"
            "time.sleep(600)\n",
            str(db),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"

        with pytest.raises(AlreadyRunning, match=f"process {holder.pid}"):
            acquire_run_lock(db)

        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        acquire_run_lock(db).close()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
