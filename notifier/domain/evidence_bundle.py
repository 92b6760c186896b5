"""Case bundles of the evidence record (SPEC §15): how an entry is written into a bundle, how a
request's SLA figures are worked out for it, and the check of a bundle with nothing but its files.

A bundle is a set of files (a zip archive on disk): ``manifest.json`` lists every other file with
its SHA-256 and names the ``head`` (the hash of the ledger's last entry when it was made);
``ledger/entries.jsonl`` holds every ledger entry from the first one involved up to that head, one
JSON object a line, with exactly the fields the entry's hash covers; ``messages/`` holds the
payloads of the involved entries, each file named after its entry and hashing to the entry's
``payload_sha256``. :func:`check_bundle` recomputes all of it; pure, it is given the files' bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from notifier.domain.evidence import GENESIS, LedgerEntry, canonical_time

BUNDLE_FORMAT = "notifier-evidence-bundle/1"
MANIFEST = "manifest.json"
ENTRIES = "ledger/entries.jsonl"

# The extension of a message file by the kind of its entry (anything else: ``.bin``).
_EXTENSIONS = {
    "email.sent": ".eml",
    "mail.received": ".eml",
    "api.request": ".body",
    "api.answer": ".body",
    "callback": ".body",
    "queue.ack": ".body",
    "dead_letter": ".body",
    "intake.conflict": ".json",
}


def entry_document(entry: LedgerEntry, *, involved: bool) -> dict[str, Any]:
    """One line of ``ledger/entries.jsonl``: the hashed fields exactly as hashed (``meta`` as its
    canonical JSON text), the entry's hash, and whether it is about the exported case."""
    return {
        "seq": entry.seq,
        "at": canonical_time(entry.at),
        "kind": entry.kind,
        "notice_id": entry.notice_id,
        "request_ids": list(entry.request_ids),
        "payload_sha256": entry.payload_sha256,
        "meta": entry.meta,
        "prev_hash": entry.prev_hash,
        "entry_hash": entry.entry_hash,
        "involved": involved,
    }


def document_hash(document: Mapping[str, Any]) -> str:
    """The entry hash recomputed from a bundle line: SHA-256 of the compact JSON array
    ``[seq, at, kind, notice_id, request_ids, payload_sha256, meta, prev_hash]``."""
    fields = [
        document["seq"],
        document["at"],
        document["kind"],
        document["notice_id"],
        document["request_ids"],
        document["payload_sha256"],
        document["meta"],
        document["prev_hash"],
    ]
    text = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def message_path(entry: LedgerEntry) -> str:
    """Where an involved entry's payload goes in the bundle, e.g. ``messages/00000012-email.sent.eml``."""
    extension = _EXTENSIONS.get(entry.kind, ".bin")
    if entry.kind == "portal.file":
        name = str(entry.facts.get("path", ""))
        suffix = name.rsplit(".", 1)[-1] if "." in name.rsplit("/", 1)[-1] else ""
        extension = f".{suffix}" if suffix.isalnum() and len(suffix) <= 8 else ".bin"
    return f"messages/{entry.seq:08d}-{entry.kind}{extension}"


# -- SLA figures ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaInputs:
    """What a request's SLA figures are worked out from (the store's values, and its bounds)."""

    state: str
    ingested_at: datetime
    delivered_at: datetime | None
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    ack_within: timedelta | None
    removal_within: timedelta | None
    clarification_requested_at: datetime | None = None
    clarified_at: datetime | None = None


_RESOLVED = frozenset({"removed", "rejected"})
_OPEN = frozenset({"delivered", "acknowledged"})


def _text(at: datetime | None) -> str | None:
    return None if at is None else canonical_time(at)


def _s(delta: timedelta | None) -> int | None:
    return None if delta is None else int(delta.total_seconds())


