"""The console's tables (SPEC §16), on :data:`notifier.store.tables.metadata`.

Migration 0030: staff accounts with Argon2 hashes (``role`` is viewer, operator or admin), and
their sessions by the SHA-256 of the cookie's token. Migration 0036: wrong passwords per key
(``user:NAME``, ``addr:IP``) and the lockouts they caused, shared by every daemon process; and the
history of changes to accounts, with who made them. Migration 0055: the text a search for part of
a URL or case reference reads, one row a request, with its trigram index (PostgreSQL).
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, Index, String, Table, Text, false

from notifier.store.tables import AutoId, UTCDateTime, metadata

users = Table(
    "users",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("disabled", Boolean, nullable=False, server_default=false()),
    Column("language", String(8), nullable=True),  # "en" or "ko"; NULL: the browser's
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

user_sessions = Table(
    "user_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("username", String(64), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
)

login_failures = Table(
    "login_failures",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("key", String(160), nullable=False),
    Column("failed_at", UTCDateTime, nullable=False),
    Index(None, "key", "failed_at"),
)

login_lockouts = Table(
    "login_lockouts",
    metadata,
    Column("key", String(160), primary_key=True),
    Column("locked_until", UTCDateTime, nullable=False),
)

# One row per change to an account: ``action`` is added, role, disabled, enabled or password;
# ``detail`` the new role where there is one; ``actor`` who did it (``console:NAME`` or ``cli``).
user_events = Table(
    "user_events",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False, index=True),
    Column("actor", String(200), nullable=False),
    Column("username", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("detail", String(200), nullable=True),
)

# What a search for part of a URL or a case reference looks in: the URLs and then the case reference,
# by spaces, never the explanation; written with the request by a trigger on PostgreSQL (migration
# 0055). SQLite's search reads the bodies, and its table stays empty. A table of its own, so that
# the trigram index over it is written once, not again at every change of a request's state (a GIN
# entry for every trigram of every URL: 2.7 ms of PostgreSQL's time for each 50 requests moved,
# twice a notice).
request_search = Table(
    "request_search",
    metadata,
    # Goes with its request (a store emptied by hand, a test's reset): never a stale row that
    # would refuse the same request id stored again.
    Column(
        "request_id", String(128), ForeignKey("requests.request_id", ondelete="CASCADE"), primary_key=True
    ),
    Column("text", Text, nullable=False),
)
SEARCH_INDEX = "ix_request_search_trgm"
Index(
    SEARCH_INDEX,
    request_search.c.text,
    postgresql_using="gin",
    postgresql_ops={"text": "gin_trgm_ops"},
)
