"""Making one test's PostgreSQL database unavailable, and available again, without a server restart.

The server is shared with every other test on the machine, so a test that needs its store to go
away takes only its own database away: its connections are terminated (``pg_terminate_backend``, the
"terminating connection due to administrator command" a restart sends too) and the database is
renamed, so every new connection is refused ("database … does not exist") until it is renamed back.
"""

from __future__ import annotations

import time

import asyncpg

_AWAY = "_away"


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
