"""Dispatch with real daemon processes (SPEC §6.4, §12): kill -9 mid-send, two daemons sharing a store.

* A daemon killed with SIGKILL after the SMTP server has a notice's DATA but before the daemon hears
  the reply has sent the notice without recording it. Its lease runs out and another process sends
  the same notice again: one duplicate per kill, each with the same notice id and Message-ID.
* Two ``notifier run`` processes on one PostgreSQL store and one RabbitMQ queue deliver 10,000
  requests over five platforms: every request in exactly one notice, every notice received once,
  batches within their bounds, and the rate limit of one platform shared by both processes.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from notifier.domain.models import NoticeState
from notifier.domain.notices import AttemptOutcome, Notice
from notifier.sandbox.api import PlatformApi
from notifier.sandbox.smtp import Received, SmtpSink
from notifier.settings import load_settings
from notifier.store import SqlStore, create_store
from notifier.store.tables import notices as notices_table
from notifier.store.tables import requests as requests_table
from notifier.wiring import create_queue
from tests.acceptance.conftest import Shared
from tests.acceptance.dataset import valid_request
from tests.acceptance.harness import Daemons, status_json, write_config
from tests.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

NOTICE_IN_SUBJECT = re.compile(r"\[(TD-[a-z0-9_]+-\d{8}-\d{6,})\]")


def notice_id_of(received: Received) -> str:
    match = NOTICE_IN_SUBJECT.search(str(received.message()["Subject"]))
    assert match is not None, f"no [notice_id] in the subject of a message to {received.recipients}"
    return match.group(1)


def smtp_to(sink: SmtpSink) -> str:
    return f"""
