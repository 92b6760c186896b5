"""``notifier evidence verify`` and the report's ``ledger_head`` as an operator runs them, on a
SQLite store; and ``notifier run`` refusing to start without the evidence key."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from notifier.store import create_store
from notifier.store.evidence_writer import EvidenceOptions, parse_key
from notifier.store.tables import requests
from tests.acceptance.harness import REPO, notifier, write_config
from tests.evidence_key import TEST_EVIDENCE_KEY
from tests.integration.test_evidence_ledger import NOW, delivered_and_acked


async def test_verify_prints_the_head_and_names_a_request_whose_time_was_moved(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    config = write_config(tmp_path, store_url=url, queue_url=f"sqlite:///{tmp_path / 'queue.db'}")
    store = await create_store(url, evidence=EvidenceOptions(key=parse_key(TEST_EVIDENCE_KEY)))
    try:
        await delivered_and_acked(store)
        head = await store.ledger_head()
    finally:
        await store.close()

    clean = await asyncio.to_thread(notifier, "evidence", "verify", "-c", str(config))
    report = await asyncio.to_thread(notifier, "report", "--format", "json", "-c", str(config))

    assert clean.returncode == 0, clean.stderr.decode()
    assert f"head: {head.hash} (entry {head.seq})" in clean.stdout.decode()
    assert clean.stdout.decode().rstrip().endswith("clean")
    assert report.returncode == 0, report.stderr.decode()
    assert json.loads(report.stdout)["ledger_head"] == head.hash

    store = await create_store(url)
    try:
        async with store.engine.begin() as conn:
            await conn.execute(
                update(requests)
                .where(requests.c.request_id == "r1")
                .values(resolved_at=NOW + timedelta(days=1))
            )
    finally:
        await store.close()
    tampered = await asyncio.to_thread(notifier, "evidence", "verify", "--json", "-c", str(config))

    assert tampered.returncode == 1
    document = json.loads(tampered.stdout)
    assert document["clean"] is False
    assert document["chain"] is None
    assert document["states"] == [
        "request r1: resolved_at recorded None but stored 2026-03-03T09:00:00.000000+00:00"
    ]


def test_run_refuses_to_start_without_the_evidence_key(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        store_url=f"sqlite:///{tmp_path / 'store.db'}",
        queue_url=f"sqlite:///{tmp_path / 'queue.db'}",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}

    result = subprocess.run(
        [sys.executable, "-m", "notifier", "run", "-c", str(config)],
        capture_output=True,
        timeout=60,
        env=env,
        cwd=REPO,
        check=False,
    )

    assert result.returncode == 2
    message = result.stderr.decode()
    assert "evidence.key_env: environment variable NOTIFIER_EVIDENCE_KEY is not set" in message
    assert not (tmp_path / "store.db").exists()  # refused before anything was created


async def test_a_staff_acknowledgement_is_recorded_with_who_entered_it_and_replays_clean(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    config = write_config(tmp_path, store_url=url, queue_url=f"sqlite:///{tmp_path / 'queue.db'}")
    store = await create_store(url, evidence=EvidenceOptions(key=parse_key(TEST_EVIDENCE_KEY)))
    try:
        notice_id = await delivered_and_acked(store)
    finally:
        await store.close()

    acked = await asyncio.to_thread(
        notifier,
        "ack",
        notice_id,
        "--status",
        "removed",
        "--request-id",
        "r1",
        "--note",
        "by phone",
        "-c",
        str(config),
    )
    verified = await asyncio.to_thread(notifier, "evidence", "verify", "-c", str(config))

    assert acked.returncode == 0, acked.stderr.decode()
    assert verified.returncode == 0, verified.stdout.decode()
    store = await create_store(url)
    try:
        entries = await store.ledger_for_request("r1")
    finally:
        await store.close()
    staff = [e for e in entries if e.kind == "staff"]
    assert [e.facts["action"] for e in staff] == ["ack"]
    assert staff[0].facts["by"] == getpass.getuser()
    assert staff[0].facts["status"] == "removed"
    assert "by phone" not in staff[0].meta  # the note is kept with the acknowledgement, never in the record
    assert entries[-1].kind == "state"
