"""A reply mail arriving while the store is away is not lost: inbound SMTP answers 451 (the sender
keeps it and sends it again), the IMAP reader leaves it unremembered (it is read again).

The store is PostgreSQL and goes away for real (``tests/integration/outage.py``); the sink is the
real ack service on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import aiosmtplib
import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from notifier.acks.imap import ImapReader
from notifier.acks.inbound_smtp import InboundSmtp
from notifier.clock import SimulatedClock
from notifier.domain.models import NoticeState
from notifier.domain.notices import Notice
from notifier.metrics import Metrics
from notifier.services.acks import AckService
from notifier.settings import ImapSettings, InboundSmtpSettings
from notifier.store import SqlStore, create_store
from notifier.store.tables import acks, seen_mail
from tests.integration.dovecot import Dovecot
from tests.integration.outage import DatabaseOutage, delivered_notice
from tests.waiting import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

NOW = datetime(2024, 9, 3, 1, 0, tzinfo=UTC)
PASSWORD_ENV = "TEST_IMAP_PASSWORD"


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[SqlStore]:
    opened = await create_store(postgres_url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def outage(postgres_server: str, postgres_url: str) -> AsyncIterator[DatabaseOutage]:
    taken = DatabaseOutage(postgres_server, postgres_url)
    try:
        yield taken
    finally:
        await taken.end()


def service(store: SqlStore) -> AckService:
    return AckService(
        store=store,
        clock=SimulatedClock(NOW + timedelta(hours=1)),
        metrics=Metrics(),
        fallbacks={},
        deliver_within=timedelta(hours=6),
    )


def human_reply(notice: Notice) -> bytes:
    message = EmailMessage()
    message["From"] = "Trust & Safety <abuse@telegram.example>"
    message["To"] = "takedown-replies@authority.example"
    message["Subject"] = f"Re: [{notice.notice_id}] Takedown notice"
    message["Message-ID"] = "<reply-1@telegram.example>"
    message.set_content("Thank you, we have received your notice and our team is reviewing the content.")
    return message.as_bytes()


async def ack_outcomes(store: SqlStore, notice_id: str) -> list[str]:
    async with store.engine.connect() as conn:
        result = await conn.execute(select(acks.c.outcome).where(acks.c.notice_id == notice_id))
        return [row.outcome for row in result]


async def state(store: SqlStore, notice_id: str) -> NoticeState:
    (notice,) = await store.get_notices([notice_id])
    return notice.state


async def test_inbound_smtp_answers_451_while_the_store_is_away_and_takes_the_resent_reply_once(
    store: SqlStore, outage: DatabaseOutage
) -> None:
    notice = await delivered_notice(store, now=NOW)
    listener = InboundSmtp(settings=InboundSmtpSettings(listen="127.0.0.1:0"), sink=service(store))
    await listener.start()
    raw = human_reply(notice)

    async def send() -> None:
        await aiosmtplib.send(
            raw,
            sender="abuse@telegram.example",
            recipients=["takedown-replies@authority.example"],
            hostname=listener.host,
            port=listener.port,
            timeout=30,
        )

    try:
        await outage.begin()
        with capture_logs() as logs, pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await send()
        assert refused.value.code == 451
        assert any(e["event"] == "store.unavailable" and e.get("operation") == "inbound_smtp" for e in logs)
        assert not any(e["event"] == "inbound_smtp.message_failed" for e in logs)

        await outage.end()
        await send()  # the forwarding server's retry
    finally:
        await listener.stop()
    assert await state(store, notice.notice_id) is NoticeState.ACKNOWLEDGED
    assert await ack_outcomes(store, notice.notice_id) == ["applied"]


async def test_the_imap_reader_reads_a_reply_again_after_the_store_comes_back_and_applies_it_once(
    store: SqlStore, outage: DatabaseOutage, dovecot: Dovecot
) -> None:
    notice = await delivered_notice(store, now=NOW)
    mailbox = f"Replies-outage-{notice.notice_id[-6:]}-{id(store):x}"
    await asyncio.to_thread(dovecot.create, mailbox)
    settings = ImapSettings.model_validate(
        {
            "host": dovecot.host,
            "port": dovecot.port,
            "username": dovecot.username,
            "password_env": PASSWORD_ENV,
            "mailbox": mailbox,
            "poll_every": "60s",
            "tls": False,
        },
        context={"environ": {PASSWORD_ENV: dovecot.password}},
    )
    reader = ImapReader(
        settings=settings,
        sink=service(store),
        seen=store,
        clock=SimulatedClock(NOW + timedelta(hours=1)),
        retry_first=0.05,
        retry_max=0.5,
    )
    stop = asyncio.Event()
    try:
        await outage.begin()
        await asyncio.to_thread(dovecot.append, mailbox, human_reply(notice))
        with capture_logs() as logs:
            task = asyncio.create_task(reader.run(stop))

            async def tried_twice() -> bool:
                return (
                    sum(1 for e in logs if e["event"] == "store.unavailable" and e["operation"] == "imap")
                    >= 2
                )

            await wait_for(tried_twice, within=60, what="the reader finding the store away")
            assert not task.done()
            await outage.end()

            async def acknowledged() -> bool:
                return await state(store, notice.notice_id) is NoticeState.ACKNOWLEDGED

            await wait_for(acknowledged, within=60, what="the reply applied")
            stop.set()
            await asyncio.wait_for(task, timeout=30)
        assert not any(e["event"] in ("imap.poll_failed", "imap.message_failed") for e in logs)
    finally:
        stop.set()
        await asyncio.to_thread(dovecot.delete, mailbox)
    assert await ack_outcomes(store, notice.notice_id) == ["applied"]
    async with store.engine.connect() as conn:
        remembered = (await conn.execute(select(seen_mail.c.uid))).all()
    assert len(remembered) == 1
