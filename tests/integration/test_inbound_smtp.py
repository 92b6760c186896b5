"""The inbound SMTP listener, with aiosmtplib as the authority's forwarding mail server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiosmtplib
import pytest
from structlog.testing import capture_logs

from notifier.acks.inbound_smtp import MAX_MESSAGE_BYTES, SOURCE, InboundSmtp
from notifier.domain.replies import MailKind, classify
from notifier.settings import InboundSmtpSettings
from tests.waiting import wait_for

SENDER = "MAILER-DAEMON@mx.authority.example"
RECIPIENTS = ["bounces+TD-telegram-20240903-000012@authority.example", "takedown-replies@authority.example"]


@dataclass
class RecordingSink:
    """Keeps what it is handed; ``fail_next`` makes that many hand-overs raise first, and a cleared
    ``gate`` holds hand-overs until it is set."""

    received: list[tuple[bytes, str, tuple[str, ...]]] = field(default_factory=list)
    fail_next: int = 0
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    entered: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.gate.set()

    async def handle_mail(self, raw: bytes, *, source: str, envelope_recipients: Sequence[str] = ()) -> None:
        self.entered.set()
        await self.gate.wait()
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("the store is down")
        self.received.append((raw, source, tuple(envelope_recipients)))


def message(
    subject: str = "Re: [TD-telegram-20240903-000012] Takedown notice", body: str = "Removed."
) -> bytes:
    return (
        f"From: abuse@telegram.example\r\nTo: takedown-replies@authority.example\r\n"
        f"Subject: {subject}\r\nMessage-ID: <r1@telegram.example>\r\n\r\n{body}\r\n"
    ).encode()


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
async def listener(sink: RecordingSink) -> AsyncIterator[InboundSmtp]:
    server = InboundSmtp(settings=InboundSmtpSettings(listen="127.0.0.1:0"), sink=sink)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def send(listener: InboundSmtp, raw: bytes, recipients: Sequence[str] = RECIPIENTS) -> str:
    errors, reply = await aiosmtplib.send(
        raw,
        sender=SENDER,
        recipients=list(recipients),
        hostname=listener.host,
        port=listener.port,
        timeout=30,
    )
    assert errors == {}
    return reply


async def test_the_sink_receives_the_raw_bytes_and_the_envelope_recipients(
    listener: InboundSmtp, sink: RecordingSink
) -> None:
    raw = message(body="Removed.\r\n.leading dot survives dot-stuffing\r\nUTF-8: 삭제되었습니다")
    with capture_logs() as logs:
        reply = await send(listener, raw)

    assert reply.startswith("2.0.0 OK")
    assert sink.received == [(raw, "email:smtp", tuple(RECIPIENTS))]
    assert SOURCE == "email:smtp"
    received = [entry for entry in logs if entry["event"] == "inbound_smtp.received"]
    assert [(entry["recipients"], entry["size"]) for entry in received] == [(2, len(raw))]


async def test_a_failing_sink_answers_451_and_the_message_arrives_when_sent_again(
    listener: InboundSmtp, sink: RecordingSink
) -> None:
    sink.fail_next = 1
    raw = message()
    with capture_logs() as logs, pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await send(listener, raw)
    assert refused.value.code == 451
    assert sink.received == []
    assert [entry["log_level"] for entry in logs if entry["event"] == "inbound_smtp.message_failed"] == [
        "error"
    ]

    # The forwarding server keeps the message and tries again: it arrives, once.
    await send(listener, raw)
    assert sink.received == [(raw, SOURCE, tuple(RECIPIENTS))]


async def test_bounces_to_tagged_verp_addresses_arrive_with_them_and_name_their_message(
    listener: InboundSmtp, sink: RecordingSink, mail_corpus: Path
) -> None:
    reminder = "bounces+TD-telegram-20240903-000012.reminder@authority.example"
    alert = "bounces+alert.TD-telegram-20240903-000012.failed@authority.example"
    raw = (mail_corpus / "bounces" / "lhost-postfix-02.eml").read_bytes()  # nothing of ours inside
    for address in (reminder, alert):
        await send(listener, raw, [address])

    assert [recipients for _, _, recipients in sink.received] == [(reminder,), (alert,)]
    verdicts = [classify(data, envelope_recipients=recipients) for data, _, recipients in sink.received]
    assert [(v.kind, v.notice_ids, v.message) for v in verdicts] == [
        (MailKind.BOUNCE, ("TD-telegram-20240903-000012",), "reminder"),
        (MailKind.BOUNCE, ("TD-telegram-20240903-000012",), "alert"),
    ]


def oversized() -> bytes:
    line = b"x" * 998 + b"\r\n"
    return message() + line * (MAX_MESSAGE_BYTES // len(line) + 1)


async def test_a_message_over_10_mb_declared_in_mail_from_is_refused_with_552(
    listener: InboundSmtp, sink: RecordingSink
) -> None:
    # aiosmtplib declares SIZE= in MAIL FROM since the server advertises SIZE 10485760.
    with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
        await send(listener, oversized())
    assert refused.value.code == 552
    assert sink.received == []


async def test_a_message_over_10_mb_sent_without_declaring_its_size_is_refused_with_552(
    listener: InboundSmtp, sink: RecordingSink
) -> None:
    client = aiosmtplib.SMTP(hostname=listener.host, port=listener.port, timeout=60)
    await client.connect()
    try:
        await client.helo()  # plain SMTP: no SIZE extension, so the limit is enforced while reading DATA
        await client.mail(SENDER)
        await client.rcpt(RECIPIENTS[0])
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await client.data(oversized())
        assert refused.value.code == 552
        # The connection is still usable afterwards: a normal message goes through.
        await client.mail(SENDER)
        await client.rcpt(RECIPIENTS[0])
        await client.data(message())
    finally:
        await client.quit()
    assert sink.received == [(message(), SOURCE, (RECIPIENTS[0],))]


async def test_stop_lets_a_message_being_handed_over_finish_and_answers_250(
    listener: InboundSmtp, sink: RecordingSink
) -> None:
    sink.gate.clear()
    sending = asyncio.create_task(send(listener, message()))
    async with asyncio.timeout(30):
        await sink.entered.wait()
    stopping = asyncio.create_task(listener.stop())
    for _ in range(20):  # let the loop run: stop() must still be holding on for the sink
        await asyncio.sleep(0)
    assert not stopping.done()

    sink.gate.set()
    async with asyncio.timeout(30):
        await stopping
        reply = await sending
    assert reply.startswith("2.0.0 OK")
    assert len(sink.received) == 1


async def test_run_listens_until_stopped(sink: RecordingSink) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = InboundSmtp(settings=InboundSmtpSettings(listen=f"127.0.0.1:{port}"), sink=sink)
    stop = asyncio.Event()
    task = asyncio.create_task(server.run(stop))

    async def listening() -> bool:
        assert not task.done()
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        await writer.wait_closed()
        return True

    await wait_for(listening, within=10, what="the listener")
    await send(server, message())
    stop.set()
    async with asyncio.timeout(10):
        await task
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    assert len(sink.received) == 1


async def test_a_listener_on_every_interface_warns_in_the_log(sink: RecordingSink) -> None:
    server = InboundSmtp(settings=InboundSmtpSettings(listen=":0"), sink=sink)
    with capture_logs() as logs:
        await server.start()
        await server.stop()
    warnings = [entry for entry in logs if entry["event"] == "inbound_smtp.not_loopback"]
    assert [(entry["host"], entry["log_level"]) for entry in warnings] == [("0.0.0.0", "warning")]  # noqa: S104


async def test_a_loopback_listener_does_not_warn(listener: InboundSmtp) -> None:
    assert listener.host == "127.0.0.1"
    with capture_logs() as logs:
        second = InboundSmtp(settings=InboundSmtpSettings(listen="127.0.0.1:0"), sink=RecordingSink())
        await second.start()
        await second.stop()
    assert not [entry for entry in logs if entry["log_level"] == "warning"]
