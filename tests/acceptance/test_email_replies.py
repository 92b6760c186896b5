"""Email replies end to end: the daemon's inbound SMTP listener, the classifier and the store.

A notice goes out to the sink; the platform's answers come back as mail: a human reply (an
acknowledgement), an auto-reply with a ticket (a receipt, the clock keeps running) and a soft bounce
(the notice goes out again, same Message-ID, its clock restarting at the new delivery).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from notifier.app import Daemon
from notifier.clock import SimulatedClock
from notifier.domain.models import NoticeState
from notifier.domain.notices import Notice
from notifier.sandbox.smtp import SmtpSink
from notifier.settings import load_settings
from tests.acceptance.harness import write_config
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(180)


class World:
    def __init__(self, tmp_path: Path, sink: SmtpSink) -> None:
        database = tmp_path / "var" / "notifier.db"
        self.sink = sink
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

[inbound_smtp]
listen = "127.0.0.1:0"
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
        self.daemon = Daemon(load_settings(self.config), clock=self.clock)

    async def delivered(self, request_id: str) -> Notice:
        assert self.daemon.queue is not None and self.daemon.store is not None
        store = self.daemon.store
        body = {
            "request_id": request_id,
            "platform": "telegram",
            "urls": [f"https://t.me/c/{request_id}"],
            "category": "deepfake_sexual_abuse",
        }
        await self.daemon.queue.publish("takedown.requests", [json.dumps(body).encode()])

        async def sent() -> bool:
            found = await store.get_requests([request_id])
            if not found or found[0].notice_id is None:
                return False
            (notice,) = await store.get_notices([found[0].notice_id])
            return notice.state is NoticeState.DELIVERED

        await wait_for(sent, within=30, what=f"the notice of {request_id} delivered")
        (stored,) = await store.get_requests([request_id])
        assert stored.notice_id is not None
        (notice,) = await store.get_notices([stored.notice_id])
        return notice

    async def reply(self, message: EmailMessage | bytes, *, recipients: list[str] | None = None) -> None:
        assert self.daemon.inbound_smtp is not None
        await aiosmtplib.send(
            message,
            hostname="127.0.0.1",
            port=self.daemon.inbound_smtp.port,
            sender="MAILER-DAEMON@mx.telegram.example"
            if isinstance(message, bytes)
            else str(message["From"]),
            recipients=recipients or ["takedown-replies@authority.example"],
            start_tls=False,
        )

    async def notice(self, notice_id: str) -> Notice:
        assert self.daemon.store is not None
        (notice,) = await self.daemon.store.get_notices([notice_id])
        return notice


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    sink = await SmtpSink().start()
    w = World(tmp_path, sink)
    await w.daemon.start()
    try:
        yield w
    finally:
        w.daemon.stop()
        assert await w.daemon.wait() == 0
        await sink.stop()


def reply_to(notice: Notice, *, subject: str, text: str, **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Trust & Safety <abuse@telegram.example>"
    message["To"] = "takedown-replies@authority.example"
    message["Subject"] = subject
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(text)
    return message


async def test_a_human_reply_acknowledges_the_notice_it_answers(world: World) -> None:
    notice = await world.delivered("r-1")
    assert notice.message_id is not None
    await world.clock.advance(timedelta(hours=5))
    await world.reply(
        reply_to(
            notice,
            subject=f"Re: [{notice.notice_id}] Takedown notice",
            text="Thank you, we have received your notice and our team is reviewing the content.",
            In_Reply_To=notice.message_id,
            References=notice.message_id,
        )
    )
    answered = await world.notice(notice.notice_id)
    assert answered.state is NoticeState.ACKNOWLEDGED
    assert answered.acknowledged_at == world.clock.now()


async def test_a_reply_that_lost_its_headers_is_matched_by_the_subject_token(world: World) -> None:
    notice = await world.delivered("r-2")
    await world.reply(
        reply_to(notice, subject=f"RE: [{notice.notice_id}] Takedown notice", text="Received, thanks.")
    )
    assert (await world.notice(notice.notice_id)).state is NoticeState.ACKNOWLEDGED


async def test_an_auto_reply_is_a_receipt_and_keeps_its_ticket_but_not_an_acknowledgement(
    world: World,
) -> None:
    notice = await world.delivered("r-3")
    await world.clock.advance(timedelta(minutes=2))
    await world.reply(
        reply_to(
            notice,
            subject=f"Automatic reply: [{notice.notice_id}] Takedown notice",
            text="Your request has been received. Ticket #TG-5511. We answer within 5 business days.",
            Auto_Submitted="auto-replied",
            In_Reply_To=notice.message_id or "",
        )
    )
    receipt = await world.notice(notice.notice_id)
    assert receipt.state is NoticeState.DELIVERED
    assert receipt.acknowledged_at is None
    assert receipt.receipt_at == world.clock.now()
    assert receipt.ticket is not None and "5511" in receipt.ticket


def bounce_for(notice: Notice, *, status: str = "4.2.2") -> bytes:
    """A Postfix-shaped RFC 3464 bounce returning the notice's headers: by default a soft one (the
    mailbox is full, and the server gave up for now)."""
    reply = "452 4.2.2 Mailbox full" if status.startswith("4.") else f"550 {status} Address rejected"
    return (
        "From: MAILER-DAEMON@mx.telegram.example (Mail Delivery System)\r\n"
        f"To: bounces+{notice.notice_id}@authority.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B0UND"\r\n'
        "\r\n"
        "--B0UND\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        "This is the mail system at host mx.telegram.example.\r\n"
        "I'm sorry to have to inform you that your message could not be delivered.\r\n\r\n"
        "--B0UND\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.telegram.example\r\n\r\n"
        "Final-Recipient: rfc822; abuse@telegram.example\r\n"
        "Action: failed\r\n"
        f"Status: {status}\r\n"
        f"Diagnostic-Code: smtp; {reply}\r\n\r\n"
        "--B0UND\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: {notice.message_id}\r\n"
        f"Subject: [{notice.notice_id}] Takedown notice\r\n"
        "From: takedown@authority.example\r\n"
        "To: abuse@telegram.example\r\n\r\n"
        "--B0UND--\r\n"
    ).encode()


async def test_a_soft_bounce_sends_the_same_notice_again_and_restarts_its_clock(world: World) -> None:
    notice = await world.delivered("r-4")
    first_delivery = notice.delivered_at
    await world.clock.advance(timedelta(hours=1))
    await world.reply(bounce_for(notice), recipients=[f"bounces+{notice.notice_id}@authority.example"])

    async def redelivered() -> bool:
        current = await world.notice(notice.notice_id)
        if current.state is NoticeState.RETRYING and current.next_attempt_at is not None:
            await world.clock.advance(max(timedelta(0), current.next_attempt_at - world.clock.now()))
            assert world.daemon.dispatcher is not None
            world.daemon.dispatcher.kick()
        return current.state is NoticeState.DELIVERED and current.delivered_at != first_delivery

    await wait_for(redelivered, within=30, what="the bounced notice delivered again")
    again = await world.notice(notice.notice_id)
    assert again.delivered_at is not None and first_delivery is not None
    assert again.delivered_at > first_delivery
    copies = [r for r in world.sink.received if f"[{notice.notice_id}]" in str(r.message()["Subject"])]
    assert len(copies) == 2
    assert {r.message()["Message-ID"] for r in copies} == {notice.message_id}
    assert any("bounced" in a.detail for a in again.attempts)


async def test_unrelated_mail_changes_nothing(world: World) -> None:
    notice = await world.delivered("r-5")
    message = EmailMessage()
    message["From"] = "newsletter@shop.example"
    message["To"] = "takedown-replies@authority.example"
    message["Subject"] = "Our autumn sale"
    message.set_content("Fifty percent off everything.")
    await world.reply(message)
    assert (await world.notice(notice.notice_id)).state is NoticeState.DELIVERED


async def test_the_imap_set_of_replies_through_inbound_smtp_ends_the_same_way(world: World) -> None:
    from tests.acceptance.test_imap_replies import (
        UNRELATED,
        auto_reply,
        exchange_bounce,
        headerless,
        human,
        postfix_bounce,
    )

    n = [await world.delivered(f"s-{i}") for i in range(5)]
    messages = [
        (human(n[0]), None),
        (headerless(n[1]), None),
        (auto_reply(n[2], ticket=True), None),
        (auto_reply(n[3], ticket=False), None),
        (postfix_bounce(n[4]), [f"bounces+{n[4].notice_id}@authority.example"]),
        (exchange_bounce(n[4]), None),
        (UNRELATED, None),
    ]
    for raw, recipients in messages:
        await world.reply(raw, recipients=recipients)

    by_id = {x.notice_id: await world.notice(x.notice_id) for x in n}
    assert by_id[n[0].notice_id].state is NoticeState.ACKNOWLEDGED
    assert by_id[n[1].notice_id].state is NoticeState.RESOLVED
    assert by_id[n[2].notice_id].state is NoticeState.DELIVERED
    assert "7741" in (by_id[n[2].notice_id].ticket or "")
    assert by_id[n[3].notice_id].receipt_at is not None
    assert by_id[n[3].notice_id].acknowledged_at is None
    assert any("bounced" in a.detail for a in by_id[n[4].notice_id].attempts)
    # The Exchange-style report about the same notice arrived after the Postfix one had already
    # put it back to retrying: a bounce only moves a delivered notice, so it is bounced once.
    assert sum("bounced" in a.detail for a in by_id[n[4].notice_id].attempts) == 1
