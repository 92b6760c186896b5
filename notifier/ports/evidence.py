"""The evidence ledger's port (SPEC §15): what reads the record back, and what appends a message
as it came in (entries about changes are appended by the store's own methods, in their
transactions)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from notifier.domain.evidence import EvidenceRecord, Head, LedgerEntry, Snapshot


@dataclass(frozen=True, slots=True, kw_only=True)
class PayloadCheck:
    """One kept payload decrypted and hashed again: ``checked`` False when there is no key to read
    it; ``problem`` names what failed, None when it is intact."""

    sha256: str
    checked: bool
    problem: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredStates:
    """The head and what the tables hold now, read together."""

    head: Head
    notices: dict[str, Snapshot]
    requests: dict[str, Snapshot]


class EvidenceStore(Protocol):
    @property
    def evidence_enabled(self) -> bool: ...

    @property
    def evidence_key_set(self) -> bool: ...

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
