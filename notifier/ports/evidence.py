"""The evidence ledger's port (SPEC §15): what reads the record back, and what appends a message
as it came in (entries about changes are appended by the store's own methods, in their
transactions)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from notifier.domain.evidence import EvidenceRecord, Head, LedgerEntry, Snapshot


@dataclass(frozen=True, slots=True, kw_only=True)
class PayloadCheck:
    """One payload decrypted and hashed again: ``checked`` False when there is no key to read it
    or it is no longer kept (``kept`` False); ``problem`` names what failed, None when intact."""

    sha256: str
    checked: bool
    problem: str | None = None
    kept: bool = True  # False: purged past retention, or recorded without a key (its hash only)


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgeCounts:
    """What a purge removes (or, dry, would remove): how many of each and the oldest one's time."""

    payloads: int = 0
    payloads_oldest: datetime | None = None  # the earliest ``kept_until`` among them
    requests: int = 0
    requests_oldest: datetime | None = None  # the earliest settling time among them
    notes: int = 0
    notes_oldest: datetime | None = None  # the earliest acknowledgement among them

    def as_meta(self) -> dict[str, Any]:
        return {"payloads": self.payloads, "requests": self.requests, "notes": self.notes}


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredStates:
    """The head and what the tables hold now, read together."""

    head: Head
    notices: dict[str, Snapshot]
    requests: dict[str, Snapshot]
    # Entries a daemon wrote that wait for their place in the chain, oldest first: the changes
    # they record are in the states above, and they follow the head.
    pending: list[LedgerEntry] = field(default_factory=list)


class EvidenceStore(Protocol):
    @property
    def evidence_enabled(self) -> bool: ...

    @property
    def evidence_key_set(self) -> bool: ...

    async def chain_pending_evidence(self) -> int:
        """Chain the entries daemons left waiting for their place; how many there were."""
        ...

    async def record_evidence(self, records: Sequence[EvidenceRecord], *, at: datetime) -> None:
        """Append ``records`` in a transaction of their own (a message as received, before it is
        acted on)."""
        ...

    async def ledger_head(self) -> Head: ...

    async def ledger_entries(
        self, *, after: int = 0, upto: int | None = None, limit: int = 2000
    ) -> list[LedgerEntry]:
        """Entries with ``after < seq <= upto``, in order, at most ``limit``."""
        ...

    def iter_ledger(self, *, after: int = 0, upto: int | None = None) -> AsyncIterator[LedgerEntry]:
        """Every entry after ``after`` (up to ``upto``), in order: the chain links from any entry to
        the head are ``iter_ledger(after=seq - 1, upto=head.seq)``."""
        ...

    async def ledger_for_notice(self, notice_id: str) -> list[LedgerEntry]: ...

    async def ledger_for_request(self, request_id: str) -> list[LedgerEntry]: ...

    async def evidence_payload(self, sha256: str) -> bytes | None:
        """A kept payload's plaintext (checked against its hash), None when not kept."""
        ...

    def check_payloads(self) -> AsyncIterator[PayloadCheck]: ...

    async def stored_states(self) -> StoredStates: ...


class PurgeStore(Protocol):
    async def purge_evidence(
        self, *, now: datetime, retention: timedelta, dry_run: bool, by: str
    ) -> PurgeCounts:
        """Purge what is past retention (payloads, settled requests' explanations and withdrawal
        reasons, acknowledgements' notes), keeping hashes, states and times; ``dry_run``: count
        only. A real purge is recorded in the ledger with its counts."""
        ...
