"""``notifier submit``: validate request records and publish the valid ones to the intake queue."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from notifier.domain.models import Priority, TakedownRequest
from notifier.domain.validation import parse_request
from notifier.errors import ConfigError, InvalidRequest
from notifier.intake.records import Record, read_records
from notifier.opening import open_store, vocabulary
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
    valid: list[tuple[TakedownRequest, bytes]] = []
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
        valid.append((request, record.body))

    publish, repeated, stored = await _new_ones(settings, valid)
    # Urgent requests go to their own queue, which the daemon takes ahead of the main one.
    urgent: list[bytes] = []
    normal: list[bytes] = []
    for request, body in publish:
        is_urgent = request.priority is Priority.URGENT or request.deadline in urgent_profiles
        (urgent if is_urgent else normal).append(body)
    from notifier.wiring import create_queue

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
            task = progress.add_task("publish", total=len(publish))
            for name, bodies in ((settings.queue.urgent_requests, urgent), (settings.queue.requests, normal)):
                for start in range(0, len(bodies), PUBLISH_CHUNK):
                    chunk = bodies[start : start + PUBLISH_CHUNK]
                    await queue.publish(name, chunk)
                    progress.advance(task, len(chunk))
    finally:
        await queue.close()

    summary = _summary(settings, len(publish), len(urgent), repeated=repeated, stored=stored, invalid=invalid)
    out.print(summary, markup=False)
    return invalid


def _summary(
    settings: Settings, published: int, urgent: int, *, repeated: int, stored: int, invalid: int
) -> str:
    summary = f"published {published} request(s) to {settings.queue.requests}"
    if urgent:
        summary += f" ({urgent} urgent, to {settings.queue.urgent_requests})"
    if repeated:
        summary += f"; {repeated} repeated in the input, published once"
    if stored:
        summary += f"; {stored} already stored unchanged, not published again"
    if invalid:
        summary += f"; {invalid} invalid, not published"
    return summary


async def _new_ones(
    settings: Settings, valid: list[tuple[TakedownRequest, bytes]]
) -> tuple[list[tuple[TakedownRequest, bytes]], int, int]:
    """The bodies worth publishing, the count of copies repeated in the input and the count already
    stored with the same content. A request whose id is stored with *different* content is published:
    the daemon keeps the first and records the new one as a conflict, so that it is not lost."""
    first: dict[tuple[str, str], tuple[TakedownRequest, bytes]] = {}
    for request, body in valid:
        first.setdefault((request.request_id, request.content_hash()), (request, body))
    repeated = len(valid) - len(first)
    try:
        store = await open_store(settings, existing=True)
    except ConfigError:  # nothing has run with this configuration yet: nothing can be stored
        return list(first.values()), repeated, 0
    try:
        found = await store.get_requests([request_id for request_id, _ in first])
    finally:
        await store.close()
    stored = {(s.request.request_id, s.request.content_hash()) for s in found}
    publish = [pair for key, pair in first.items() if key not in stored]
    return publish, repeated, len(first) - len(publish)
