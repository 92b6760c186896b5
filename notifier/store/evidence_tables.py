"""The evidence ledger's tables (SPEC §15), on the store's metadata (migration 0040).

``ledger`` holds the hash-chained entries (:mod:`notifier.domain.evidence`), numbered without gaps
from 1; ``ledger_head`` is one row naming the last entry's number and hash: appending locks it (``FOR
UPDATE`` on PostgreSQL; SQLite's write lock serialises writers already), so several daemon processes
extend one chain, and a ledger cut short at its tail no longer reaches the head it names.
``evidence_payloads`` keeps each payload once by the SHA-256 of its plaintext, AES-GCM encrypted,
until ``kept_until``; purging empties ``ciphertext`` and keeps the row and the hashes.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, String, Table, Text

from notifier.store.tables import UTCDateTime, metadata

ledger = Table(
    "ledger",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", UTCDateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("notice_id", String(64), nullable=True),
    Column("request_ids", Text, nullable=False),  # JSON list
    Column("payload_sha256", String(64), nullable=True),
    Column("meta", Text, nullable=False),  # canonical JSON, exactly as hashed
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
    Index(None, "notice_id", "seq"),
    Index(None, "at"),
)

ledger_head = Table(
    "ledger_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

# Entries written by daemons and urgent lanes (EvidenceOptions.deferred) with their change,
# not yet chained: the next process to take the head chains them first, in ``id`` order, before its
# own (migration 0050). No transaction of a daemon waits for the head's lock.
ledger_pending = Table(
    "ledger_pending",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("notice_id", String(64), nullable=True),
    Column("request_ids", Text, nullable=False),  # JSON list
    Column("payload_sha256", String(64), nullable=True),
    Column("meta", Text, nullable=False),  # canonical JSON, as it will be hashed
)

evidence_payloads = Table(
    "evidence_payloads",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("ciphertext", LargeBinary, nullable=True),  # 12-byte nonce + AES-GCM; NULL once purged
    Column("size", BigInteger, nullable=False),
    Column("stored_at", UTCDateTime, nullable=False),
    Column("kept_until", UTCDateTime, nullable=False),
    Index(None, "kept_until"),
)
