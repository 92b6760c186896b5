"""Bringing a store's schema up to date, once, however many daemons start together.

``create_store`` calls :func:`upgrade` at every start. The migrations run in one transaction
that first takes a lock: ``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped advisory lock on
PostgreSQL. A second process starting at the same moment waits for the first to commit, then
finds the schema at head and does nothing. (The lock also keeps two stores of one process from
running Alembic at once, which matters: Alembic's ``context`` is module-global state.)
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notifier.errors import PermanentError
from notifier.logging import get_logger

log = get_logger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# An arbitrary constant shared by every notifier process: the key of the migration lock.
_PG_MIGRATION_LOCK_KEY = 0x6E6F746966696572  # "notifier"


def alembic_config() -> Config:
    """The Alembic configuration of the store, built in code (there is no alembic.ini to find)."""
    config = Config()
    # ConfigParser interpolates "%": escape it in case the install path contains one.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def known_revisions() -> set[str]:
    return {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


async def current_revision(connection: AsyncConnection) -> str | None:
    def _read(sync_connection: Connection) -> str | None:
        return MigrationContext.configure(sync_connection).get_current_revision()

    return await connection.run_sync(_read)


async def upgrade(engine: AsyncEngine, *, read_only_engine: AsyncEngine | None = None) -> None:
    """Apply every migration not yet applied (``alembic upgrade head``), under the lock.

    A schema already at head (every start but the first after an upgrade) is recognised with a
    plain read, so ``notifier status`` next to a busy daemon never queues for the write lock.
    """
    async with (read_only_engine or engine).connect() as connection:
        current = await current_revision(connection)
    if current == head_revision():
        return
    if current is not None and current not in known_revisions():
        raise PermanentError(
            f"the database schema is at revision {current}, which this version of notifier does not "
            f"know (its latest is {head_revision()}); run the newer notifier that migrated it"
        )

    def _upgrade(sync_connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = sync_connection
        command.upgrade(config, "head")

    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK_KEY}
            )
        await connection.run_sync(_upgrade)
    # Another process may have migrated while this one waited for the lock; either way it is at head.
    log.info("store.migrated", from_revision=current, to_revision=head_revision())