def sla_figures(facts: SlaInputs, *, now: datetime) -> dict[str, Any]:
    """A request's figures as the report counts them (SPEC §7, §14): delivery, acknowledgement and
    removal times, the bounds, how long a clarification paused the removal clock, and whether each
    bound was kept, with the rule applied written out."""
    delivered = facts.delivered_at
    figures: dict[str, Any] = {
        "state": facts.state,
        "ingested_at": _text(facts.ingested_at),
        "delivered_at": _text(delivered),
        "acknowledged_at": _text(facts.acknowledged_at),
        "resolved_at": _text(facts.resolved_at),
        "ack_within_s": _s(facts.ack_within),
        "removal_within_s": _s(facts.removal_within),
        "judged_at": canonical_time(now),
        "rules": (
            "to_delivery = delivered_at - ingested_at; to_ack = (acknowledged_at, else resolved_at "
            "once removed or rejected) - delivered_at, or now - delivered_at while unanswered; the "
            "removal clock starts at delivered_at, or at the answer to a clarification, and stands "
            "still while one is asked and unanswered (paused_s); on_clock = resolved_at - that "
            "start; a bound is breached only when the time is strictly greater than the bound"
        ),
    }
    if delivered is None:
        figures.update(delivered=False, ack="not delivered", removal="not delivered")
        return figures
    figures["to_delivery_s"] = _s(delivered - facts.ingested_at)
    answered = facts.acknowledged_at or (facts.resolved_at if facts.state in _RESOLVED else None)
    waited = (answered or now) - delivered
    figures["to_ack_s"] = _s(waited)
    figures["ack_answered"] = answered is not None
    if facts.ack_within is not None:
        figures["ack"] = "breached" if waited > facts.ack_within else "within"
    asked, clarified = facts.clarification_requested_at, facts.clarified_at
    start: datetime | None = delivered
    paused = timedelta(0)
    if asked is not None:
        stopped = clarified is None or clarified < asked
        start = None if stopped else clarified
        paused = (now if stopped or clarified is None else clarified) - asked
    figures["paused_s"] = _s(paused)
    figures["removal_clock_from"] = _text(start)
    if facts.state in _RESOLVED and facts.resolved_at is not None:
        on_clock = facts.resolved_at - start if start is not None else timedelta(0)
        figures["to_removal_s"] = _s(facts.resolved_at - delivered)
    elif facts.state in _OPEN and start is not None:
        on_clock = now - start
    else:
        on_clock = timedelta(0)
    figures["on_clock_s"] = _s(on_clock)
    if facts.removal_within is not None:
        figures["removal"] = "breached" if on_clock > facts.removal_within else "within"
    return figures


# -- checking a bundle ------------------------------------------------------------------------------


@dataclass(slots=True)
class BundleCheck:
    """What :func:`check_bundle` found: the head the bundle names, how many files and entries it
    checked, and every failure (empty: the bundle is intact)."""

    head: str | None = None
    files: int = 0
    entries: int = 0
    messages: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.failures


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_bundle(files: Mapping[str, bytes], *, published_head: str | None = None) -> BundleCheck:
    """Check a bundle's files: each listed file present with its SHA-256, nothing unlisted, the
    entries linked one to the next and each hashing to its ``entry_hash``, the last one being the
    head the manifest names (and ``published_head`` when given), and each message hashing to its
    entry's ``payload_sha256``."""
    result = BundleCheck()
    raw = files.get(MANIFEST)
    if raw is None:
        result.failures.append(f"{MANIFEST}: missing")
        return result
    try:
        manifest = json.loads(raw)
        listed = {str(item["path"]): str(item["sha256"]) for item in manifest["files"]}
        head = str(manifest["head"])
    except (ValueError, KeyError, TypeError) as error:
        result.failures.append(f"{MANIFEST}: not a bundle manifest ({type(error).__name__}: {error})")
        return result
    result.head = head
    for path, digest in sorted(listed.items()):
        data = files.get(path)
        if data is None:
            result.failures.append(f"{path}: listed in the manifest but missing")
        elif sha256_hex(data) != digest:
            result.failures.append(f"{path}: its SHA-256 is not the one in the manifest (changed)")
        else:
            result.files += 1
    for path in sorted(set(files) - set(listed) - {MANIFEST}):
        result.failures.append(f"{path}: in the bundle but not listed in the manifest")
    if published_head is not None and published_head.strip().lower() != head:
        result.failures.append(f"{MANIFEST}: names head {head}, not the published head {published_head}")
    _check_entries(files, manifest, head, result)
    return result


def _check_entries(files: Mapping[str, bytes], manifest: Any, head: str, result: BundleCheck) -> None:
    raw = files.get(ENTRIES)
    if raw is None:
        result.failures.append(f"{ENTRIES}: missing")
        return
    payloads: dict[int, str | None] = {}
    prev: str | None = None
    expected: int | None = None
    last_hash = GENESIS
    for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        where = f"{ENTRIES} line {number}"
        try:
            document = json.loads(line)
            seq = int(document["seq"])
            recomputed = document_hash(document)
        except (ValueError, KeyError, TypeError) as error:
            result.failures.append(f"{where}: not a ledger entry ({type(error).__name__})")
            return
        if expected is not None and seq != expected:
            result.failures.append(f"{where}: entry {seq} where entry {expected} was expected")
            return
        if prev is not None and document["prev_hash"] != prev:
            result.failures.append(f"{where}: entry {seq} does not link to the entry before it")
            return
        if seq == 1 and document["prev_hash"] != GENESIS:
            result.failures.append(f"{where}: entry 1 does not start the chain")
            return
        if recomputed != document["entry_hash"]:
            result.failures.append(f"{where}: entry {seq} does not hash to its entry_hash (changed)")
            return
        payloads[seq] = document["payload_sha256"]
        prev = last_hash = document["entry_hash"]
        expected = seq + 1
        result.entries += 1
    if last_hash != head:
        result.failures.append(f"{ENTRIES}: the last entry's hash {last_hash} is not the head {head}")
    for item in manifest.get("messages", []):
        path, seq = str(item["path"]), int(item["seq"])
        data = files.get(path)
        if data is None:
            continue  # named above when listed; a purged payload has no file
        if payloads.get(seq) != sha256_hex(data):
            result.failures.append(f"{path}: does not hash to the payload_sha256 of entry {seq}")
        else:
            result.messages += 1
