"""SQLite stores in a temporary folder, for the tests of the services.

The services are tested on the real store rather than on a fake of it: SQLite in a test's own folder
costs a file copy. The schema is migrated once per test session into a template database and each
test starts from a copy of it, so a test pays neither for Alembic nor for a second implementation
of the state machine.
"""

from __future__ import annotations

import asyncio
import inspect
import shutil
import tempfile
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from notifier.clock import SimulatedClock
from notifier.domain.models import Priority, TakedownRequest
from notifier.domain.notices import Attempt, AttemptOutcome, Notice, SendResult
from notifier.errors import StoreUnavailable
from notifier.ports import Incoming, Store
from notifier.store import SqlStore, create_store

_templates: list[Path] = []


def _migrated_template() -> Path:
    if _templates:
        return _templates[0]
    path = Path(tempfile.mkdtemp(prefix="notifier-store-template-")) / "template.db"
    failures: list[BaseException] = []

    async def migrate() -> None:
        store = await create_store(f"sqlite:///{path}")
        await store.close()

    def run() -> None:
        try:
            asyncio.run(migrate())
        except BaseException as error:  # re-raised in the test's thread
            failures.append(error)

    # The caller is usually a test already inside an event loop: migrate on a thread of its own.
    thread = threading.Thread(target=run, name="migrate-template")
    thread.start()
    thread.join()
    if failures:
        raise failures[0]
    _templates.append(path)
    return path


async def sqlite_store(folder: Path, name: str = "store.db") -> SqlStore:
    """An empty store at head in ``folder``, for one test."""
    path = folder / name
    shutil.copyfile(_migrated_template(), path)
    return await create_store(f"sqlite:///{path}")


class Switchable:
    """A real store behind a switch: while ``down``, every call fails as an unreachable database's
    does (:class:`~notifier.errors.StoreUnavailable`), and nothing reaches the store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.down = False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.store, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise StoreUnavailable("the store is switched off by the test")
            return await attribute(*args, **kwargs)

        return call

    def as_store(self) -> Store:
        return cast(Store, self)


async def delivered_notice(store: SqlStore, clock: SimulatedClock, *, request_id: str = "r-1") -> Notice:
    """One urgent Telegram request in a notice sent by email and delivered (SMTP 250), now."""
    request = TakedownRequest(
        request_id=request_id,
        platform="telegram",
        urls=("https://t.me/c/1",),
        category="deepfake_sexual_abuse",
        priority=Priority.URGENT,
    )
    await store.ingest([Incoming(request=request, source="test")], [], now=clock.now())
    notice = await store.form_notice(
        "telegram",
        max_items=10,
        channel="email",
        now=clock.now(),
        deliver_by=clock.now() + timedelta(hours=6),
    )
    assert notice is not None
    [claimed] = await store.claim_due(owner="w", now=clock.now(), lease=timedelta(minutes=1), limit=1)
    assert await store.record_delivery(
        claimed.notice_id,
        owner="w",
        attempt=Attempt(at=clock.now(), channel="email", outcome=AttemptOutcome.DELIVERED, code=250),
        result=SendResult(code=250, message_id=f"<{notice.notice_id}.notice@authority.example>"),
        channel="email",
    )
    [stored] = await store.get_notices([notice.notice_id])
    return stored
