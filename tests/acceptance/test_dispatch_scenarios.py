"""Dispatch end to end: the daemon, on the simulated clock, against a real SMTP sink and platform API.

Each scenario of the dispatch issue: what the platform receives, outages of the SMTP server and of
the API, Retry-After, the fallback channel, a restart in the middle of a backoff, and the end of
the delivery window with the operations alert.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from notifier.app import Daemon
from notifier.clock import SimulatedClock
from notifier.domain.models import NoticeState
from notifier.domain.notices import AttemptOutcome, Notice
from notifier.sandbox.api import Answer, PlatformApi
from notifier.sandbox.smtp import SmtpSink
from notifier.settings import load_settings
from tests.acceptance.harness import status_json, write_config
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(180)

OPS = "ops@authority.example"


def request_body(request_id: str, platform: str) -> bytes:
    return json.dumps(
        {
            "request_id": request_id,
            "platform": platform,
            "urls": [
                f"https://{platform}.example/v/{request_id}",
                f"https://{platform}.example/m/{request_id}",
            ],
            "category": "deepfake_sexual_abuse",
            "legal_basis": "Act on the Korea Communications Commission, Art. 21(4)",
            "explanation": "Synthetic sexual imagery of an identifiable person made without consent.",
            "evidence": [{"sha256": "a" * 64}],
        }
    ).encode()


class World:
    """A sink, an API and the configuration of a daemon that sends to them."""

    def __init__(self, tmp_path: Path, sink: SmtpSink, api: PlatformApi) -> None:
        self.sink, self.api = sink, api
        database = tmp_path / "var" / "notifier.db"
        self.config = write_config(
            tmp_path,
            store_url=f"sqlite:///{database}",
            queue_url=f"sqlite:///{database}",
            http_listen="",
            runtime='grace = "5s"\nlease = "30s"\nin_call_retry_wait = "0.01"',
            extra=f"""
[smtp]
host = "127.0.0.1"
port = {sink.port}
starttls = "off"
from = "takedown@authority.example"
envelope_from = "bounces+{{notice_id}}@authority.example"

[sla]
deliver_within = "6h"
""",
            platforms=f"""
[platforms.telegram]
name = "Telegram"
channel = "email"
[platforms.telegram.email]
to = ["abuse@telegram.example"]
[platforms.telegram.batch]
max_items = 2
max_wait = "1m"

[platforms.videohost]
name = "VideoHost"
channel = "api"
fallback = "email"
[platforms.videohost.api]
url = "{api.url}"
[platforms.videohost.email]
to = ["legal@videohost.example"]
[platforms.videohost.batch]
max_items = 2
max_wait = "1m"
""",
        )
        self.clock = SimulatedClock()
        self.daemon: Daemon | None = None

    async def start(self) -> Daemon:
        self.daemon = Daemon(load_settings(self.config), clock=self.clock)
        await self.daemon.start()
        return self.daemon

    async def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
            assert await self.daemon.wait() == 0
            self.daemon = None

    async def submit(self, platform: str, *request_ids: str) -> None:
        assert self.daemon is not None and self.daemon.queue is not None
        await self.daemon.queue.publish("takedown.requests", [request_body(r, platform) for r in request_ids])

    async def notice_of(self, request_id: str) -> Notice:
        assert self.daemon is not None and self.daemon.store is not None
        store = self.daemon.store

        async def batched() -> bool:
            found = await store.get_requests([request_id])
            return bool(found) and found[0].notice_id is not None

        await wait_for(batched, within=30, what=f"{request_id} in a notice")
        (stored,) = await store.get_requests([request_id])
        assert stored.notice_id is not None
        (notice,) = await store.get_notices([stored.notice_id])
        return notice

    async def wait_state(self, notice_id: str, *states: NoticeState) -> Notice:
        assert self.daemon is not None and self.daemon.store is not None
        store = self.daemon.store

        async def reached() -> bool:
            (notice,) = await store.get_notices([notice_id])
            return notice.state in states

        await wait_for(reached, within=30, what=f"{notice_id} to reach {', '.join(states)}")
        (notice,) = await store.get_notices([notice_id])
        return notice

    async def advance_to(self, notice: Notice) -> None:
        """Move business time to the notice's next attempt and wake the dispatcher."""
        assert notice.next_attempt_at is not None and self.daemon is not None
        await self.clock.advance(max(timedelta(0), notice.next_attempt_at - self.clock.now()))
        self.daemon.dispatcher.kick()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    sink = await SmtpSink().start()
    api = await PlatformApi().start()
    w = World(tmp_path, sink, api)
    try:
        yield w
    finally:
        await w.stop()
        await api.stop()
        await sink.stop()


async def test_an_email_platform_receives_a_well_formed_notice(world: World) -> None:
    await world.start()
    await world.submit("telegram", "r-1", "r-2")
    notice = await world.wait_state((await world.notice_of("r-1")).notice_id, NoticeState.DELIVERED)
    (received,) = await world.sink.wait_for(1)
    message = received.message()

    assert f"[{notice.notice_id}]" in str(message["Subject"])
    assert message["Message-ID"] == notice.message_id
    assert received.sender == f"bounces+{notice.notice_id}@authority.example"
    assert received.recipients == ("abuse@telegram.example",)
    assert message["Auto-Submitted"] is None
    attachments = {part.get_filename(): part.get_content() for part in message.iter_attachments()}
    assert set(attachments) == {f"{notice.notice_id}.csv", f"{notice.notice_id}.json"}
    for request_id in ("r-1", "r-2"):
        for url in (f"https://telegram.example/v/{request_id}", f"https://telegram.example/m/{request_id}"):
            assert url in str(attachments[f"{notice.notice_id}.csv"])
            assert url in json.dumps(json.loads(attachments[f"{notice.notice_id}.json"]))
    await world.stop()

    document = status_json(world.config)
    assert document["notices"]["telegram"]["delivered"] == 1
    assert document["requests"]["telegram"]["delivered"] == 2


