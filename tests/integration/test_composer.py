"""Notices composed in a worker process (``runtime.compose_processes``): the same email as one
composed in the daemon's own process, sent to a real SMTP server as the bytes the evidence record
keeps; a worker killed mid-run costs nothing; a composition's error reaches the caller."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import sys
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from notifier.channels.composer import Composer, EmailJob, compose
from notifier.channels.rendering import Renderer
from notifier.domain.notices import NoticeContent
from tests.integration.test_email_channel import (
    FROM,
    NOTICE_ID,
    TO,
    LoopbackController,
    Sink,
    make_channel,
    make_content,
    renderer,
    server,
    sink,
    transport,
)
from tests.waiting import wait_for

__all__ = ["renderer", "server", "sink", "transport"]  # the email channel's fixtures, used here


def job_for(content: NoticeContent, *, to: tuple[str, ...] = (TO,)) -> EmailJob:
    return EmailJob(
        content=content,
        from_addr=FROM,
        reply_to=None,
        to=to,
        cc=(),
        message_id=f"<{content.notice_id}.notice@authority.example>",
        in_reply_to=None,
        date=None,
        sender=f"bounces+{content.notice_id}@authority.example",
        recipients=to,
    )


def parsed(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def parts(message: EmailMessage) -> list[tuple[str, bytes]]:
    """Each leaf part's type and decoded bytes, in order (boundaries are random per email)."""
    leaves = []
    for part in message.walk():
        if not part.is_multipart():
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            leaves.append((part.get_content_type(), payload))
    return leaves


@pytest.fixture
async def composer(renderer: Renderer) -> AsyncIterator[Composer]:
    composer = Composer(renderer, processes=1)
    await composer.start()
    try:
        yield composer
    finally:
        composer.close()


async def test_a_worker_composes_the_email_the_daemon_would(composer: Composer, renderer: Renderer) -> None:
    job = job_for(make_content())
    in_worker = await composer.compose(job)
    here = compose(job, renderer)
    assert isinstance(in_worker, bytes)
    assert isinstance(here, bytes)
    worker_message, message = parsed(in_worker), parsed(here)
    assert worker_message.items() == [
        (name, value if name != "Content-Type" else worker_message[name]) for name, value in message.items()
    ]
    assert parts(worker_message) == parts(message)
    assert [t for t, _ in parts(message)] == ["text/plain", "text/html", "text/csv", "application/json"]


async def test_an_internationalised_recipient_comes_back_as_the_message(composer: Composer) -> None:
    composed = await composer.compose(job_for(make_content(), to=("abuse@플랫폼.example",)))
    assert isinstance(composed, EmailMessage)  # the SMTP session flattens it with SMTPUTF8
    assert composed["X-Notifier-Notice-Id"] == NOTICE_ID


async def test_a_composition_error_reaches_the_caller(composer: Composer) -> None:
    with pytest.raises(ValueError):
        await composer.compose(job_for(make_content(), to=("not an address",)))


async def test_a_worker_killed_costs_a_composition_in_a_thread_then_a_new_worker(composer: Composer) -> None:
    job = job_for(make_content())
    first = await composer.compose(job)
    workers = list(composer.worker_pids())
    assert len(workers) == 1
    os.kill(workers[0], 9)
    await wait_for(lambda: _gone(workers), within=10, what="the worker to die")
    with capture_logs() as logs:
        again = await composer.compose(job)
    assert parts(parsed(_bytes(again))) == parts(parsed(_bytes(first)))
    assert [e["event"] for e in logs] == ["compose.worker_lost"]
    after = await composer.compose(job)  # a new pool, a new worker
    assert parts(parsed(_bytes(after))) == parts(parsed(_bytes(first)))
    assert list(composer.worker_pids()) not in ([], workers)


async def test_closing_stops_the_workers(renderer: Renderer) -> None:
    composer = Composer(renderer, processes=2)
    await composer.start()
    workers = list(composer.worker_pids())
    assert len(workers) == 2
    composer.close()
    await wait_for(lambda: _gone(workers), within=10, what="the workers to stop")
    assert composer.worker_pids() == []


_DAEMON_LIKE = """
import asyncio, sys
from notifier.channels.composer import Composer
from notifier.channels.rendering import Renderer, default_templates_dir

async def main():
    composer = Composer(Renderer(default_templates_dir()), processes=1)
    await composer.start()
    print(*composer.worker_pids(), flush=True)
    await asyncio.sleep(120)

if __name__ == "__main__":
    asyncio.run(main())
"""


async def test_a_worker_ends_when_the_daemon_is_killed(tmp_path: Path) -> None:
    """kill -9 of the daemon leaves no composing process behind, waiting for work forever."""
    program = tmp_path / "daemon_like.py"
    program.write_text(_DAEMON_LIKE)
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(program), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
        worker = int(line)
        assert _alive(worker)
    finally:
        process.kill()
        await process.wait()
    await wait_for(lambda: _gone([worker]), within=10, what="the worker to end with its daemon")


async def test_an_email_channel_sends_what_its_worker_composed(
    server: LoopbackController, sink: Sink, transport: object, composer: Composer, renderer: Renderer
) -> None:
    channel = make_channel(transport, renderer, composer=composer)  # type: ignore[arg-type]
    result = await channel.send(make_content())
    [received] = sink.received
    [sent] = result.evidence
    assert sent.payload == received.data  # the bytes kept are the bytes the server took
    assert parts(received.parsed())[0][0] == "text/plain"


async def _gone(pids: list[int]) -> bool:
    return not any(_alive(pid) for pid in pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie until the pool reaps it: gone for every purpose here.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def _bytes(composed: bytes | EmailMessage) -> bytes:
    assert isinstance(composed, bytes)
    return composed


_MAIN_THAT_COUNTS = """
import asyncio, os, sys
with open(os.environ["NOTIFIER_TEST_RUNS"], "a") as runs:
    runs.write(__name__ + "\\n")  # this module, run as the main one or again in a worker
from notifier.channels.composer import Composer, compose
from notifier.channels.rendering import Renderer, default_templates_dir
from tests.integration.test_composer import job_for, parsed, parts
from tests.integration.test_email_channel import make_content

async def main():
    renderer = Renderer(default_templates_dir())
    composer = Composer(renderer, processes=2)
    await composer.start()
    job = job_for(make_content())
    composed = await composer.compose(job)
    print(parts(parsed(composed)) == parts(parsed(compose(job, renderer))), flush=True)
    composer.close()

if __name__ == "__main__":
    asyncio.run(main())
"""


async def test_workers_do_not_run_the_main_module_again(tmp_path: Path) -> None:
    """Under the console script the main module imports the whole CLI; a worker needs none of it."""
    program, runs = tmp_path / "main_that_counts.py", tmp_path / "runs"
    program.write_text(_MAIN_THAT_COUNTS)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(program),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "NOTIFIER_TEST_RUNS": str(runs), "PYTHONPATH": str(Path.cwd())},
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0
    assert stdout.split() == [b"True"]  # the workers composed the same email
    assert runs.read_text().split() == ["__main__"]  # and ran the main module not once
