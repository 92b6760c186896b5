"""Making one test's PostgreSQL database unavailable, and available again, without a server restart;
and a delivered notice to acknowledge meanwhile.

The server is shared with every other test on the machine, so a test that needs its store to go
away takes only its own database away: its connections are terminated (``pg_terminate_backend``, the
"terminating connection due to administrator command" a restart sends too) and the database is
renamed, so every new connection is refused ("database … does not exist") until it is renamed back.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import asyncpg

from notifier.domain.models import Priority, TakedownRequest
from notifier.domain.notices import Attempt, AttemptOutcome, Notice, SendResult
from notifier.ports import Incoming, Store

_AWAY = "_away"


async def delivered_notice(store: Store, *, now: datetime, requests: int = 2) -> Notice:
    """A telegram notice of ``requests`` requests, delivered by email at ``now``, made the way the
    daemon makes one (ingest → form → claim → deliver)."""
    taken = [
        TakedownRequest(
            request_id=f"r-{n}",
            platform="telegram",
            urls=(f"https://t.me/c/{n}",),
            category="deepfake_sexual_abuse",
            priority=Priority.NORMAL,
        )
        for n in range(1, requests + 1)
    ]
    await store.ingest([Incoming(request=r, source="test") for r in taken], [], now=now)
    notice = await store.form_notice(
        "telegram", max_items=requests, channel="email", now=now, deliver_by=now + timedelta(hours=6)
    )
    assert notice is not None
    [claimed] = await store.claim_due(owner="w1", now=now, lease=timedelta(minutes=10), limit=1)
    assert await store.record_delivery(
        claimed.notice_id,
        owner="w1",
        attempt=Attempt(at=now, channel="email", outcome=AttemptOutcome.DELIVERED, code=250),
        result=SendResult(code=250, message_id="<n1@notifier>"),
        channel="email",
    )
    return notice


class DatabaseOutage:
    """``await begin()`` takes the database of ``url`` away; ``await end()`` brings it back."""

    def __init__(self, admin_dsn: str, url: str) -> None:
        self._admin_dsn = admin_dsn
        self.name = url.rsplit("/", 1)[1]
        self.down = False

    async def begin(self, *, within: float = 30.0) -> None:
        """Terminate the database's connections and rename it, trying again while a pool reconnects
        between the two (the rename needs the database to have no connection at all)."""
        deadline = time.monotonic() + within
        conn = await asyncpg.connect(self._admin_dsn)
        try:
            while True:
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", self.name
                )
                try:
                    await conn.execute(f'ALTER DATABASE "{self.name}" RENAME TO "{self.name}{_AWAY}"')
                except asyncpg.exceptions.ObjectInUseError:
                    if time.monotonic() > deadline:
                        raise
                    continue
                self.down = True
                return
        finally:
            await conn.close()

    async def end(self) -> None:
        if not self.down:
            return
        conn = await asyncpg.connect(self._admin_dsn)
        try:
            await conn.execute(f'ALTER DATABASE "{self.name}{_AWAY}" RENAME TO "{self.name}"')
            self.down = False
        finally:
            await conn.close()
