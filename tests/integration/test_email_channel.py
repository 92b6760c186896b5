"""The email channel against a real aiosmtpd server on loopback (TLS from a trustme CA).

The sink stores what it receives with the client's address, so connection reuse and replacement
are read from the server's side; recipients named ``tempfail@…``/``nouser@…`` are refused with a 4xx
or 5xx, and ``sink.delay`` holds the answer to DATA back to provoke a client timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import csv
import dataclasses
import email
import email.policy
import io
import json
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.generator import BytesGenerator
from email.message import EmailMessage
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from structlog.testing import capture_logs

from notifier.channels.email import (
    EmailChannel,
    OperationsMailer,
    SmtpTransport,
    build_notice_email,
    flatten,
    message_id_for,
    starttls_required,
)
from notifier.channels.rendering import Renderer, default_templates_dir
from notifier.clock import SimulatedClock
from notifier.domain.models import Evidence, TakedownRequest
from notifier.domain.notices import GOOD_FAITH_STATEMENT, Authority, MessageKind, NoticeContent
from notifier.domain.replies import MailKind, classify
from notifier.failures import DeliveryError
from notifier.sandbox.bounces import mailbox_full_bounce
from notifier.settings import SmtpSettings

NOTICE_ID = "TD-telegram-20240903-000012"
CREATED = datetime(2024, 9, 3, 1, 0, tzinfo=UTC)
AUTHORITY = Authority(
    name="Korea Communications Standards Commission",
    email="takedown@authority.example",
    reply_to="takedown-replies@authority.example",
    timezone="Asia/Seoul",
)
FROM = "takedown@authority.example"
TO = "abuse@telegram.example"
VERP = "bounces+{notice_id}@authority.example"
USER, PASSWORD = "notifier", "correct horse"
URLS = ("https://t.me/some_channel/1234", "https://t.me/some_channel/1235", "https://t.me/other/1")
NOTICE_HEADERS = {
    "From",
    "To",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "X-Notifier-Notice-Id",
    "MIME-Version",
    "Content-Type",
}


# -- the server ----------------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: Any
    tls: bool
    authenticated: bool
    mail_options: list[str]

    def parsed(self) -> EmailMessage:
        message = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message


@dataclass
class Sink:
    """An aiosmtpd handler that keeps every message and refuses marked recipients."""

    received: list[Received] = field(default_factory=list)
    noops: int = 0
    delay: float = 0.0

    async def handle_RCPT(
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("tempfail@"):
            return "451 4.3.0 try again later"
        if address.startswith("nouser@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_NOOP(self, server: SMTPServer, session: Session, envelope: Envelope, arg: str) -> str:
        self.noops += 1
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        data = envelope.original_content
        assert isinstance(data, bytes) and envelope.mail_from is not None
        self.received.append(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                data=data,
                peer=session.peer,
                tls=session.ssl is not None,
                authenticated=bool(session.authenticated),
                mail_options=list(envelope.mail_options),
            )
        )
        return "250 2.0.0 queued as SINK1"

    def by_message_id(self, message_id: str) -> Received:
        (found,) = [r for r in self.received if r.parsed()["Message-ID"] == message_id]
        return found


class LoopbackController(Controller):
    """A Controller on an OS-chosen port that keeps it across stop()/start()."""

    def _trigger_server(self) -> None:
        if self.port == 0:
            assert isinstance(self.server, asyncio.Server)
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]  # aiosmtpd leaves it unannotated

    def restart(self) -> None:
        """Stop (dropping every client connection) and listen again on the same port."""
        self.stop()
        self.loop = asyncio.new_event_loop()  # stop() closed the old one
        self.start()


def authenticator(
    server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (USER.encode(), PASSWORD.encode())
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


@contextlib.contextmanager
def running(sink: Sink, **smtp_options: Any) -> Iterator[LoopbackController]:
    controller = LoopbackController(
        sink, hostname="127.0.0.1", port=0, server_hostname="sink.test", **smtp_options
    )
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def server(sink: Sink) -> Iterator[LoopbackController]:
    with running(sink) as controller:
        yield controller


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(default_templates_dir())


def settings_for(port: int, *, password: str = PASSWORD, **overrides: Any) -> SmtpSettings:
    data: dict[str, Any] = {"host": "127.0.0.1", "port": port, "timeout": 5, **overrides}
    return SmtpSettings.model_validate(data, context={"environ": {"SMTP_TEST_PASSWORD": password}})


@contextlib.asynccontextmanager
async def transport_for(
    port: int, *, tls_context: ssl.SSLContext | None = None, pool_size: int = 4, **overrides: Any
) -> AsyncIterator[SmtpTransport]:
    transport = SmtpTransport(settings_for(port, **overrides), pool_size=pool_size, tls_context=tls_context)
    try:
        yield transport
    finally:
        await transport.close()


@pytest.fixture
async def transport(server: LoopbackController) -> AsyncIterator[SmtpTransport]:
    async with transport_for(server.port) as pooled:
        yield pooled


def make_channel(
    transport: SmtpTransport, renderer: Renderer, *, to: tuple[str, ...] = (TO,), **options: Any
) -> EmailChannel:
    return EmailChannel(
        transport=transport,
        renderer=renderer,
        authority=options.pop("authority", AUTHORITY),
        from_addr=FROM,
        to=to,
        envelope_from=VERP,
        reply_to=AUTHORITY.reply_to,
        **options,
    )


def make_content(
    *,
    kind: MessageKind = MessageKind.NOTICE,
    language: str = "en",
    requests: tuple[TakedownRequest, ...] | None = None,
    **fields: Any,
) -> NoticeContent:
    if requests is None:
        requests = (
            TakedownRequest(
                request_id="kcsc-2024-000148",
                platform="telegram",
                urls=URLS[:2],
                category="deepfake_sexual_abuse",
                legal_basis="Act on the Korea Communications Commission, Art. 21(4)",
                explanation="Synthetic sexual imagery of an identifiable person made without consent.",
                evidence=(Evidence(sha256="a" * 64, pdq="b" * 64),),
                case_ref="2024-DF-0042",
                territorial_scope=("KR",),
            ),
            TakedownRequest(
                request_id="kcsc-2024-000149",
                platform="telegram",
                urls=URLS[2:],
                category="non_consensual_intimate_imagery",
            ),
        )
    values: dict[str, Any] = {
        "notice_id": NOTICE_ID,
        "platform": "telegram",
        "platform_name": "Telegram",
        "language": language,
        "created_at": CREATED,
        "ack_by": CREATED + timedelta(hours=36),
        "remove_by": CREATED + timedelta(hours=36),
        "authority": AUTHORITY,
        "requests": requests,
        "category_labels": {"deepfake_sexual_abuse": "Deepfake sexual abuse material"},
        "kind": kind,
    }
    values.update(fields)
    return NoticeContent(**values)


def body_of(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert isinstance(part, EmailMessage)
    content = part.get_content()
    assert isinstance(content, str)
    return content


def attachments_of(message: EmailMessage) -> dict[str, tuple[str, bytes]]:
    found: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_attachments():
        assert isinstance(part, EmailMessage)
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        found[part.get_filename() or ""] = (part.get_content_type(), payload)
    return found


def assert_no_defects(message: EmailMessage) -> None:
    for part in message.walk():
        assert not part.defects, part.defects


# -- the notice as received ----------------------------------------------------------------------


async def test_a_notice_arrives_whole_and_parses_cleanly(
    transport: SmtpTransport, renderer: Renderer, sink: Sink
) -> None:
    channel = make_channel(transport, renderer)
    with capture_logs() as logs:
        result = await channel.send(make_content())

    assert result.code == 250
    assert result.message_id == f"<{NOTICE_ID}.notice@authority.example>"
    assert "queued as SINK1" in result.detail
    (received,) = sink.received
    assert received.mail_from == f"bounces+{NOTICE_ID}@authority.example"
    assert received.rcpt_tos == [TO]
    assert "BODY=8BITMIME" not in received.mail_options  # a 7-bit message, sent as flattened

    message = received.parsed()
    assert_no_defects(message)
    assert set(message.keys()) == NOTICE_HEADERS
    assert message["Message-ID"] == result.message_id
    assert f"[{NOTICE_ID}]" in message["Subject"]
    assert message["Subject"] == f"[{NOTICE_ID}] Takedown notice: 3 URL(s) — Telegram"
    assert message["X-Notifier-Notice-Id"] == NOTICE_ID
    assert message["From"].addresses[0].addr_spec == FROM
    assert message["From"].addresses[0].display_name == AUTHORITY.name
    assert message["Reply-To"].addresses[0].addr_spec == AUTHORITY.reply_to
    assert message["Date"].datetime == CREATED
    assert "Auto-Submitted" not in message
    assert message.get_content_type() == "multipart/mixed"

    for subtype in ("plain", "html"):
        body = body_of(message, subtype)
        assert "2024-09-04 13:00 UTC" in body
        assert "2024-09-04 22:00 KST (Asia/Seoul)" in body
        assert GOOD_FAITH_STATEMENT in body
        assert all(url in body for url in URLS)

    attachments = attachments_of(message)
    assert set(attachments) == {f"{NOTICE_ID}.csv", f"{NOTICE_ID}.json"}
    csv_type, csv_bytes = attachments[f"{NOTICE_ID}.csv"]
    json_type, json_bytes = attachments[f"{NOTICE_ID}.json"]
    assert csv_type == "text/csv" and json_type == "application/json"
    rows = list(csv.DictReader(io.StringIO(csv_bytes.decode("utf-8"))))
    assert [row["url"] for row in rows] == list(URLS)
    reports = json.loads(json_bytes)
    assert [report["source_identifier"] for report in reports] == list(URLS)

    (event,) = [entry for entry in logs if entry["event"] == "email.sent"]
    assert event["notice_id"] == NOTICE_ID and event["platform"] == "telegram"
    assert event["smtp_code"] == 250 and event["recipient_domains"] == ["telegram.example"]
    assert TO not in json.dumps(event) and "Synthetic" not in json.dumps(event)


async def test_a_korean_notice_arrives_in_korean(
    transport: SmtpTransport, renderer: Renderer, sink: Sink
) -> None:
    await make_channel(transport, renderer).send(make_content(language="ko"))

    message = sink.received[0].parsed()
    assert_no_defects(message)
    assert message["Subject"] == f"[{NOTICE_ID}] 삭제 요청 통지: URL 3건 — Telegram"
    text = body_of(message, "plain")
    assert "삭제 요청 통지" in text and "삭제 기한" in text
    assert "2024-09-04 22:00 KST (Asia/Seoul)" in text
    assert "삭제 요청 통지" in body_of(message, "html")


HOSTILE = "\r\nBcc: victim@evil.example\r\nX-Injected: yes\n\rSubject: spoof"


async def test_crlf_and_unicode_in_every_field_never_add_a_header(
    transport: SmtpTransport, renderer: Renderer, sink: Sink
) -> None:
    authority = Authority(
        name=f'한국방송통신심의위원회 "Q" <fake@evil.example>{HOSTILE}',
        email="takedown@authority.example",
        reply_to="takedown-replies@authority.example",
        timezone="Asia/Seoul",
    )
    unicode_url = f"https://例え.テスト/パス?q=삭제{HOSTILE}"
    request = TakedownRequest(
        request_id="kcsc-2024-000150",
        platform="telegram",
        urls=(unicode_url, "https://t.me/ok/1"),
        category="deepfake_sexual_abuse",
        legal_basis=f"Art. 21(4){HOSTILE}",
        explanation=f"Explanation{HOSTILE}\u2028\u0085more",
        case_ref=f"2024-DF{HOSTILE}",
        territorial_scope=("KR",),
    )
    content = make_content(
        requests=(request,),
        authority=authority,
        platform_name=f"Tele\u2028gram{HOSTILE}",
        category_labels={"deepfake_sexual_abuse": f"Deepfake{HOSTILE}"},
        callback_url=f"https://authority.example/cb{HOSTILE}",
    )
    channel = make_channel(transport, renderer, authority=authority)

    for kind in (MessageKind.NOTICE, MessageKind.REMINDER):
        await channel.send(dataclasses.replace(content, kind=kind))

    notice, reminder = (r.parsed() for r in sink.received)
    for message, extra in ((notice, set()), (reminder, {"In-Reply-To", "References"})):
        assert_no_defects(message)
        assert set(message.keys()) == NOTICE_HEADERS | extra
        assert "Bcc" not in message and "X-Injected" not in message
        assert len(message.get_all("Subject") or []) == 1
        assert message["Subject"].startswith(f"[{NOTICE_ID}] ")
        assert "\n" not in message["Subject"] and "\r" not in message["Subject"]
        assert message["From"].addresses[0].addr_spec == FROM
        assert len(message["From"].addresses) == 1
        assert message["From"].addresses[0].display_name.startswith("한국방송통신심의위원회")
        text = body_of(message, "plain")
        assert "https://例え.テスト/パス?q=삭제 Bcc: victim@evil.example X-Injected: yes" in text
        (rows,) = [payload for name, (_, payload) in attachments_of(message).items() if name.endswith(".csv")]
        assert unicode_url in rows.decode("utf-8")  # the machine-readable copy keeps the URL exact
    for received in sink.received:
        assert received.rcpt_tos == [TO]
        header_block = received.data.split(b"\r\n\r\n", 1)[0]
        assert b"\r\nBcc:" not in header_block and b"\r\nX-Injected:" not in header_block


def test_a_header_value_that_is_not_an_address_is_refused(renderer: Renderer) -> None:
    with pytest.raises(ValueError):
        build_notice_email(
            make_content(),
            renderer=renderer,
            from_addr=FROM,
            reply_to=None,
            to=["abuse@telegram.example\r\nBcc: victim@evil.example"],
            cc=[],
            message_id=message_id_for(NOTICE_ID, MessageKind.NOTICE, "authority.example"),
            in_reply_to=None,
        )
    with pytest.raises(ValueError):
        message_id_for("TD-x\r\nBcc: y", MessageKind.NOTICE, "authority.example")


def test_flatten_writes_the_same_bytes_as_the_stdlib_generator(renderer: Renderer) -> None:
    for language in ("en", "ko"):
        message = build_notice_email(
            make_content(language=language),
            renderer=renderer,
            from_addr=FROM,
            reply_to=AUTHORITY.reply_to,
            to=[TO],
            cc=["copy@telegram.example"],
            message_id=message_id_for(NOTICE_ID, MessageKind.NOTICE, "authority.example"),
            in_reply_to=None,
        )
        message.set_boundary("outer-boundary")
        for part in message.walk():
            if part is not message and part.is_multipart():
                part.set_boundary("inner-boundary")
        message["Bcc"] = "hidden@authority.example"

        expected = io.BytesIO()
        stripped = copy.copy(message)
        del stripped["Bcc"]
        BytesGenerator(expected, policy=email.policy.SMTP).flatten(stripped)
        assert flatten(message) == expected.getvalue()
        assert b"hidden@authority.example" not in flatten(message)


async def test_a_message_with_8bit_content_goes_through_the_negotiating_path(
    transport: SmtpTransport, sink: Sink
) -> None:
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = FROM
    message["To"] = TO
    message["Subject"] = "8-bit"
    message.set_content("삭제 요청 통지\n", charset="utf-8", cte="8bit")

    relayed = await transport.send(message, sender=FROM, recipients=[TO])

    assert relayed.code == 250
    received = sink.received[0]
    assert "BODY=8BITMIME" in received.mail_options
    assert relayed.data == received.data  # the record keeps exactly what was sent
    assert received.parsed().get_content().rstrip() == "삭제 요청 통지"


# -- threading and Message-IDs -------------------------------------------------------------------


async def test_a_resent_notice_keeps_its_message_id_and_reminders_thread_under_it(
    transport: SmtpTransport, renderer: Renderer, sink: Sink
) -> None:
    clock = SimulatedClock(CREATED + timedelta(hours=24))
    channel = make_channel(transport, renderer, clock=clock)
    first = await channel.send(make_content())
    again = await channel.send(make_content())
    reminder = await channel.send(make_content(kind=MessageKind.REMINDER))

    assert first.message_id == again.message_id == f"<{NOTICE_ID}.notice@authority.example>"
    assert reminder.message_id == f"<{NOTICE_ID}.reminder@authority.example>"
    sent = [r.parsed() for r in sink.received]
    assert [m["Message-ID"] for m in sent] == [first.message_id, first.message_id, reminder.message_id]
    threaded = sent[2]
    assert threaded["In-Reply-To"] == first.message_id
    assert threaded["References"] == first.message_id
    assert threaded["Subject"].startswith(f"[{NOTICE_ID}] Reminder:")
    assert threaded["Date"].datetime == clock.now()
    assert "In-Reply-To" not in sent[0]


async def test_an_escalation_goes_to_the_escalation_contacts_with_the_platform_copied(
    transport: SmtpTransport, renderer: Renderer, sink: Sink
) -> None:
    channel = make_channel(transport, renderer, escalation_to=("legal@telegram.example",))
    result = await channel.send(make_content(kind=MessageKind.ESCALATION))

    (received,) = sink.received
    assert received.rcpt_tos == ["legal@telegram.example", TO]
    message = received.parsed()
    assert message["To"].addresses[0].addr_spec == "legal@telegram.example"
    assert message["Cc"].addresses[0].addr_spec == TO
    assert result.message_id == f"<{NOTICE_ID}.escalation@authority.example>"
    assert message["In-Reply-To"] == f"<{NOTICE_ID}.notice@authority.example>"

    # A second escalation (the other bound, breached later) is a message of its own, same thread.
    second = await channel.send(replace(make_content(kind=MessageKind.ESCALATION), follow_up=2))
    assert second.message_id == f"<{NOTICE_ID}.escalation-2@authority.example>"
    later = sink.received[1].parsed()
    assert later["Message-ID"] == second.message_id
    assert later["In-Reply-To"] == f"<{NOTICE_ID}.notice@authority.example>"


async def test_each_message_leaves_with_its_own_verp_sender_that_a_bounce_of_it_names(
    transport: SmtpTransport, renderer: Renderer, sink: Sink
) -> None:
    channel = make_channel(transport, renderer)
    contents = {
        "notice": make_content(),
        "reminder": make_content(kind=MessageKind.REMINDER),
        "escalation": make_content(kind=MessageKind.ESCALATION),
        "escalation-2": replace(make_content(kind=MessageKind.ESCALATION), follow_up=2),
    }
    for content in contents.values():
        await channel.send(content)

    senders = [received.mail_from for received in sink.received]
    assert senders == [
        f"bounces+{NOTICE_ID}@authority.example",
        f"bounces+{NOTICE_ID}.reminder@authority.example",
        f"bounces+{NOTICE_ID}.escalation@authority.example",
        f"bounces+{NOTICE_ID}.escalation-2@authority.example",
    ]
    for tag, received in zip(contents, sink.received, strict=True):
        bounce = mailbox_full_bounce(
            original=received.parsed(),
            verp=received.mail_from,
            recipient=TO,
            host="mx.telegram.example",
            at=CREATED,
        )
        verdict = classify(
            bounce, envelope_recipients=[received.mail_from], our_domains=["authority.example"]
        )
        assert (verdict.kind, verdict.notice_ids, verdict.message) == (MailKind.BOUNCE, (NOTICE_ID,), tag)


# -- the connection pool -------------------------------------------------------------------------


async def test_one_connection_serves_several_sends(
    transport: SmtpTransport, renderer: Renderer, sink: Sink
) -> None:
    channel = make_channel(transport, renderer)
    for _ in range(4):
        await channel.send(make_content())

    assert len(sink.received) == 4
    assert len({r.peer for r in sink.received}) == 1


async def test_concurrent_sends_use_at_most_pool_size_connections(
    server: LoopbackController, renderer: Renderer, sink: Sink
) -> None:
    async with transport_for(server.port, pool_size=2) as transport:
        channel = make_channel(transport, renderer)
        await asyncio.gather(*(channel.send(make_content()) for _ in range(8)))

    assert len(sink.received) == 8
    assert 1 <= len({r.peer for r in sink.received}) <= 2


async def test_a_connection_the_server_dropped_is_replaced(
    server: LoopbackController, transport: SmtpTransport, renderer: Renderer, sink: Sink
) -> None:
    channel = make_channel(transport, renderer)
    await channel.send(make_content())
    server.restart()  # the pooled connection dies with the server

    result = await channel.send(make_content())

    assert result.code == 250
    assert len(sink.received) == 2
    assert sink.received[0].peer != sink.received[1].peer


async def test_an_idle_connection_is_checked_with_noop_before_reuse(
    server: LoopbackController, renderer: Renderer, sink: Sink
) -> None:
    async with transport_for(server.port) as transport:
        transport._idle_check_after = 0.0  # every reuse counts as idle for long enough
        channel = make_channel(transport, renderer)
        await channel.send(make_content())
        await channel.send(make_content())

    assert sink.noops == 1
    assert len({r.peer for r in sink.received}) == 1


async def test_a_4xx_is_transient_and_the_connection_is_not_reused(
    transport: SmtpTransport, renderer: Renderer, sink: Sink
) -> None:
    await make_channel(transport, renderer).send(make_content())
    with pytest.raises(DeliveryError) as caught:
        await make_channel(transport, renderer, to=("tempfail@telegram.example",)).send(make_content())
    await make_channel(transport, renderer).send(make_content())

    assert caught.value.transient is True
    assert caught.value.code == 451
    first, last = sink.received
    assert first.peer != last.peer


async def test_a_5xx_is_permanent(transport: SmtpTransport, renderer: Renderer) -> None:
    with pytest.raises(DeliveryError) as caught:
        await make_channel(transport, renderer, to=("nouser@telegram.example",)).send(make_content())

    assert caught.value.transient is False
    assert caught.value.code == 550


async def test_a_partly_refused_notice_is_delivered_and_says_so(
    transport: SmtpTransport, renderer: Renderer, sink: Sink
) -> None:
    channel = make_channel(transport, renderer, to=(TO, "nouser@telegram.example"))
    result = await channel.send(make_content())

    assert result.code == 250
    assert "1 of 2 recipients refused: 550" in result.detail
    assert sink.received[0].rcpt_tos == [TO]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_a_server_that_is_down_is_a_transient_failure(renderer: Renderer) -> None:
    async with transport_for(_closed_port()) as transport:
        with pytest.raises(DeliveryError) as caught:
            await make_channel(transport, renderer).send(make_content())

    assert caught.value.transient is True


async def test_a_timeout_is_transient_and_the_connection_is_replaced(
    server: LoopbackController, renderer: Renderer, sink: Sink
) -> None:
    async with transport_for(server.port, timeout=0.5) as transport:
        channel = make_channel(transport, renderer)
        await channel.send(make_content())
        sink.delay = 3.0
        with pytest.raises(DeliveryError) as caught:
            await channel.send(make_content(kind=MessageKind.REMINDER))
        sink.delay = 0.0
        await channel.send(make_content(kind=MessageKind.ESCALATION))

    assert caught.value.transient is True
    notice = sink.by_message_id(f"<{NOTICE_ID}.notice@authority.example>")
    escalation = sink.by_message_id(f"<{NOTICE_ID}.escalation@authority.example>")
    assert notice.peer != escalation.peer


async def test_a_closed_transport_refuses_to_send(server: LoopbackController, renderer: Renderer) -> None:
    async with transport_for(server.port) as transport:
        await transport.close()
        with pytest.raises(DeliveryError) as caught:
            await make_channel(transport, renderer).send(make_content())

    assert caught.value.transient is True


# -- STARTTLS and AUTH ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "host", "required"),
    [
        ("auto", "127.0.0.1", False),
        ("auto", "localhost", False),
        ("auto", "::1", False),
        ("auto", "smtp.relay.example", True),
        ("auto", "192.0.2.25", True),
        ("required", "127.0.0.1", True),
        ("off", "smtp.relay.example", False),
    ],
)
def test_starttls_policy(mode: str, host: str, *, required: bool) -> None:
    settings = SmtpSettings(host=host, starttls=mode)

    assert starttls_required(settings) is required


@pytest.mark.parametrize("mode", ["required", "auto"])
async def test_starttls_is_used_when_offered(
    sink: Sink, renderer: Renderer, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext, mode: str
) -> None:
    with running(sink, tls_context=server_tls, require_starttls=True) as server:
        async with transport_for(server.port, tls_context=client_tls, starttls=mode) as transport:
            await make_channel(transport, renderer).send(make_content())

    assert sink.received[0].tls is True


async def test_starttls_required_but_not_offered_is_permanent(
    server: LoopbackController, renderer: Renderer, client_tls: ssl.SSLContext, sink: Sink
) -> None:
    async with transport_for(server.port, tls_context=client_tls, starttls="required") as transport:
        with pytest.raises(DeliveryError, match="does not offer STARTTLS") as caught:
            await make_channel(transport, renderer).send(make_content())

    assert caught.value.transient is False
    assert sink.received == []


async def test_starttls_auto_on_loopback_sends_in_clear_when_not_offered(
    transport: SmtpTransport, renderer: Renderer, sink: Sink
) -> None:
    await make_channel(transport, renderer).send(make_content())

    assert sink.received[0].tls is False


async def test_starttls_off_never_upgrades(
    sink: Sink, renderer: Renderer, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    with running(sink, tls_context=server_tls) as server:
        async with transport_for(server.port, tls_context=client_tls, starttls="off") as transport:
            await make_channel(transport, renderer).send(make_content())

    assert sink.received[0].tls is False


async def test_starttls_off_against_a_server_that_requires_it_is_permanent(
    sink: Sink, renderer: Renderer, server_tls: ssl.SSLContext
) -> None:
    with running(sink, tls_context=server_tls, require_starttls=True) as server:
        async with transport_for(server.port, starttls="off") as transport:
            with pytest.raises(DeliveryError) as caught:
                await make_channel(transport, renderer).send(make_content())

    assert caught.value.transient is False
    assert caught.value.code == 530


async def test_an_untrusted_certificate_is_permanent(
    sink: Sink, renderer: Renderer, server_tls: ssl.SSLContext
) -> None:
    untrusting = ssl.create_default_context()  # the system CAs do not know the trustme CA
    with running(sink, tls_context=server_tls, require_starttls=True) as server:
        async with transport_for(server.port, tls_context=untrusting, starttls="required") as transport:
            with pytest.raises(DeliveryError, match="not trusted") as caught:
                await make_channel(transport, renderer).send(make_content())

    assert caught.value.transient is False
    assert sink.received == []


async def test_auth_after_starttls(
    sink: Sink, renderer: Renderer, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    with running(
        sink,
        tls_context=server_tls,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=authenticator,
    ) as server:
        async with transport_for(
            server.port, tls_context=client_tls, username=USER, password_env="SMTP_TEST_PASSWORD"
        ) as transport:
            with capture_logs() as logs:
                await make_channel(transport, renderer).send(make_content())

    (received,) = sink.received
    assert received.tls is True and received.authenticated is True
    assert PASSWORD not in repr(logs)


async def test_a_wrong_password_is_permanent(
    sink: Sink, renderer: Renderer, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    with running(
        sink, tls_context=server_tls, auth_required=True, auth_require_tls=True, authenticator=authenticator
    ) as server:
        settings = settings_for(
            server.port, password="wrong", username=USER, password_env="SMTP_TEST_PASSWORD"
        )
        transport = SmtpTransport(settings, tls_context=client_tls)
        try:
            with pytest.raises(DeliveryError) as caught:
                await make_channel(transport, renderer).send(make_content())
        finally:
            await transport.close()

    assert caught.value.transient is False
    assert caught.value.code == 535
    assert sink.received == []


async def test_auth_offered_only_after_tls_that_is_unavailable_is_permanent(
    sink: Sink, renderer: Renderer
) -> None:
    with running(sink, auth_require_tls=True, authenticator=authenticator) as server:
        async with transport_for(server.port, username=USER, password_env="SMTP_TEST_PASSWORD") as transport:
            with pytest.raises(DeliveryError, match="offers no AUTH") as caught:
                await make_channel(transport, renderer).send(make_content())

    assert caught.value.transient is False


# -- operations alerts ---------------------------------------------------------------------------


async def test_an_operations_alert_is_plain_text_with_a_message_id_from_its_key(
    transport: SmtpTransport, sink: Sink
) -> None:
    clock = SimulatedClock(CREATED)
    mailer = OperationsMailer(
        transport=transport,
        from_addr=FROM,
        to=["ops@authority.example"],
        domain="authority.example",
        clock=clock,
    )
    message_id = await mailer.alert(
        subject=f"notice {NOTICE_ID} failed\r\nBcc: x@evil.example",
        text="Notice failed after 6h of retries.\n  detail: 451\n",
        key=f"notice.failed:{NOTICE_ID}",
    )
    again = await mailer.alert(subject="again", text="again", key=f"notice.failed:{NOTICE_ID}")

    assert message_id == again
    assert message_id.startswith("<alert.notice.failed-TD-telegram-20240903-000012.")
    assert message_id.endswith("@authority.example>")
    received = sink.received[0]
    assert received.mail_from == FROM and received.rcpt_tos == ["ops@authority.example"]
    message = received.parsed()
    assert_no_defects(message)
    assert message["Message-ID"] == message_id
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Subject"] == f"notice {NOTICE_ID} failed Bcc: x@evil.example"
    assert "Bcc" not in message
    assert message.get_content_type() == "text/plain"
    assert "  detail: 451" in message.get_content()
    assert message["Date"].datetime == CREATED


async def test_an_operations_alert_leaves_with_its_own_verp_sender_when_given_one(
    transport: SmtpTransport, sink: Sink
) -> None:
    mailer = OperationsMailer(
        transport=transport,
        from_addr=FROM,
        to=["ops@authority.example"],
        domain="authority.example",
        clock=SimulatedClock(CREATED),
        envelope_from=VERP,
    )
    message_id = await mailer.alert(subject="notice failed", text="failed", key=f"{NOTICE_ID}.failed")

    (received,) = sink.received
    assert message_id == f"<alert.{NOTICE_ID}.failed@authority.example>"
    assert received.mail_from == f"bounces+alert.{NOTICE_ID}.failed@authority.example"
    assert received.parsed()["Message-ID"] == message_id
    bounce = mailbox_full_bounce(
        original=received.parsed(),
        verp=received.mail_from,
        recipient="ops@authority.example",
        host="mx.authority.example",
        at=CREATED,
    )
    verdict = classify(bounce, envelope_recipients=[received.mail_from])
    assert (verdict.kind, verdict.notice_ids, verdict.message) == (MailKind.BOUNCE, (NOTICE_ID,), "alert")


async def test_an_operations_alert_verp_sender_must_have_the_placeholder(transport: SmtpTransport) -> None:
    with pytest.raises(ValueError, match="notice_id"):
        OperationsMailer(
            transport=transport,
            from_addr=FROM,
            to=["ops@authority.example"],
            domain="authority.example",
            envelope_from="bounces@authority.example",
        )