async def test_smtp_server_down_then_up_delivers_after_a_durable_retry(world: World) -> None:
    port = world.sink.port
    await world.sink.stop()
    await world.start()
    await world.submit("telegram", "r-1", "r-2")
    notice = await world.wait_state((await world.notice_of("r-1")).notice_id, NoticeState.RETRYING)
    assert [a.outcome for a in notice.attempts] == [AttemptOutcome.TRANSIENT_ERROR] * 3

    world.sink.port = port
    await world.sink.start()
    await world.advance_to(notice)
    notice = await world.wait_state(notice.notice_id, NoticeState.DELIVERED)
    assert len(await world.sink.wait_for(1)) == 1
    assert [a.outcome for a in notice.attempts][-1] is AttemptOutcome.DELIVERED


async def test_api_answering_503_five_times_then_200_delivers_with_its_ticket(world: World) -> None:
    world.api.script = [Answer(503)] * 5
    await world.start()
    await world.submit("videohost", "v-1", "v-2")
    notice = await world.wait_state((await world.notice_of("v-1")).notice_id, NoticeState.RETRYING)
    await world.advance_to(notice)
    notice = await world.wait_state(notice.notice_id, NoticeState.DELIVERED)

    assert [(a.outcome, a.code) for a in notice.attempts] == [(AttemptOutcome.TRANSIENT_ERROR, 503)] * 5 + [
        (AttemptOutcome.DELIVERED, 200)
    ]
    assert notice.ticket == "VH-1"
    assert notice.receipt_at == notice.delivered_at
    assert world.api.received[0].headers["Idempotency-Key"] == notice.notice_id


async def test_429_with_retry_after_is_honoured_before_the_next_try(world: World) -> None:
    world.api.script = [Answer(429, headers={"Retry-After": "2"})]
    await world.start()
    await world.submit("videohost", "v-1", "v-2")
    notice = await world.wait_state((await world.notice_of("v-1")).notice_id, NoticeState.DELIVERED)

    first, second = world.api.request_times[:2]
    assert second - first >= 1.95
    assert [a.code for a in notice.attempts] == [429, 200]


async def test_a_400_from_the_api_sends_the_same_notice_by_the_fallback_email(world: World) -> None:
    world.api.script = [Answer(400, body={"error": "bad notice"})]
    await world.start()
    await world.submit("videohost", "v-1", "v-2")
    notice = await world.wait_state((await world.notice_of("v-1")).notice_id, NoticeState.DELIVERED)

    assert notice.channel == "email"
    assert [(a.channel, a.outcome) for a in notice.attempts] == [
        ("api", AttemptOutcome.PERMANENT_ERROR),
        ("email", AttemptOutcome.DELIVERED),
    ]
    (received,) = await world.sink.wait_for(1)
    assert received.recipients == ("legal@videohost.example",)
    assert f"[{notice.notice_id}]" in str(received.message()["Subject"])


async def test_a_restart_in_the_middle_of_a_backoff_keeps_the_schedule(world: World) -> None:
    world.api.script = [Answer(503)] * 3
    await world.start()
    await world.submit("videohost", "v-1", "v-2")
    notice = await world.wait_state((await world.notice_of("v-1")).notice_id, NoticeState.RETRYING)
    await world.stop()

    await world.start()
    assert world.daemon is not None
    # Two full rounds of the restarted dispatcher: nothing is sent before the stored time.
    await world.daemon.dispatcher.form_notices()
    await world.daemon.dispatcher.send_due(world.daemon.supervisor.stop)
    await world.daemon.dispatcher.drain()
    assert world.api.requests == 3
    await world.advance_to(notice)
    notice = await world.wait_state(notice.notice_id, NoticeState.DELIVERED)
    assert world.api.requests == 4


async def test_retries_stop_at_deliver_within_then_fallback_then_failure_with_an_alert(world: World) -> None:
    world.api.script = [Answer(503)] * 10_000
    world.sink.faults.recipients["legal@videohost.example"] = (
        "550 5.1.1 <legal@videohost.example>: no such user"
    )
    await world.start()
    await world.submit("videohost", "v-1", "v-2")
    notice = await world.notice_of("v-1")
    deadline = notice.created_at + timedelta(hours=6)
    while True:
        notice = await world.wait_state(notice.notice_id, NoticeState.RETRYING, NoticeState.FAILED)
        if notice.state is NoticeState.FAILED:
            break
        await world.advance_to(notice)

    api_attempts = [a for a in notice.attempts if a.channel == "api"]
    assert all(a.outcome is AttemptOutcome.TRANSIENT_ERROR for a in api_attempts)
    assert max(a.at for a in api_attempts) <= deadline
    assert [a.outcome for a in notice.attempts if a.channel == "email"] == [AttemptOutcome.PERMANENT_ERROR]
    alert = (await world.sink.wait_for(1))[0]
    assert alert.recipients == (OPS,)
    text: Any = alert.message().get_body(preferencelist=("plain",))
    assert f"notifier retry {notice.notice_id}" in text.get_content()
