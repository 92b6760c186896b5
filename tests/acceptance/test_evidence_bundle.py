"""``notifier evidence export`` and ``check`` as an operator and a third party run them: the bundle
is checked here with nothing but ``hashlib``, ``json`` and ``zipfile`` (none of notifier's code),
and a bundle with one byte changed fails ``evidence check`` naming the file."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import signal
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from notifier.domain.models import Priority, TakedownRequest
from notifier.ports import Incoming
from notifier.sandbox.smtp import SmtpSink
from notifier.store import create_store
from notifier.store.evidence_writer import EvidenceOptions, parse_key
from tests.acceptance.harness import Daemons, notifier, write_config
from tests.acceptance.test_dispatch_processes import smtp_to
from tests.evidence_key import TEST_EVIDENCE_KEY
from tests.integration.test_evidence_ledger import NOW, SENT, delivered_and_acked
from tests.waiting import wait_for


def _entry_hash(line: dict[str, object]) -> str:
    fields = [
        line["seq"],
        line["at"],
        line["kind"],
        line["notice_id"],
        line["request_ids"],
        line["payload_sha256"],
        line["meta"],
        line["prev_hash"],
    ]
    text = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


async def _case(tmp_path: Path) -> tuple[Path, str, str]:
    """A store with a delivered and acknowledged notice, then another case after it; the config,
    the notice id and the head."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    config = write_config(tmp_path, store_url=url, queue_url=f"sqlite:///{tmp_path / 'queue.db'}")
    store = await create_store(url, evidence=EvidenceOptions(key=parse_key(TEST_EVIDENCE_KEY)))
    try:
        notice_id = await delivered_and_acked(store)
        other = TakedownRequest(
            request_id="other-case",
            platform="telegram",
            urls=("https://t.me/c/other",),
            category="deepfake_sexual_abuse",
            priority=Priority.NORMAL,
        )
        await store.ingest([Incoming(request=other, source="test")], [], now=NOW)
        head = await store.ledger_head()
    finally:
        await store.close()
    return config, notice_id, head.hash


