"""Exporting a case from the evidence record (SPEC §15): ``notifier evidence export ID...``.

:func:`export_bundle` gathers, for the notices and requests named (a notice brings all its requests,
a request its notice's entries), the exact messages sent and received (decrypted: the bundle is for
a court), the attempt and state history, each request's SLA figures with how they were worked out,
and every ledger entry from the first one involved up to the head, so that anyone can recompute the
chain to the head; then a ``manifest.json`` with every file's SHA-256, a ``README.txt`` saying what
the bundle holds, and ``VERIFY.md``. Nothing is written here; the caller stores the files and
records the export (without content) in the ledger.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from notifier.domain.evidence import Head, LedgerEntry, canonical_time, staff_record
from notifier.domain.evidence_bundle import (
    BUNDLE_FORMAT,
    ENTRIES,
    MANIFEST,
    SlaInputs,
    entry_document,
    message_path,
    sha256_hex,
    sla_figures,
)
from notifier.domain.models import StoredRequest
from notifier.domain.notices import Notice
from notifier.ports import EvidenceStore
from notifier.ports.evidence import PurgeCounts, PurgeStore
from notifier.services.evidence_texts import readme_text, verify_text

log = structlog.get_logger("notifier.evidence")

# (platform, deadline profile) → (ack_within, removal_within), None when not configured.
BoundsLookup = Callable[[str, str | None], tuple[timedelta, timedelta] | None]


class ExportStore(EvidenceStore, Protocol):
    async def get_requests(self, request_ids: Sequence[str]) -> list[StoredRequest]: ...

    async def get_notices(self, notice_ids: Sequence[str]) -> list[Notice]: ...


class UnknownIds(ValueError):
    """Ids that are neither a request nor a notice."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Bundle:
    files: dict[str, bytes]  # path → bytes, the manifest included
    head: Head
    notice_ids: tuple[str, ...]
    request_ids: tuple[str, ...]
    entries: int  # entries from the first involved one up to the head
    involved: int
    messages: int
    not_kept: int  # involved payloads no longer (or never) kept: their hashes only

    @property
    def manifest_sha256(self) -> str:
        return sha256_hex(self.files[MANIFEST])


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")


def _at(moment: datetime | None) -> str | None:
    return None if moment is None else canonical_time(moment)


async def _case(store: ExportStore, ids: Sequence[str]) -> tuple[list[Notice], list[StoredRequest]]:
    wanted = list(dict.fromkeys(ids))
    named_requests = await store.get_requests(wanted)
    named_notices = await store.get_notices(wanted)
    found = {r.request.request_id for r in named_requests} | {n.notice_id for n in named_notices}
    unknown = [i for i in wanted if i not in found]
    if unknown:
        raise UnknownIds("no request or notice with id " + ", ".join(unknown))
    notice_ids = [n.notice_id for n in named_notices]
    notice_ids += [r.notice_id for r in named_requests if r.notice_id and r.notice_id not in notice_ids]
    notices = await store.get_notices(notice_ids)
    request_ids = [r.request.request_id for r in named_requests]
    request_ids += [r for n in named_notices for r in n.request_ids if r not in request_ids]
    requests = await store.get_requests(request_ids)
    order = {r: i for i, r in enumerate(request_ids)}
    requests.sort(key=lambda r: order[r.request.request_id])
    return notices, requests


async def export_bundle(
    store: ExportStore, ids: Sequence[str], *, now: datetime, bounds: BoundsLookup
) -> Bundle:
    """The bundle of the notices and requests ``ids``; raises :class:`UnknownIds` naming any id
    found nowhere."""
    notices, requests = await _case(store, ids)
    head = await store.ledger_head()
    involved: dict[int, LedgerEntry] = {}
    for notice in notices:
        for entry in await store.ledger_for_notice(notice.notice_id):
            involved[entry.seq] = entry
    for stored in requests:
        for entry in await store.ledger_for_request(stored.request.request_id):
            involved[entry.seq] = entry
    involved = {seq: e for seq, e in involved.items() if seq <= head.seq}
    # With nothing of the case recorded, the head entry alone: the bundle still names a checkable head.
    first = min(involved, default=max(head.seq, 1))
    files: dict[str, bytes] = {}
    lines: list[str] = []
    async for entry in store.iter_ledger(after=first - 1, upto=head.seq):
        document = entry_document(entry, involved=entry.seq in involved)
        lines.append(json.dumps(document, separators=(",", ":"), ensure_ascii=False))
    files[ENTRIES] = "".join(line + "\n" for line in lines).encode("utf-8")
    messages: list[dict[str, Any]] = []
    not_kept = 0
    for seq in sorted(involved):
        entry = involved[seq]
        if entry.payload_sha256 is None:
            continue
        payload = await store.evidence_payload(entry.payload_sha256)
        if payload is None:
            not_kept += 1
            messages.append({"seq": seq, "kind": entry.kind, "sha256": entry.payload_sha256, "path": None})
            continue
        path = message_path(entry)
        files[path] = payload
        messages.append({"seq": seq, "kind": entry.kind, "sha256": entry.payload_sha256, "path": path})
    files["history.json"] = _json(_history(notices, requests, involved))
    files["sla.json"] = _json({"requests": [_sla(stored, notices, bounds, now) for stored in requests]})
    notice_ids = tuple(n.notice_id for n in notices)
    request_ids = tuple(r.request.request_id for r in requests)
    summary: dict[str, Any] = {
        "notices": list(notice_ids),
        "requests": list(request_ids),
        "head": head.hash,
        "head_seq": head.seq,
        "first_seq": first if lines else None,
        "entries": len(lines),
        "involved": len(involved),
        "messages": messages,
        "created_at": canonical_time(now),
    }
    files["README.txt"] = readme_text(summary).encode("utf-8")
    files["VERIFY.md"] = verify_text(summary).encode("utf-8")
    listing = [{"path": path, "sha256": sha256_hex(data)} for path, data in sorted(files.items())]
    files[MANIFEST] = _json({"format": BUNDLE_FORMAT, "files": listing} | summary)
    return Bundle(
        files=files,
        head=head,
        notice_ids=notice_ids,
        request_ids=request_ids,
        entries=len(lines),
        involved=len(involved),
        messages=len(messages) - not_kept,
        not_kept=not_kept,
    )


