"""Engines for the two databases the store runs on, and the one place their failures are classified.

SQLite is the embedded default and is shared by the daemon and the CLI, each a process of its
own: it runs in WAL mode (readers never wait for the writer) with a busy timeout, and every write
transaction starts with ``BEGIN IMMEDIATE``. With SQLite's default deferred ``BEGIN`` two processes
that both read and then write can each hold a read lock while waiting for the other's to go: a
deadlock SQLite breaks by failing one of them at once with "database is locked", whatever the busy
timeout. Taking the write lock at ``BEGIN`` makes the second writer wait its turn instead.

PostgreSQL connections are checked before use (``pool_pre_ping``), so after a server restart the
pool replaces dead connections by itself instead of failing one operation per pooled connection.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]  # no type information published
from sqlalchemy import URL, event, exc, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from notifier.errors import ConfigError

# Execution option marking read-only work on SQLite: a plain deferred BEGIN, so that reads (status,
# the CLI) never queue behind the daemon's writes.
READ_ONLY = "notifier_read_only"

SQLITE_BUSY_TIMEOUT_S = 30
_WAL_SWITCH_RETRY_S = 0.02
PG_CONNECT_TIMEOUT_S = 10
PG_POOL_SIZE = 16
PG_POOL_OVERFLOW = 16

# Failures of PostgreSQL that mean "not usable now" rather than a bug in notifier: connection
# trouble, a server shutting down or starting up, too many connections or a full disk, transactions
# rolled back by a deadlock or serialization failure, and a login refused or a database missing
# (a wrong URL, or a server still being provisioned: either way the daemon reports itself not
# ready and retries, and the message says which).
_PG_TRANSIENT: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,
    asyncpg.exceptions.InvalidCatalogNameError,
    asyncpg.exceptions.InterfaceError,
)


@dataclass(frozen=True, slots=True)
class StoreURL:
    """A store URL resolved to its async driver, with a name for messages that shows no password."""

    url: URL
    dialect: str  # "sqlite" or "postgresql"
    display: str
    password: str | None


def parse_store_url(url: str) -> StoreURL:
    """Map ``sqlite://`` to aiosqlite and ``postgresql://``/``postgres://`` to asyncpg.

    SQLite URLs must name a file (``sqlite:////abs/path.db``): an in-memory database would be
    private to one pooled connection, and the daemon and the CLI could not share it.
    """
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        # The message would repeat the URL, password and all.
        raise ConfigError("store URL could not be parsed (expected sqlite:///… or postgresql://…)") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite" and driver in ("", "aiosqlite"):
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file::memory:"):
            raise ConfigError("store URL: an in-memory SQLite database cannot be shared; name a file")
        return StoreURL(
            url=parsed.set(drivername="sqlite+aiosqlite"),
            dialect="sqlite",
            display=f"SQLite store {database}",
            password=None,
        )
    if backend in ("postgresql", "postgres") and driver in ("", "asyncpg"):
        # The query is left out of the name: it may carry a password too (``?password=…``).
        safe = parsed.set(drivername="postgresql", query={})
        in_query = parsed.query.get("password")
        return StoreURL(
            url=parsed.set(drivername="postgresql+asyncpg"),
            dialect="postgresql",
            display=f"PostgreSQL store {safe.render_as_string(hide_password=True)}",
            password=parsed.password or (in_query if isinstance(in_query, str) else None),
        )
    raise ConfigError(
        f"store URL scheme '{parsed.drivername[:30]}' is not supported; use sqlite:///… or postgresql://…"
    )


def build_engine(store_url: StoreURL) -> AsyncEngine:
    # hide_parameters: an error's text must not carry request bodies (explanations may name victims).
    if store_url.dialect == "sqlite":
        engine = create_async_engine(
            store_url.url,
            hide_parameters=True,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S},
        )
        _configure_sqlite(engine)
        return engine
    return create_async_engine(
        store_url.url,
        hide_parameters=True,
        pool_pre_ping=True,
        # Concurrent sends (runtime.send_concurrency, 8 by default), intake, acknowledgements and
        # the HTTP server each hold a connection briefly; with the default five, extra connections
        # were opened and closed on every checkout.
        pool_size=PG_POOL_SIZE,
        max_overflow=PG_POOL_OVERFLOW,
        connect_args={"timeout": PG_CONNECT_TIMEOUT_S},
    )


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module, so ``_on_begin`` decides how
        # each transaction begins (SQLAlchemy's documented recipe for aiosqlite).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
            _enter_wal_mode(cursor)
            # FULL: a committed intake survives a power cut, not only a crash of the process.
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _enter_wal_mode(cursor: Any) -> None:
    """Switch the file to WAL, waiting as long as the busy timeout for other connections to let go.

    WAL mode is stored in the file, so this only does something on a new database. Switching needs
    the exclusive lock, and while another connection holds a lock SQLite answers "database is locked"
    at once instead of calling the busy handler, which is what two processes opening one new file
    together ran into. Runs in the connection's own thread, so sleeping here blocks no event loop.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) and "busy" not in str(error):
                raise
            if time.monotonic() >= deadline:
                raise
            time.sleep(_WAL_SWITCH_RETRY_S)
        else:
            return


def is_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means the store could not be reached or used for now (worth a retry).

    Anything else (a constraint violated, SQL the database rejects) is a bug and propagates as is.
    """
    if isinstance(error, (OSError, exc.TimeoutError, *_PG_TRANSIENT)):
        return True
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated or isinstance(error, exc.OperationalError | exc.InterfaceError):
            return True
        return any(isinstance(cause, (OSError, *_PG_TRANSIENT)) for cause in _causes(error.orig))
    return False


def describe_failure(error: BaseException) -> str:
    """The driver's own words for a failure, without SQLAlchemy's statement text."""
    root: BaseException = error
    if isinstance(error, exc.DBAPIError) and error.orig is not None:
        root = error.orig
        cause = root.__cause__
        if cause is not None and type(root).__module__.startswith("sqlalchemy"):
            root = cause  # the asyncpg exception behind SQLAlchemy's adapter class
    text = str(root).strip().splitlines()[0] if str(root).strip() else ""
    text = text[:200]
    return f"{type(root).__name__}: {text}" if text else type(root).__name__


def _causes(error: BaseException | None) -> list[BaseException]:
    chain: list[BaseException] = []
    while error is not None and len(chain) < 5:
        chain.append(error)
        error = error.__cause__
    return chain