[smtp]
host = "127.0.0.1"
port = {sink.port}
starttls = "off"
"""


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    server = await SmtpSink().start()
    try:
        yield server
    finally:
        await server.stop()


async def exit_code(process: subprocess.Popen[bytes], within: float = 60) -> int:
    return await asyncio.to_thread(process.wait, within)


# -- kill -9 between the server's acceptance and the commit ---------------------------------------


@dataclass(frozen=True, slots=True)
class Kill:
    notice_id: str
    pid: int


@dataclass(frozen=True, slots=True)
class Lease:
    state: str
    owner_pid: int
    until: float  # the store's clock: seconds since the epoch


class KillOnReceipt:
    """A sink listener that kills the sending daemon with SIGKILL while the sink holds a notice's DATA.

    The sink calls its listeners before it answers ``250``: the server has the message, and the
    daemon dies without hearing that it was accepted, so it can never have recorded the delivery.
    The first kill picks the notice; later kills wait for that notice to be sent again.
    """

    def __init__(self) -> None:
        self.daemon: subprocess.Popen[bytes] | None = None
        self.target: str | None = None
        self.kills: list[Kill] = []

    def __call__(self, received: Received) -> None:
        daemon = self.daemon
        if daemon is None:
            return
        notice_id = notice_id_of(received)
        if self.target is not None and notice_id != self.target:
            return
        daemon.send_signal(signal.SIGKILL)
        self.daemon = None
        self.target = notice_id
        self.kills.append(Kill(notice_id=notice_id, pid=daemon.pid))


async def lease_of(store: SqlStore, notice_id: str) -> Lease:
    stmt = select(notices_table.c.state, notices_table.c.lease_owner, notices_table.c.lease_until).where(
        notices_table.c.notice_id == notice_id
    )
    async with store.engine.connect() as conn:
        state, owner, until = (await conn.execute(stmt)).one()
    # The owner is "host:pid:random" (notifier.services.dispatcher.process_owner).
    return Lease(state=state, owner_pid=int(str(owner).split(":")[1]), until=float(until))


KILL_PLATFORM = """
[platforms.telegram]
name = "Telegram"
channel = "email"
[platforms.telegram.email]
to = ["abuse@telegram.example"]
[platforms.telegram.batch]
max_items = 3
max_wait = "1s"
"""


def kill_request(request_id: str) -> bytes:
    return json.dumps(
        {
            "request_id": request_id,
            "platform": "telegram",
            "urls": [f"https://t.me/c/{request_id}"],
            "category": "deepfake_sexual_abuse",
            "legal_basis": "Act on the Korea Communications Commission, Art. 21(4)",
            "explanation": "Synthetic sexual imagery of an identifiable person made without consent.",
            "evidence": [{"sha256": "b" * 64}],
        }
    ).encode()


async def test_kill_9_after_the_smtp_server_accepted_resends_the_same_notice_once_per_kill(
    tmp_path: Path, daemons: Daemons, sink: SmtpSink
) -> None:
    database = tmp_path / "var" / "notifier.db"
    url = f"sqlite:///{database}"
    # Two configurations of the same store: the notice a killed daemon held is taken over by another
    # daemon (its own config file and log), and then by the first configuration restarted.
    # One send at a time, so each kill leaves exactly one notice sent but unrecorded.
    first, second = (
        write_config(
            tmp_path / name,
            store_url=url,
            queue_url=url,
            http_listen="",
            runtime='grace = "5s"\nlease = "2s"\nsend_concurrency = 1\nin_call_retry_wait = "0.05s"',
            extra=smtp_to(sink),
            platforms=KILL_PLATFORM,
        )
        for name in ("first", "second")
    )
    request_ids = [f"kill-{i}" for i in range(9)]
    queue = create_queue(load_settings(first))
    await queue.connect()
    try:
        await queue.publish("takedown.requests", [kill_request(r) for r in request_ids])
    finally:
        await queue.close()

    arrivals: list[tuple[float, str]] = []  # (wall clock, notice id) of every message the sink took
    sink.listeners.append(lambda received: arrivals.append((time.time(), notice_id_of(received))))
    killer = KillOnReceipt()
    sink.listeners.append(killer)
    store = await create_store(url)
    try:
        leases: list[Lease] = []
        for round_, config in enumerate((first, second)):
            daemon = killer.daemon = daemons.start(config, f"daemon-{round_}")

            async def killed(kills: int = round_ + 1, daemon: subprocess.Popen[bytes] = daemon) -> bool:
                if len(killer.kills) < kills:
                    daemons.assert_alive(daemon)
                return len(killer.kills) >= kills

            await wait_for(killed, within=60, what=f"kill {round_ + 1} on the notice's DATA")
            assert await exit_code(daemon) == -signal.SIGKILL
            assert killer.target is not None
            lease = await lease_of(store, killer.target)
            # Sent, never recorded: still claimed by the dead process.
            assert (lease.state, lease.owner_pid) == ("sending", daemon.pid)
            leases.append(lease)

        last = daemons.start(first, "daemon-2")

        async def all_delivered() -> bool:
            daemons.assert_alive(last)
            counts = await store.status_counts()
            return counts.requests.get("telegram", {}).get("delivered", 0) == len(request_ids)

        await wait_for(all_delivered, within=60, what="every request delivered")
        last.send_signal(signal.SIGTERM)
        assert await exit_code(last) == 0, daemons.tail(last)

        target = killer.target
        assert target is not None
        assert [k.notice_id for k in killer.kills] == [target, target]
        stored = await store.get_requests(request_ids)
        notice_ids = sorted({s.notice_id for s in stored if s.notice_id is not None})
        notices = await store.get_notices(notice_ids)
    finally:
        await store.close()

    # Every request in exactly one notice, every notice delivered.
    assert len(stored) == len(request_ids) and all(s.notice_id is not None for s in stored)
    members = [r for n in notices for r in n.request_ids]
    assert sorted(members) == sorted(request_ids)
    assert {n.state for n in notices} == {NoticeState.DELIVERED}

    # The killed notice: once per kill and once more, always the same message.
    copies = [r for r in sink.received if notice_id_of(r) == target]
    assert len(copies) == len(killer.kills) + 1
    (notice,) = [n for n in notices if n.notice_id == target]
    messages = [c.message() for c in copies]
    assert {str(m["Subject"]) for m in messages} == {str(messages[0]["Subject"])}
    assert f"[{target}]" in str(messages[0]["Subject"])
    assert {m["Message-ID"] for m in messages} == {notice.message_id}
    attachments = [{p.get_filename(): p.get_content() for p in m.iter_attachments()} for m in messages]
    # The same requests and URLs every time; only the deadlines are restated, from each send's own
    # moment, since the one that counts is the send the platform took last.
    assert all(a[f"{target}.csv"] == attachments[0][f"{target}.csv"] for a in attachments)
    reports = [_without_deadlines(a[f"{target}.json"]) for a in attachments]
    assert all(r == reports[0] for r in reports), "a re-send changed the notice's content"
    # The killed sends left no attempt behind; the one recorded is the delivery by the last daemon.
    assert [a.outcome for a in notice.attempts] == [AttemptOutcome.DELIVERED]
    assert [e["notice_id"] for e in daemons.events("notice.delivered", last)].count(target) == 1

    # Taken over only once the dead process's lease had run out (by the store's clock).
    resent_at = [at for at, notice_id in arrivals if notice_id == target][1:]
    for lease, at in zip(leases, resent_at, strict=True):
        assert at >= lease.until - 0.01, f"re-sent {lease.until - at:.3f}s before the lease ran out"

    # Every other notice arrived once: the duplicates are exactly the kills.
    per_notice = Counter(notice_id_of(r) for r in sink.received)
    duplicates = len(killer.kills)
    assert per_notice == {n.notice_id: 1 + (duplicates if n.notice_id == target else 0) for n in notices}

    document = status_json(first)
    assert document["requests"]["telegram"]["delivered"] == len(request_ids)
    assert document["notices"]["telegram"]["delivered"] == len(notices)
    assert sum(document["notices"]["telegram"].values()) == len(notices)


# -- two daemons, one PostgreSQL store, one RabbitMQ queue -----------------------------------------

TOTAL = 10_000


@dataclass(frozen=True, slots=True)
class PlatformPlan:
    id: str
    channel: str  # "email" or "api"
    max_items: int
    rate_per_minute: int = 0

    @property
    def address(self) -> str:
        return f"abuse@{self.id.replace('_', '-')}.example"


# The rate-limited platform forms at least 2,000 / 10 = 200 notices against a burst of 150: at
# least 50 of them wait for the bucket, 2.5 a second (20 s or more).
PLANS = (
    PlatformPlan("mail_a", "email", 50),
    PlatformPlan("mail_b", "email", 50),
    PlatformPlan("mail_c", "email", 10, rate_per_minute=150),
    PlatformPlan("api_a", "api", 50),
    PlatformPlan("api_b", "api", 50),
)
RATE_LIMITED = PLANS[2]


def platforms_toml(apis: dict[str, PlatformApi]) -> str:
    sections = []
    for plan in PLANS:
        section = f"""
