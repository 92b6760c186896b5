"""``notifier submit`` counts what it does not publish: copies repeated in its input, and requests the
store already holds unchanged. A changed request under a stored id is published, for the daemon to
record as a conflict."""

from __future__ import annotations

import io
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from notifier.cli_submit import submit_files
from notifier.domain.validation import parse_request
from notifier.intake.local import LocalQueue
from notifier.opening import open_store, vocabulary
from notifier.ports.intake import Incoming
from notifier.settings import load_settings
from notifier.settings.fields import sqlite_path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "requests.jsonl"


def _console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=200), buffer


async def _submit(settings, path: Path) -> str:  # type: ignore[no-untyped-def]
    out, printed = _console()
    err, _ = _console()
    assert await submit_files(settings, [str(path)], out=out, err=err) == 0
    return printed.getvalue()


async def _queued(settings) -> int:  # type: ignore[no-untyped-def]
    path = sqlite_path(settings.queue.resolved_url)
    assert path is not None
    queue = LocalQueue(path)
    await queue.connect()
    try:
        # Urgent requests go to a queue of their own: both are counted.
        total = 0
        for name in (settings.queue.requests, settings.queue.urgent_requests):
            total += len(await queue.receive(name, max_messages=100, wait=0))
        return total
    finally:
        await queue.close()


async def test_repeats_and_stored_requests_are_counted_not_published(tmp_path: Path) -> None:
    shutil.copytree(REPO / "config", tmp_path / "config")
    settings = load_settings(tmp_path / "config" / "notifier.toml")
    lines = EXAMPLES.read_bytes().splitlines()
    twice = tmp_path / "twice.jsonl"
    twice.write_bytes(b"\n".join(lines + lines) + b"\n")

    first = await _submit(settings, twice)
    assert f"published {len(lines)} request(s)" in first, first
    assert f"{len(lines)} repeated in the input, published once" in first, first

    # The daemon's intake stores them (done here directly, as its ingest does).
    store = await open_store(settings)
    try:
        words = vocabulary(settings)
        incoming = [Incoming(request=parse_request(line, words), source="test") for line in lines]
        await store.ingest(incoming, [], now=datetime(2026, 12, 7, tzinfo=UTC))
    finally:
        await store.close()

    changed = json.loads(lines[0])
    changed["explanation"] = "A corrected explanation."
    again = tmp_path / "again.jsonl"
    again.write_bytes(b"\n".join([json.dumps(changed).encode(), *lines[1:]]) + b"\n")
    second = await _submit(settings, again)
    assert "published 1 request(s)" in second, second
    assert f"{len(lines) - 1} already stored unchanged, not published again" in second, second
    assert await _queued(settings) == len(lines) + 1  # the first file's requests once, the change once
