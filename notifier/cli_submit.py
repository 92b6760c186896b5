"""``notifier submit``: validate request records and publish the valid ones to the intake queue."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from notifier.app import create_queue, vocabulary
from notifier.domain.models import Priority
from notifier.domain.validation import parse_request
from notifier.errors import InvalidRequest
from notifier.intake.records import Record, read_records
from notifier.settings import Settings

PUBLISH_CHUNK = 1000
PROGRESS_FROM = 1000  # records; smaller submissions finish before a bar would help


def _read(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    return Path(name).read_bytes()


async def submit_files(settings: Settings, names: list[str], *, out: Console, err: Console) -> int:
    """Publish every valid record; print each invalid one with its position. Returns the invalid count."""
    records: list[Record] = []
    for name in names:
        label = "<stdin>" if name == "-" else name
        try:
            data = _read(name)
        except OSError as error:
            err.print(f"{label}: cannot be read ({error.strerror or error})", markup=False)
            records.append(Record(position=label, body=None, error="file cannot be read"))
            continue
        records.extend(read_records(data, label))

    words = vocabulary(settings)
    urgent_profiles = {name for name, profile in settings.deadlines.items() if profile.urgent}
    valid: list[bytes] = []
    urgent: list[bytes] = []
    invalid = 0
    for record in records:
        if record.body is None:
            invalid += 1
            if record.error != "file cannot be read":
                err.print(f"{record.position}: {record.error}", markup=False)
            continue
        try:
            request = parse_request(record.body, words)
        except InvalidRequest as error:
            invalid += 1
            err.print(f"{record.position}: {error.reason}", markup=False)
            continue
        # Urgent requests go to their own queue, which the daemon takes ahead of the main one.
        (
            urgent if request.priority is Priority.URGENT or request.deadline in urgent_profiles else valid
        ).append(record.body)

    queue = create_queue(settings)
    await queue.connect()
    try:
        with Progress(
            TextColumn("publishing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=len(valid) < PROGRESS_FROM or not err.is_terminal,
            transient=True,
        ) as progress:
            task = progress.add_task("publish", total=len(valid) + len(urgent))
            for name, bodies in ((settings.queue.urgent_requests, urgent), (settings.queue.requests, valid)):
                for start in range(0, len(bodies), PUBLISH_CHUNK):
                    chunk = bodies[start : start + PUBLISH_CHUNK]
                    await queue.publish(name, chunk)
                    progress.advance(task, len(chunk))
    finally:
        await queue.close()

    summary = f"published {len(valid) + len(urgent)} request(s) to {settings.queue.requests}"
    if urgent:
        summary += f" ({len(urgent)} urgent, to {settings.queue.urgent_requests})"
    if invalid:
        summary += f"; {invalid} invalid, not published"
    err.print(summary, markup=False)
    return invalid