[platforms.{plan.id}]
name = "{plan.id}"
channel = "{plan.channel}"
rate_per_minute = {plan.rate_per_minute}
[platforms.{plan.id}.batch]
max_items = {plan.max_items}
max_wait = "1s"
"""
        if plan.channel == "email":
            section += f'[platforms.{plan.id}.email]\nto = ["{plan.address}"]\n'
        else:
            section += f'[platforms.{plan.id}.api]\nurl = "{apis[plan.id].url}"\n'
        sections.append(section)
    return "\n".join(sections)


def ten_thousand_requests() -> tuple[list[bytes], dict[str, str]]:
    """The bodies, and each request's platform."""
    rng = random.Random(64)
    bodies, platform_of = [], {}
    for index in range(TOTAL):
        request = valid_request(rng, index) | {"platform": PLANS[index % len(PLANS)].id}
        bodies.append(json.dumps(request).encode())
        platform_of[str(request["request_id"])] = str(request["platform"])
    return bodies, platform_of


def assert_within_token_bucket(times: list[float], *, burst: int, per_second: float, slack: float) -> None:
    """No window of sends holds more than a full bucket plus what refills during the window.

    ``slack`` seconds cover the gap between taking a token and the timestamp of the send.
    """
    times = sorted(times)
    for i, start in enumerate(times):
        for j in range(i, len(times)):
            sent = j - i + 1
            allowed = burst + per_second * (times[j] - start + slack)
            assert sent <= allowed, (
                f"{sent} sends in {times[j] - start:.2f}s from send {i}: the bucket allows {allowed:.1f}"
            )