def _history(
    notices: Sequence[Notice], requests: Sequence[StoredRequest], involved: dict[int, LedgerEntry]
) -> dict[str, Any]:
    """The attempts as the store holds them, and every state change as the record holds it."""
    return {
        "notices": [
            {
                "notice_id": n.notice_id,
                "platform": n.platform,
                "channel": n.channel,
                "state": n.state.value,
                "message_id": n.message_id,
                "ticket": n.ticket,
                "created_at": _at(n.created_at),
                "delivered_at": _at(n.delivered_at),
                "receipt_at": _at(n.receipt_at),
                "acknowledged_at": _at(n.acknowledged_at),
                "resolved_at": _at(n.resolved_at),
                "clarification_requested_at": _at(n.clarification_requested_at),
                "clarified_at": _at(n.clarified_at),
                "request_ids": list(n.request_ids),
                "attempts": [
                    {
                        "at": _at(a.at),
                        "channel": a.channel,
                        "outcome": a.outcome.value,
                        "code": a.code,
                        "detail": a.detail,
                        "duration_ms": a.duration_ms,
                    }
                    for a in n.attempts
                ],
            }
            for n in notices
        ],
        "requests": [
            {
                "request_id": r.request.request_id,
                "platform": r.request.platform,
                "notice_id": r.notice_id,
                "state": r.state.value,
                "urls": list(r.request.urls),
            }
            for r in requests
        ],
        "record": [
            {
                "seq": e.seq,
                "at": _at(e.at),
                "kind": e.kind,
                "notice_id": e.notice_id,
                "request_ids": list(e.request_ids),
                "facts": e.facts,
            }
            for _, e in sorted(involved.items())
        ],
    }


def _sla(
    stored: StoredRequest, notices: Sequence[Notice], bounds: BoundsLookup, now: datetime
) -> dict[str, Any]:
    notice = next((n for n in notices if n.notice_id == stored.notice_id), None)
    found = bounds(stored.request.platform, stored.request.deadline)
    facts = SlaInputs(
        state=stored.state.value,
        ingested_at=stored.ingested_at,
        delivered_at=stored.delivered_at,
        acknowledged_at=stored.acknowledged_at,
        resolved_at=stored.resolved_at,
        ack_within=None if found is None else found[0],
        removal_within=None if found is None else found[1],
        clarification_requested_at=None if notice is None else notice.clarification_requested_at,
        clarified_at=None if notice is None else notice.clarified_at,
    )
    figures = sla_figures(facts, now=now)
    return {"request_id": stored.request.request_id, "deadline": stored.request.deadline} | figures


async def record_export(store: EvidenceStore, bundle: Bundle, *, now: datetime, by: str) -> None:
    """Record an export in the ledger and the log: ids, head, counts and the manifest's SHA-256,
    never content."""
    facts: dict[str, Any] = {
        "notices": list(bundle.notice_ids),
        "head": bundle.head.hash,
        "head_seq": bundle.head.seq,
        "manifest_sha256": bundle.manifest_sha256,
        "files": len(bundle.files),
    }
    await store.record_evidence(
        [staff_record("export", by=by, request_ids=bundle.request_ids, **facts)], at=now
    )
    log.info("evidence.exported", by=by, requests=len(bundle.request_ids), **facts)


async def purge_past_retention(
    store: PurgeStore, *, now: datetime, retention: timedelta, dry_run: bool, by: str
) -> PurgeCounts:
    counts = await store.purge_evidence(now=now, retention=retention, dry_run=dry_run, by=by)
    log.info("evidence.purged", dry_run=dry_run, by=by, **counts.as_meta())
    return counts
