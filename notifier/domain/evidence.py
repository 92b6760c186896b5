"""The evidence record (SPEC §15): what is appended to the hash-chained ledger, how an entry is
hashed, and the pure checks of a chain and of the states it records.

An entry is ``seq`` (1, 2, … without gaps), ``at`` (business time), ``kind``, the notice and requests
it is about, the SHA-256 of its payload (the exact bytes sent or received; kept apart, encrypted)
or None, ``meta`` (non-secret facts as canonical JSON) and ``prev_hash``, the hash of the entry
before it (:data:`GENESIS` for the first). Its ``entry_hash`` is the SHA-256 of the canonical JSON
array of those fields, so changing, removing or reordering any entry breaks every link after it.

``state`` entries carry the new state and times of a notice and its requests after each
transition; replaying them gives what the store's tables must hold (:func:`replay`).
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64

# The times a state entry carries, beside the state, for notices and requests alike.
TRACKED_TIMES = ("delivered_at", "acknowledged_at", "resolved_at")


class EvidenceKind(enum.StrEnum):
    STATE = "state"  # a notice's and/or requests' new state and times
    ATTEMPT = "attempt"  # one attempt to send: channel, outcome, the relay's or server's answer
    EMAIL_SENT = "email.sent"  # payload: the exact bytes handed to the relay
    API_REQUEST = "api.request"  # payload: the request body; meta: its headers without secrets
    API_ANSWER = "api.answer"  # payload: the answer's body; meta: its status
    PORTAL_FILE = "portal.file"  # payload: one file written to the outbox
    MAIL_RECEIVED = "mail.received"  # payload: an inbound email as received
    CALLBACK = "callback"  # payload: a callback's body; meta: its signature headers
    QUEUE_ACK = "queue.ack"  # payload: an acknowledgement taken off the queue
    DEAD_LETTER = "dead_letter"  # payload: a message kept as a dead letter (as kept); meta: why
    INTAKE_CONFLICT = "intake.conflict"  # payload: another body under a stored request's id
    ACK = "ack"  # an acknowledgement as read, and what it changed
    RECEIPT = "receipt"  # an automated confirmation (auto-reply, API ticket)
    CHECK = "check"  # a check of a URL (verification), without content
    STAFF = "staff"  # an action of the authority's staff: ack, retry, clarify, withdraw


@dataclass(frozen=True, slots=True, kw_only=True)
class EvidenceRecord:
    """What a service or adapter asks the store to append, in the transaction of its change."""

    kind: str
    notice_id: str | None = None
    request_ids: tuple[str, ...] = ()
    payload: bytes | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerEntry:
    """One entry as the ledger holds it."""

    seq: int
    at: datetime
    kind: str
    notice_id: str | None
    request_ids: tuple[str, ...]
    payload_sha256: str | None
    meta: str  # canonical JSON, exactly as hashed
    prev_hash: str
    entry_hash: str

    @property
    def facts(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.meta)
        return loaded


@dataclass(frozen=True, slots=True)
class Head:
    """The last entry of the chain: its number and hash (``0``, :data:`GENESIS` when empty)."""

    seq: int
    hash: str


def canonical_time(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("evidence times must be timezone-aware")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return canonical_time(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def canonical_meta(meta: Mapping[str, Any]) -> str:
    """``meta`` as canonical JSON: keys sorted, no spaces, times as UTC ISO 8601 with microseconds."""
    return json.dumps(_plain(meta), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def payload_hash(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def entry_hash(
    *,
    seq: int,
    at: datetime,
    kind: str,
    notice_id: str | None,
    request_ids: Sequence[str],
    payload_sha256: str | None,
    meta: str,
    prev_hash: str,
) -> str:
    """SHA-256 (hex) of ``[seq, at, kind, notice_id, request_ids, payload_sha256, meta, prev_hash]``
    as compact JSON (UTF-8), ``meta`` being the canonical JSON text itself."""
    fields = [seq, canonical_time(at), kind, notice_id, list(request_ids), payload_sha256, meta, prev_hash]
    text = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chain(
    head: Head,
    at: datetime,
    records: Sequence[EvidenceRecord],
    payload_hashes: Sequence[str | None] | None = None,
) -> list[LedgerEntry]:
    """The entries that append ``records`` after ``head``, in order, each linked to the one before
    (``payload_hashes``: the payloads' hashes when already computed, one per record)."""
    entries: list[LedgerEntry] = []
    seq, prev = head.seq, head.hash
    if payload_hashes is None:
        payload_hashes = [None if r.payload is None else payload_hash(r.payload) for r in records]
    for record, sha in zip(records, payload_hashes, strict=True):
        seq += 1
        meta = canonical_meta(record.meta)
        ids = tuple(record.request_ids)
        digest = entry_hash(
            seq=seq,
            at=at,
            kind=record.kind,
            notice_id=record.notice_id,
            request_ids=ids,
            payload_sha256=sha,
            meta=meta,
            prev_hash=prev,
        )
        entries.append(
            LedgerEntry(
                seq=seq,
                at=at,
                kind=record.kind,
                notice_id=record.notice_id,
                request_ids=ids,
                payload_sha256=sha,
                meta=meta,
                prev_hash=prev,
                entry_hash=digest,
            )
        )
        prev = digest
    return entries


def staff_record(
    action: str,
    *,
    by: str,
    notice_id: str | None = None,
    request_ids: Sequence[str] = (),
    **facts: Any,
) -> EvidenceRecord:
    """A ``staff`` entry: what the authority's staff did (``ack``, ``retry``, ``submitted``,
    ``clarify``, ``withdraw``) and who did it (the console user, else the operating-system user
    running the command); ``facts`` non-secret details (a claimed time, a status; never a note)."""
    return EvidenceRecord(
        kind=EvidenceKind.STAFF,
        notice_id=notice_id,
        request_ids=tuple(request_ids),
        meta={"action": action, "by": by} | facts,
    )


# -- states -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A notice's or request's state and times, as a state entry records them (times as text)."""

    state: str
    delivered_at: str | None = None
    acknowledged_at: str | None = None
    resolved_at: str | None = None

    @classmethod
    def of(cls, state: str, *times: datetime | None) -> Snapshot:
        texts = [None if t is None else canonical_time(t) for t in times]
        return cls(state, *texts)

    def as_meta(self) -> dict[str, Any]:
        return {"state": self.state} | {name: getattr(self, name) for name in TRACKED_TIMES}

    def differences(self, other: Snapshot) -> list[str]:
        return [name for name in ("state", *TRACKED_TIMES) if getattr(self, name) != getattr(other, name)]


def state_record(
    *,
    notice_id: str | None,
    notice: Snapshot | None,
    requests: Mapping[str, Snapshot],
) -> EvidenceRecord:
    """A ``state`` entry: the notice's snapshot (if given) and its requests', grouped by equal ones."""
    groups: dict[Snapshot, list[str]] = {}
    for request_id in sorted(requests):
        groups.setdefault(requests[request_id], []).append(request_id)
    meta: dict[str, Any] = {
        "requests": [snapshot.as_meta() | {"ids": ids} for snapshot, ids in groups.items()]
    }
    if notice is not None:
        meta["notice"] = notice.as_meta()
    return EvidenceRecord(
        kind=EvidenceKind.STATE, notice_id=notice_id, request_ids=tuple(sorted(requests)), meta=meta
    )


def _snapshot(facts: Mapping[str, Any]) -> Snapshot:
    return Snapshot(
        str(facts["state"]), *(None if facts.get(n) is None else str(facts[n]) for n in TRACKED_TIMES)
    )


@dataclass(slots=True)
class Replay:
    """The last recorded snapshot of every notice and request."""

    notices: dict[str, Snapshot] = field(default_factory=dict)
    requests: dict[str, Snapshot] = field(default_factory=dict)

    def apply(self, entry: LedgerEntry) -> None:
        if entry.kind != EvidenceKind.STATE:
            return
        facts = entry.facts
        if entry.notice_id is not None and "notice" in facts:
            self.notices[entry.notice_id] = _snapshot(facts["notice"])
        for group in facts.get("requests", []):
            snapshot = _snapshot(group)
            for request_id in group["ids"]:
                self.requests[request_id] = snapshot


def replay(entries: Iterable[LedgerEntry]) -> Replay:
    result = Replay()
    for entry in entries:
        result.apply(entry)
    return result


@dataclass(frozen=True, slots=True)
class StateFinding:
    """A notice or request whose stored state or times are not what the record says."""

    what: str  # "notice" or "request"
    id: str
    fields: tuple[str, ...]  # the fields that differ; empty when one side has no such row
    recorded: Snapshot | None
    stored: Snapshot | None

    def describe(self) -> str:
        if self.recorded is None:
            return f"{self.what} {self.id}: in the store but not in the record"
        if self.stored is None:
            return f"{self.what} {self.id}: in the record but not in the store"
        parts = [
            f"{name} recorded {getattr(self.recorded, name)} but stored {getattr(self.stored, name)}"
            for name in self.fields
        ]
        return f"{self.what} {self.id}: " + "; ".join(parts)


def compare(
    what: str, recorded: Mapping[str, Snapshot], stored: Mapping[str, Snapshot]
) -> list[StateFinding]:
    """Every id whose stored snapshot differs from the recorded one (or that one side lacks)."""
    findings: list[StateFinding] = []
    for key in sorted(set(recorded) | set(stored)):
        mine, theirs = recorded.get(key), stored.get(key)
        if mine is None or theirs is None:
            findings.append(StateFinding(what, key, (), mine, theirs))
        elif differing := mine.differences(theirs):
            findings.append(StateFinding(what, key, tuple(differing), mine, theirs))
    return findings


# -- the chain ------------------------------------------------------------------------------------


class ChainWalk:
    """Checks entries fed in ``seq`` order against each other; :attr:`failure` names the first that
    does not match (or ``None``). Call :meth:`finish` with the head row at the end."""

    def __init__(self) -> None:
        self.expected = 1
        self.prev = GENESIS
        self.failure: str | None = None
        self.count = 0

    def feed(self, entry: LedgerEntry) -> bool:
        """Check one entry; False once a failure is found (later entries are not judged)."""
        if self.failure is not None:
            return False
        self.count += 1
        if entry.seq != self.expected:
            if entry.seq > self.expected:
                gap = (
                    f"{self.expected}"
                    if entry.seq == self.expected + 1
                    else f"{self.expected}–{entry.seq - 1}"
                )
                self.failure = f"entry {gap} is missing (deleted): the ledger goes on at entry {entry.seq}"
            else:
                self.failure = f"entry {entry.seq} is out of order (expected entry {self.expected})"
            return False
        if entry.prev_hash != self.prev:
            self.failure = (
                f"entry {entry.seq} does not link to the entry before it "
                "(an entry was replaced, removed or reordered)"
            )
            return False
        digest = entry_hash(
            seq=entry.seq,
            at=entry.at,
            kind=entry.kind,
            notice_id=entry.notice_id,
            request_ids=entry.request_ids,
            payload_sha256=entry.payload_sha256,
            meta=entry.meta,
            prev_hash=entry.prev_hash,
        )
        if digest != entry.entry_hash:
            self.failure = f"entry {entry.seq} ({entry.kind}) was edited: its hash does not match its content"
            return False
        self.expected += 1
        self.prev = entry.entry_hash
        return True

    def finish(self, head: Head) -> None:
        if self.failure is not None:
            return
        last = self.expected - 1
        if head.seq != last or head.hash != self.prev:
            if head.seq > last:
                self.failure = (
                    f"entries {last + 1}–{head.seq} are missing: the head names entry {head.seq} "
                    f"but the ledger ends at entry {last} (its tail was truncated)"
                )
            else:
                self.failure = (
                    f"the head names entry {head.seq} ({head.hash[:16]}…) but the ledger ends at "
                    f"entry {last} ({self.prev[:16]}…)"
                )
