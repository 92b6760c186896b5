"""Replies read from a real IMAP mailbox (a private Dovecot): classified, matched, counted once.

Human replies, a reply that lost its headers but keeps the subject token, auto-replies with and
without a ticket, Postfix- and Exchange-style bounces, and unrelated mail all land in the mailbox
the daemon reads; each ends where SPEC §7 says, and none is counted again after a restart.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from notifier.app import Daemon
from notifier.clock import SimulatedClock
from notifier.domain.models import NoticeState
from notifier.domain.notices import Notice
from notifier.sandbox.smtp import SmtpSink
from notifier.settings import load_settings
from notifier.store import SqlStore
from notifier.store.tables import acks, seen_mail
from tests.acceptance.harness import write_config
from tests.integration.dovecot import Dovecot
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(180)


def human(notice: Notice) -> bytes:
    return (
        "From: Trust and Safety <abuse@telegram.example>\r\nTo: takedown-replies@authority.example\r\n"
        f"Subject: Re: [{notice.notice_id}] Takedown notice\r\nIn-Reply-To: {notice.message_id}\r\n"
        f"References: {notice.message_id}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Hello, we received your notice and the team is looking at it.\r\n"
    ).encode()


def headerless(notice: Notice) -> bytes:
    return (
        "From: legal@telegram.example\r\nTo: takedown-replies@authority.example\r\n"
        f"Subject: RE: [{notice.notice_id}] Takedown notice\r\n\r\nThe content has been removed.\r\n"
    ).encode()


def auto_reply(notice: Notice, *, ticket: bool) -> bytes:
    body = "Your request has been received. Ticket #TG-7741.\r\n" if ticket else "I am out of the office.\r\n"
    return (
        "From: abuse@telegram.example\r\nTo: takedown-replies@authority.example\r\n"
        f"Subject: Automatic reply: [{notice.notice_id}] Takedown notice\r\nAuto-Submitted: auto-replied\r\n"
        f"In-Reply-To: {notice.message_id}\r\n\r\n{body}"
    ).encode()


def postfix_bounce(notice: Notice) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.telegram.example (Mail Delivery System)\r\n"
        f"To: bounces+{notice.notice_id}@authority.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="P"\r\n\r\n'
        "--P\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\r\n"
        "--P\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.telegram.example\r\n\r\n"
        "Final-Recipient: rfc822; abuse@telegram.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        f"--P\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {notice.message_id}\r\n"
        f"Subject: [{notice.notice_id}] Takedown notice\r\n\r\n--P--\r\n"
    ).encode()


def exchange_bounce(notice: Notice) -> bytes:
    return (
        "From: Microsoft Outlook <postmaster@telegram.example>\r\nTo: takedown@authority.example\r\n"
        "Subject: Undeliverable: Takedown notice\r\nX-MS-Exchange-Message-Is-Ndr: \r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="X"\r\n\r\n'
        "--X\r\nContent-Type: text/plain\r\n\r\nDelivery has failed to these recipients or groups.\r\n\r\n"
        "--X\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns;EX01.telegram.example\r\n\r\n"
        "Final-Recipient: rfc822;legal@telegram.example\r\nAction: failed\r\nStatus: 5.1.10\r\n\r\n"
        f"--X\r\nContent-Type: message/rfc822\r\n\r\nMessage-ID: {notice.message_id}\r\n"
        f"Subject: [{notice.notice_id}] Takedown notice\r\nFrom: takedown@authority.example\r\n\r\nbody\r\n"
        "--X--\r\n"
    ).encode()


UNRELATED = (
    b"From: news@shop.example\r\nTo: takedown-replies@authority.example\r\n"
    b"Subject: Autumn sale\r\n\r\nEverything half price.\r\n"
)


class World:
    def __init__(self, tmp_path: Path, sink: SmtpSink, dovecot: Dovecot, mailbox: str) -> None:
        database = tmp_path / "var" / "notifier.db"
        self.config = write_config(
            tmp_path,
            store_url=f"sqlite:///{database}",
            queue_url=f"sqlite:///{database}",
            http_listen="",
            runtime='grace = "5s"\nin_call_retry_wait = "0.01"',
            extra=f"""
[smtp]
host = "127.0.0.1"
port = {sink.port}
starttls = "off"

[imap]
host = "127.0.0.1"
port = {dovecot.port}
tls = false
username = "{dovecot.username}"
password_env = "TEST_IMAP_PASSWORD"
mailbox = "{mailbox}"
poll_every = "0.2"
""",
            platforms="""