def _rewrite(source: Path, target: Path, name: str, change: bytes | None = None) -> None:
    """Copy a bundle with one byte of ``name`` flipped (or its content replaced by ``change``)."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for info in original.infolist():
            data = original.read(info)
            if info.filename == name:
                data = change if change is not None else bytes([data[0] ^ 0x01]) + data[1:]
            copy.writestr(info.filename, data)


async def test_a_bundle_checks_with_plain_hashlib_and_one_changed_byte_fails(tmp_path: Path) -> None:
    config, notice_id, head = await _case(tmp_path)
    bundle = tmp_path / "case.zip"

    exported = await asyncio.to_thread(
        notifier, "evidence", "export", notice_id, "-o", str(bundle), "-c", str(config)
    )

    assert exported.returncode == 0, exported.stderr.decode()
    assert f"head: {head}" in exported.stdout.decode()
    with zipfile.ZipFile(bundle) as archive:
        names = archive.namelist()
        files = {name: archive.read(name) for name in names}
    assert names[0] == "README.txt"
    assert "may identify a victim" in files["README.txt"].decode()
    manifest = json.loads(files["manifest.json"])
    assert manifest["head"] == head
    listed = {item["path"]: item["sha256"] for item in manifest["files"]}
    assert set(listed) == set(files) - {"manifest.json"}
    for path, digest in listed.items():
        assert hashlib.sha256(files[path]).hexdigest() == digest, path
    # The sent email, byte for byte as handed to the relay, hashing to its entry's payload hash.
    [eml] = [name for name in names if name.endswith("-email.sent.eml")]
    assert files[eml] == SENT
    lines = [json.loads(line) for line in files["ledger/entries.jsonl"].decode().splitlines()]
    by_seq = {line["seq"]: line for line in lines}
    assert by_seq[int(eml.split("/")[1].split("-")[0])]["payload_sha256"] == hashlib.sha256(SENT).hexdigest()
    # The chain recomputes, link by link, to the head the store had.
    for before, line in itertools.pairwise(lines):
        assert line["seq"] == before["seq"] + 1
        assert line["prev_hash"] == before["entry_hash"]
    for line in lines:
        assert _entry_hash(line) == line["entry_hash"], line["seq"]
    assert lines[-1]["entry_hash"] == head
    assert lines[-1]["involved"] is False  # the other case, after this one: there for the links only
    assert any(line["involved"] for line in lines)
    sla = json.loads(files["sla.json"])["requests"]
    assert [r["request_id"] for r in sla] == ["r0", "r1", "r2"]
    assert sla[0]["to_ack_s"] == 3599 and sla[0]["ack"] == "within"

    checked = await asyncio.to_thread(notifier, "evidence", "check", str(bundle), "--head", head)
    assert checked.returncode == 0, checked.stdout.decode()
    assert checked.stdout.decode().rstrip().endswith("intact")

    changed = tmp_path / "changed.zip"
    _rewrite(bundle, changed, eml)
    failed = await asyncio.to_thread(notifier, "evidence", "check", str(changed))
    assert failed.returncode == 1
    assert f"FAILS: {eml}: its SHA-256 is not the one in the manifest (changed)" in failed.stdout.decode()

    # An entry edited and the manifest made to match: the entry's own hash still gives it away.
    edited = files["ledger/entries.jsonl"].replace(b'"kind":"attempt"', b'"kind":"attempT"', 1)
    forged_manifest = dict(manifest)
    digest = hashlib.sha256(edited).hexdigest()
    forged_manifest["files"] = [
        item | {"sha256": digest} if item["path"] == "ledger/entries.jsonl" else item
        for item in manifest["files"]
    ]
    step = tmp_path / "step.zip"
    forged = tmp_path / "forged.zip"
    _rewrite(bundle, step, "ledger/entries.jsonl", edited)
    _rewrite(step, forged, "manifest.json", json.dumps(forged_manifest).encode())
    refused = await asyncio.to_thread(notifier, "evidence", "check", str(forged))
    assert refused.returncode == 1
    assert "does not hash to its entry_hash (changed)" in refused.stdout.decode()

    # The export itself is in the record (without content), and the record still verifies.
    verified = await asyncio.to_thread(notifier, "evidence", "verify", "--json", "-c", str(config))
    assert verified.returncode == 0, verified.stdout.decode()
    assert json.loads(verified.stdout)["head"]["seq"] == lines[-1]["seq"] + 1


async def test_export_names_an_unknown_id(tmp_path: Path) -> None:
    config, notice_id, _ = await _case(tmp_path)

    result = await asyncio.to_thread(
        notifier, "evidence", "export", notice_id, "nope-1", "-o", str(tmp_path / "b.zip"), "-c", str(config)
    )

    assert result.returncode == 1
    assert "no request or notice with id nope-1" in result.stderr.decode()
    assert not (tmp_path / "b.zip").exists()


async def test_purge_dry_run_then_purge_and_the_record_still_verifies(tmp_path: Path) -> None:
    # The case was recorded on 2 March 2026 with the default retention (180 days): past it now.
    config, notice_id, _ = await _case(tmp_path)

    dry = await asyncio.to_thread(notifier, "purge", "--dry-run", "-c", str(config))
    done = await asyncio.to_thread(notifier, "purge", "-c", str(config))
    verified = await asyncio.to_thread(notifier, "evidence", "verify", "-c", str(config))
    exported = await asyncio.to_thread(
        notifier, "evidence", "export", notice_id, "-o", str(tmp_path / "b.zip"), "-c", str(config)
    )

    assert dry.returncode == 0, dry.stderr.decode()
    assert "payloads would purge: 2 (oldest 2026-08-29" in dry.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()
    assert "payloads purged: 2" in done.stdout.decode()
    assert verified.returncode == 0, verified.stdout.decode()
    assert "2 not kept (purged past retention, or recorded without a key)" in verified.stdout.decode()
    assert verified.stdout.decode().rstrip().endswith("clean")
    assert exported.returncode == 0, exported.stderr.decode()
    assert "2 message(s) no longer kept: their hashes only" in exported.stdout.decode()
    checked = await asyncio.to_thread(notifier, "evidence", "check", str(tmp_path / "b.zip"))
    assert checked.returncode == 0, checked.stdout.decode()


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    server = await SmtpSink().start()
    try:
        yield server
    finally:
        await server.stop()


async def test_the_bundles_eml_is_what_the_smtp_server_received(
    tmp_path: Path, daemons: Daemons, sink: SmtpSink
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    platform = """
[platforms.telegram]
name = "Telegram"
channel = "email"
[platforms.telegram.email]
to = ["abuse@telegram.example"]
[platforms.telegram.batch]
max_items = 10
max_wait = "1s"
"""
    config = write_config(
        tmp_path,
        store_url=url,
        queue_url=f"sqlite:///{tmp_path / 'queue.db'}",
        http_listen="",
        extra=smtp_to(sink),
        platforms=platform,
    )
    request = {
        "request_id": "kcsc-2026-000001",
        "platform": "telegram",
        "urls": ["https://t.me/some_channel/1234"],
        "category": "deepfake_sexual_abuse",
        "explanation": "Synthetic imagery of an identifiable person.",
    }
    (tmp_path / "request.json").write_text(json.dumps(request), encoding="utf-8")
    submitted = await asyncio.to_thread(notifier, "submit", str(tmp_path / "request.json"), "-c", str(config))
    assert submitted.returncode == 0, submitted.stderr.decode()
    daemon = daemons.start(config, "daemon")

    async def delivered() -> bool:
        daemons.assert_alive(daemon)
        return bool(sink.received)

    await wait_for(delivered, within=60, what="the notice received by the SMTP server")
    daemon.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(daemon.wait, 60) == 0, daemons.tail(daemon)

    bundle = tmp_path / "case.zip"
    exported = await asyncio.to_thread(
        notifier, "evidence", "export", "kcsc-2026-000001", "-o", str(bundle), "-c", str(config)
    )
    assert exported.returncode == 0, exported.stderr.decode()
    with zipfile.ZipFile(bundle) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    [eml] = [name for name in files if name.endswith("-email.sent.eml")]
    [received] = sink.received
    assert files[eml] == received.data
    manifest = json.loads(files["manifest.json"])
    assert {item["path"]: item["sha256"] for item in manifest["files"]}[eml] == hashlib.sha256(
        received.data
    ).hexdigest()
    sla = json.loads(files["sla.json"])["requests"]
    assert sla[0]["request_id"] == "kcsc-2026-000001" and sla[0]["ack"] == "within"
