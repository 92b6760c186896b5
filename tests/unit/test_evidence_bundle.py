"""The pure parts of case bundles: :func:`check_bundle` naming each kind of damage, and a request's
SLA figures as the report counts them."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta

from notifier.domain.evidence import GENESIS, EvidenceRecord, Head, chain
from notifier.domain.evidence_bundle import (
    ENTRIES,
    MANIFEST,
    SlaInputs,
    check_bundle,
    entry_document,
    message_path,
    sla_figures,
)

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SENT = b"Subject: notice\r\n\r\nplease remove\r\n"


def _entries(count: int = 4) -> list[dict[str, object]]:
    records = [
        EvidenceRecord(kind="state", request_ids=(f"r{i}",), meta={"state": "pending"}) for i in range(count)
    ]
    records[1] = EvidenceRecord(kind="email.sent", notice_id="n1", payload=SENT, meta={"code": 250})
    return [entry_document(e, involved=e.seq == 2) for e in chain(Head(0, GENESIS), NOW, records)]


def _bundle(lines: list[dict[str, object]], *, extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    files = {ENTRIES: "".join(json.dumps(line) + "\n" for line in lines).encode()}
    files["messages/00000002-email.sent.eml"] = SENT
    files |= extra or {}
    manifest = {
        "files": [{"path": p, "sha256": hashlib.sha256(d).hexdigest()} for p, d in sorted(files.items())],
        "head": lines[-1]["entry_hash"] if lines else GENESIS,
        "messages": [{"seq": 2, "path": "messages/00000002-email.sent.eml"}],
    }
    return files | {MANIFEST: json.dumps(manifest).encode()}


def test_an_intact_bundle_checks_against_its_published_head() -> None:
    lines = _entries()
    result = check_bundle(_bundle(lines), published_head=str(lines[-1]["entry_hash"]))

    assert result.failures == []
    assert (result.files, result.entries, result.messages) == (2, 4, 1)


def test_each_kind_of_damage_is_named() -> None:
    lines = _entries()
    intact = _bundle(lines)

    changed = dict(intact) | {"messages/00000002-email.sent.eml": SENT.replace(b"remove", b"rEmove")}
    assert check_bundle(changed).failures == [
        "messages/00000002-email.sent.eml: its SHA-256 is not the one in the manifest (changed)",
        "messages/00000002-email.sent.eml: does not hash to the payload_sha256 of entry 2",
    ]
    missing = {k: v for k, v in intact.items() if k != "messages/00000002-email.sent.eml"}
    assert check_bundle(missing).failures == [
        "messages/00000002-email.sent.eml: listed in the manifest but missing"
    ]
    added = dict(intact) | {"extra.txt": b"x"}
    assert check_bundle(added).failures == ["extra.txt: in the bundle but not listed in the manifest"]
    assert check_bundle(intact, published_head="f" * 64).failures == [
        f"manifest.json: names head {lines[-1]['entry_hash']}, not the published head {'f' * 64}"
    ]
    # Each rebuilt with a manifest that matches: only the chain gives them away.
    unlinked = _bundle([lines[0], *lines[2:]])
    assert check_bundle(unlinked).failures[0] == f"{ENTRIES} line 2: entry 3 where entry 2 was expected"
    edited = [dict(line) for line in lines]
    edited[2]["meta"] = '{"state":"removed"}'
    assert check_bundle(_bundle(edited)).failures == [
        f"{ENTRIES} line 3: entry 3 does not hash to its entry_hash (changed)"
    ]
    assert check_bundle({}).failures == ["manifest.json: missing"]


def test_the_message_path_names_the_entry() -> None:
    [entry] = chain(Head(6, "a" * 64), NOW, [EvidenceRecord(kind="portal.file", meta={"path": "out/n1.pdf"})])
    assert message_path(entry) == "messages/00000007-portal.file.pdf"


def test_sla_figures_follow_the_report_rules() -> None:
    hours = timedelta(hours=1)
    facts = SlaInputs(
        state="removed",
        ingested_at=NOW,
        delivered_at=NOW + hours,
        acknowledged_at=NOW + 37 * hours,
        resolved_at=NOW + 50 * hours,
        ack_within=36 * hours,
        removal_within=24 * hours,
        clarification_requested_at=NOW + 2 * hours,
        clarified_at=NOW + 30 * hours,
    )

    figures = sla_figures(facts, now=NOW + 60 * hours)

    assert figures["to_delivery_s"] == 3600
    assert (figures["to_ack_s"], figures["ack"]) == (36 * 3600, "within")  # exactly the bound: within
    assert figures["paused_s"] == 28 * 3600
    assert figures["removal_clock_from"] == (NOW + 30 * hours).isoformat(timespec="microseconds")
    assert (figures["on_clock_s"], figures["removal"]) == (20 * 3600, "within")
    assert figures["to_removal_s"] == 49 * 3600
    late = sla_figures(dataclasses.replace(facts, clarification_requested_at=None), now=NOW)
    assert (late["on_clock_s"], late["removal"]) == (49 * 3600, "breached")