@pytest.mark.postgres
@pytest.mark.rabbitmq
async def test_two_daemons_on_postgresql_and_rabbitmq_deliver_10000_requests_each_in_one_notice_once(
    tmp_path: Path, daemons: Daemons, sink: SmtpSink, shared: Shared
) -> None:
    apis = {p.id: await PlatformApi(ticket_prefix=p.id).start() for p in PLANS if p.channel == "api"}
    try:
        config = write_config(
            tmp_path,
            store_url=shared.store_url,
            queue_url=shared.amqp_url,
            requests_queue=shared.queue,
            acks_queue=f"{shared.queue}.acks",
            http_listen="",
            # A lease far longer than any wait for a rate-limit token here (about 20 s at most): no
            # lease expires, so no duplicate delivery is excused.
            runtime='grace = "10s"\nlease = "2m"\nin_call_retry_wait = "0.05s"',
            extra=smtp_to(sink),
            platforms=platforms_toml(apis),
        )
        bodies, platform_of = ten_thousand_requests()
        queue = create_queue(load_settings(config))
        await queue.connect()
        try:
            await queue.publish(shared.queue, bodies)
        finally:
            await queue.close()

        store = await create_store(shared.store_url)
        try:
            started = time.monotonic()
            pair = [daemons.start(config, f"daemon-{n}") for n in (1, 2)]

            async def all_delivered() -> bool:
                daemons.assert_alive(*pair)
                counts = await store.status_counts()
                return sum(states.get("delivered", 0) for states in counts.requests.values()) == TOTAL

            await wait_for(all_delivered, within=180, what=f"{TOTAL} requests delivered", interval=0.5)
            elapsed = time.monotonic() - started
            for daemon in pair:
                daemon.send_signal(signal.SIGTERM)
            for daemon in pair:
                assert await exit_code(daemon) == 0, daemons.tail(daemon)
            counts = await store.status_counts()
            async with store.engine.connect() as conn:
                columns = requests_table.c
                request_rows = (await conn.execute(select(columns.request_id, columns.notice_id))).all()
                notice_ids = (await conn.execute(select(notices_table.c.notice_id))).scalars().all()
            notices = await store.get_notices(notice_ids)
        finally:
            await store.close()
        print(f"{TOTAL} requests, {len(notices)} notices delivered by two daemons in {elapsed:.1f}s")
    finally:
        for api in apis.values():
            await api.stop()

    # Nothing else happened to the requests: all delivered, none dead-lettered.
    assert counts.dead_letters_total == 0
    assert counts.requests == {p.id: {"delivered": TOTAL // len(PLANS)} for p in PLANS}
    assert counts.notices == {p.id: {"delivered": sum(n.platform == p.id for n in notices)} for p in PLANS}

    # Every request has exactly one notice, of its own platform; the notices partition the requests.
    assert len(request_rows) == TOTAL and {r.request_id for r in request_rows} == set(platform_of)
    notice_of = {r.request_id: r.notice_id for r in request_rows}
    by_id = {n.notice_id: n for n in notices}
    assert len(by_id) == len(notices) == len(notice_ids), "notice ids are not unique"
    members = [r for n in notices for r in n.request_ids]
    assert len(members) == TOTAL and set(members) == set(platform_of)
    for notice in notices:
        assert all(notice_of[r] == notice.notice_id for r in notice.request_ids)
        assert {platform_of[r] for r in notice.request_ids} == {notice.platform}
    max_items = {p.id: p.max_items for p in PLANS}
    oversized = [n.notice_id for n in notices if len(n.request_ids) > max_items[n.platform]]
    assert oversized == []
    sequences: dict[str, list[int]] = defaultdict(list)
    for notice in notices:
        assert notice.notice_id.startswith(f"TD-{notice.platform}-")
        sequences[notice.platform].append(int(notice.notice_id.rsplit("-", 1)[1]))
    assert all(len(set(numbers)) == len(numbers) for numbers in sequences.values())

    # Each notice reached its platform exactly once (no lease expired: no duplicate is excused).
    emails: dict[str, list[Received]] = defaultdict(list)
    for received in sink.received:
        emails[notice_id_of(received)].append(received)
    email_notices = {n.notice_id for n in notices if n.channel == "email"}
    assert set(emails) == email_notices
    assert [i for i, copies in emails.items() if len(copies) != 1] == []
    address = {p.id: p.address for p in PLANS}
    for notice_id, (received,) in emails.items():
        notice = by_id[notice_id]
        assert received.recipients == (address[notice.platform],)
        assert received.message()["Message-ID"] == notice.message_id
    for platform, api in apis.items():
        sent = [r.payload["notice_id"] for r in api.received]
        assert api.requests == len(sent), f"{platform}: POSTs that were not accepted"
        assert Counter(sent) == Counter(n.notice_id for n in notices if n.platform == platform)
        for payload in (r.payload for r in api.received):
            items = [item["request_id"] for item in payload["items"]]
            assert items == list(by_id[payload["notice_id"]].request_ids)
    assert all(
        [a.outcome for a in n.attempts][-1] is AttemptOutcome.DELIVERED
        and sum(a.outcome is AttemptOutcome.DELIVERED for a in n.attempts) == 1
        for n in notices
    )

    # Both processes sent notices, each notice delivered by one of them, the rate-limited platform too.
    delivered_by = [{e["notice_id"] for e in daemons.events("notice.delivered", d)} for d in pair]
    assert all(delivered_by), f"a daemon delivered nothing: {[len(d) for d in delivered_by]}"
    assert delivered_by[0].isdisjoint(delivered_by[1])
    assert delivered_by[0] | delivered_by[1] == set(by_id)
    limited = [n for n in notices if n.platform == RATE_LIMITED.id]
    assert all({n.notice_id for n in limited} & d for d in delivered_by)

    # The rate limit, shared by both processes, held: the burst, then rate/60 a second.
    assert len(limited) >= RATE_LIMITED.rate_per_minute + 20, "too few notices to reach the limit"
    sent_at = [_delivered_at(n) for n in limited]
    assert_within_token_bucket(
        sent_at,
        burst=RATE_LIMITED.rate_per_minute,
        per_second=RATE_LIMITED.rate_per_minute / 60,
        slack=0.5,
    )


def _delivered_at(notice: Notice) -> float:
    """When the delivered attempt started: after its token was taken, before the server had it."""
    (attempt,) = [a for a in notice.attempts if a.outcome is AttemptOutcome.DELIVERED]
    return attempt.at.timestamp()


def _without_deadlines(document: bytes) -> object:
    """A notice's XARF document with the deadlines a re-send restates taken out."""

    def strip(value: object) -> object:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("ack_by", "remove_by")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(json.loads(document))