[platforms.telegram]
name = "Telegram"
channel = "email"
[platforms.telegram.email]
to = ["abuse@telegram.example"]
[platforms.telegram.batch]
max_items = 1
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

    @property
    def store(self) -> SqlStore:
        assert self.daemon is not None and isinstance(self.daemon.store, SqlStore)
        return self.daemon.store

    async def deliver(self, count: int) -> list[Notice]:
        assert self.daemon is not None and self.daemon.queue is not None
        bodies = [
            json.dumps(
                {
                    "request_id": f"r-{i}",
                    "platform": "telegram",
                    "urls": [f"https://t.me/c/{i}"],
                    "category": "deepfake_sexual_abuse",
                }
            ).encode()
            for i in range(count)
        ]
        await self.daemon.queue.publish("takedown.requests", bodies)

        async def all_delivered() -> bool:
            counts = await self.store.status_counts()
            return counts.notices.get("telegram", {}).get("delivered", 0) == count

        await wait_for(all_delivered, within=30, what=f"{count} notices delivered")
        stored = await self.store.get_requests([f"r-{i}" for i in range(count)])
        return await self.store.get_notices([s.notice_id for s in stored if s.notice_id])

    async def counts(self) -> tuple[int, int]:
        async with self.store.engine.connect() as conn:
            seen = (await conn.execute(select(func.count()).select_from(seen_mail))).scalar_one()
            history = (await conn.execute(select(func.count()).select_from(acks))).scalar_one()
        return int(seen), int(history)


@pytest.fixture
async def world(
    tmp_path: Path, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[World, str]]:
    monkeypatch.setenv("TEST_IMAP_PASSWORD", dovecot.password)
    mailbox = f"replies-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(dovecot.create, mailbox)
    sink = await SmtpSink().start()
    w = World(tmp_path, sink, dovecot, mailbox)
    try:
        yield w, mailbox
    finally:
        await w.stop()
        await sink.stop()
        await asyncio.to_thread(dovecot.delete, mailbox)


async def test_every_kind_of_reply_in_the_mailbox_is_classified_matched_and_counted_once(
    world: tuple[World, str], dovecot: Dovecot
) -> None:
    w, mailbox = world
    await w.start()
    n = await w.deliver(5)
    messages = [
        human(n[0]),
        headerless(n[1]),
        auto_reply(n[2], ticket=True),
        auto_reply(n[3], ticket=False),
        postfix_bounce(n[4]),
        exchange_bounce(n[4]),
        UNRELATED,
    ]
    for raw in messages:
        await asyncio.to_thread(dovecot.append, mailbox, raw)

    async def read_all() -> bool:
        return (await w.counts())[0] == len(messages)

    await wait_for(read_all, within=30, what="every message of the mailbox read")
    by_id = {x.notice_id: x for x in await w.store.get_notices([x.notice_id for x in n])}
    assert by_id[n[0].notice_id].state is NoticeState.ACKNOWLEDGED
    assert by_id[n[1].notice_id].state is NoticeState.RESOLVED  # "has been removed": certainly removal
    assert by_id[n[2].notice_id].state is NoticeState.DELIVERED  # a receipt does not stop the clock
    assert by_id[n[2].notice_id].receipt_at is not None
    assert "7741" in (by_id[n[2].notice_id].ticket or "")
    assert by_id[n[3].notice_id].state is NoticeState.DELIVERED
    assert by_id[n[3].notice_id].receipt_at is not None
    assert by_id[n[3].notice_id].acknowledged_at is None
    bounced = by_id[n[4].notice_id]
    # 5.1.1, no such mailbox: a hard bounce, and with no fallback configured the notice fails (its
    # operations alert follows); it is not sent again to an address that does not exist.
    assert bounced.state is NoticeState.FAILED
    assert any("bounced" in a.detail for a in bounced.attempts)
    _, history = await w.counts()
    assert history == 2  # the two human replies; receipts, bounces and unrelated mail are no acks

    # A restart reads the same mailbox again and counts nothing twice.
    acknowledged_at = by_id[n[0].notice_id].acknowledged_at
    await w.stop()
    await w.start()
    assert w.daemon is not None
    await asyncio.to_thread(dovecot.set_seen, mailbox, [1, 2, 3], seen=False)
    await asyncio.to_thread(dovecot.append, mailbox, UNRELATED)

    async def read_new() -> bool:
        return (await w.counts())[0] == len(messages) + 1

    await wait_for(read_new, within=30, what="the one new message read after the restart")
    assert (await w.counts())[1] == history
    (again,) = await w.store.get_notices([n[0].notice_id])
    assert again.acknowledged_at == acknowledged_at
