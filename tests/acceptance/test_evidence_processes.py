"""The evidence record with real daemon processes (SPEC §15): two ``notifier run`` processes on one
PostgreSQL store take 2,000 requests in and send them, each killed with SIGKILL mid-send and
started again. The ledger is one chain without gaps, ``notifier evidence verify`` finds it clean,
and every delivered notice's bytes in the record are exactly what the SMTP server received."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from notifier.domain.evidence import EvidenceKind
from notifier.sandbox.smtp import Received, SmtpSink
from notifier.settings import load_settings
from notifier.store import create_store
from notifier.store.evidence_tables import ledger
from notifier.store.evidence_writer import EvidenceOptions, parse_key
from notifier.wiring import create_queue
from tests.acceptance.conftest import Shared
from tests.acceptance.dataset import valid_request
from tests.acceptance.harness import Daemons, notifier, write_config
from tests.acceptance.test_dispatch_processes import notice_id_of, smtp_to
from tests.evidence_key import TEST_EVIDENCE_KEY
from tests.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TOTAL = 2_000
PLATFORMS = ("mail_a", "mail_b")


def platforms_toml() -> str:
    return "\n".join(
        f"""
[platforms.{p}]
name = "{p}"
channel = "email"
[platforms.{p}.email]
to = ["abuse@{p.replace("_", "-")}.example"]
[platforms.{p}.batch]
max_items = 10
max_wait = "1s"
"""
        for p in PLATFORMS
    )


@dataclass
class KillAt:
    """A sink listener that kills a daemon with SIGKILL while the sink holds the DATA of the
    ``at``-th message: the server has it, the daemon never hears that it was taken."""

    at: int
    daemon: subprocess.Popen[bytes] | None = None
    seen: int = 0
    killed: bool = False

    async def done(self) -> bool:
        return self.killed

    def __call__(self, received: Received) -> None:
        self.seen += 1
        if self.daemon is not None and not self.killed and self.seen >= self.at:
            self.daemon.send_signal(signal.SIGKILL)
            self.killed = True


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    server = await SmtpSink().start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.mark.postgres
@pytest.mark.rabbitmq
async def test_two_killed_and_restarted_daemons_keep_one_clean_chain_with_the_exact_bytes_sent(
    tmp_path: Path, daemons: Daemons, sink: SmtpSink, shared: Shared
) -> None:
    config = write_config(
        tmp_path,
        store_url=shared.store_url,
        queue_url=shared.amqp_url,
        requests_queue=shared.queue,
        acks_queue=f"{shared.queue}.acks",
        http_listen="",
        # A short lease: what a killed daemon held is sent again by the other soon after.
        runtime='grace = "5s"\nlease = "2s"\nin_call_retry_wait = "0.05s"',
        extra=smtp_to(sink),
        platforms=platforms_toml(),
    )
    rng = random.Random(15)
    bodies = [
        json.dumps(valid_request(rng, i) | {"platform": PLATFORMS[i % len(PLATFORMS)]}).encode()
        for i in range(TOTAL)
    ]
    queue = create_queue(load_settings(config))
    await queue.connect()
    try:
        await queue.publish(shared.queue, bodies)
    finally:
        await queue.close()

    first_kill, second_kill = KillAt(at=40), KillAt(at=110)
    sink.listeners += [first_kill, second_kill]
    store = await create_store(shared.store_url, evidence=EvidenceOptions(key=parse_key(TEST_EVIDENCE_KEY)))
    try:
        one, two = daemons.start(config, "daemon-1"), daemons.start(config, "daemon-2")
        first_kill.daemon = one
        await wait_for(first_kill.done, within=120, what="the first daemon killed mid-send")
        assert await asyncio.to_thread(one.wait, 30) == -signal.SIGKILL
        one = daemons.start(config, "daemon-1-again")
        second_kill.daemon = two
        await wait_for(second_kill.done, within=120, what="the second daemon killed mid-send")
        assert await asyncio.to_thread(two.wait, 30) == -signal.SIGKILL
        two = daemons.start(config, "daemon-2-again")

        async def all_delivered() -> bool:
            daemons.assert_alive(one, two)
            counts = await store.status_counts()
            return sum(states.get("delivered", 0) for states in counts.requests.values()) == TOTAL

        await wait_for(all_delivered, within=180, what=f"{TOTAL} requests delivered", interval=0.5)
        for daemon in (one, two):
            daemon.send_signal(signal.SIGTERM)
        for daemon in (one, two):
            assert await asyncio.to_thread(daemon.wait, 60) == 0, daemons.tail(daemon)

        head = await store.ledger_head()
        async with store.engine.connect() as conn:
            count, lowest, highest = (
                await conn.execute(select(func.count(), func.min(ledger.c.seq), func.max(ledger.c.seq)))
            ).one()
        recorded: dict[str, list[bytes]] = defaultdict(list)
        async for entry in store.iter_ledger():
            if entry.kind == EvidenceKind.EMAIL_SENT and entry.payload_sha256 is not None:
                payload = await store.evidence_payload(entry.payload_sha256)
                assert payload is not None, f"entry {entry.seq}: its payload is not kept"
                assert entry.notice_id is not None
                recorded[entry.notice_id].append(payload)
        delivered = [n for n in await store.get_notices(list(recorded)) if n.delivered_at is not None]
    finally:
        await store.close()

    # One chain, no gaps, no forks: numbered 1..head, and verify walks it to the head, clean.
    assert (count, lowest, highest) == (head.seq, 1, head.seq)
    verified = await asyncio.to_thread(notifier, "evidence", "verify", "--json", "-c", str(config))
    assert verified.returncode == 0, verified.stdout.decode() + verified.stderr.decode()
    document = json.loads(verified.stdout)
    assert document["clean"] and document["head"]["hash"] == head.hash
    assert document["payloads_checked"] >= len(delivered)

    # Every delivered notice: the bytes recorded with its delivery are a message the sink took,
    # byte for byte (a notice sent by a killed daemon was taken, unrecorded, and sent again).
    received: dict[str, list[bytes]] = defaultdict(list)
    for message in sink.received:
        received[notice_id_of(message)].append(message.data)
    assert len(delivered) == len(received) >= TOTAL // 10
    for notice in delivered:
        [sent] = recorded[notice.notice_id]
        assert sent in received[notice.notice_id], f"{notice.notice_id}: recorded bytes were not received"
    once = [n.notice_id for n in delivered if len(received[n.notice_id]) == 1]
    assert len(once) >= len(delivered) - 10
    assert all(recorded[i] == received[i] for i in once)
