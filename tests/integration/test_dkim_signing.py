"""Every email notifier sends leaves DKIM-signed (``[dkim]``), and a real SMTP server receives bytes
that dkimpy verifies against the published key: notices, reminders, escalations, clarification
answers, the operations alerts, and 8-bit messages sent through the negotiating path.

The key is generated here for each run; the DNS answer is the TXT record ``check-config
--dkim-record`` prints, handed to ``dkim.verify`` as its ``dnsfunc``.
"""

from __future__ import annotations

import email.policy
from collections.abc import AsyncIterator, Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from notifier.channels.dkim import dns_record, signer_from
from notifier.channels.email import SmtpTransport
from notifier.clock import SimulatedClock
from notifier.domain.notices import MessageKind
from notifier.settings import Settings, load_settings
from notifier.wiring import Channels
from tests.acceptance.harness import write_config
from tests.integration.test_email_channel import (
    CREATED,
    FROM,
    TO,
    LoopbackController,
    Sink,
    make_content,
    running,
)

pytestmark = pytest.mark.timeout(60)

SELECTOR, DOMAIN = "notices2026", "authority.example"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def server(sink: Sink) -> Iterator[LoopbackController]:
    with running(sink) as controller:
        yield controller


@pytest.fixture
def sink() -> Sink:
    return Sink()


def published(key: rsa.RSAPrivateKey) -> Callable[..., bytes | None]:
    """A DNS with one TXT record: the key's, at ``<selector>._domainkey.<domain>``."""
    record = dns_record(key).encode()

    def txt(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else None

    return txt


def settings(tmp_path: Path, port: int, key: rsa.RSAPrivateKey) -> Settings:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path = write_config(
        tmp_path,
        store_url=f"sqlite:///{tmp_path / 'notifier.db'}",
        queue_url=f"sqlite:///{tmp_path / 'notifier.db'}",
        http_listen="",
        extra=f"""
[smtp]
host = "127.0.0.1"
port = {port}
starttls = "off"
from = "{FROM}"

[dkim]
domain = "{DOMAIN}"
selector = "{SELECTOR}"
private_key_env = "NOTIFIER_TEST_DKIM_KEY"
""",
        platforms=f"""
[platforms.telegram]
name = "Telegram"
channel = "email"
[platforms.telegram.email]
to = ["{TO}"]
[platforms.telegram.escalation]
email = ["legal@telegram.example"]
""",
    )
    return load_settings(path, {"NOTIFIER_TEST_DKIM_KEY": pem})


@pytest.fixture
async def channels(
    tmp_path: Path, server: LoopbackController, key: rsa.RSAPrivateKey
) -> AsyncIterator[Channels]:
    wired = Channels(settings(tmp_path, server.port, key), SimulatedClock(CREATED))
    try:
        yield wired
    finally:
        await wired.close()


def tampered_body(data: bytes) -> bytes:
    head, sep, body = data.partition(b"\r\n\r\n")
    index = body.index(b"Telegram")
    return head + sep + body[:index] + b"Telegrum" + body[index + len(b"Telegram") :]


async def test_a_notice_received_by_the_relay_verifies_against_the_published_key(
    channels: Channels, sink: Sink, key: rsa.RSAPrivateKey
) -> None:
    route = channels.routes()["telegram"]
    await route.primary.send(make_content())

    (received,) = sink.received
    assert received.data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/simple;")
    assert dkim.verify(received.data, dnsfunc=published(key))
    signature = dkim.DKIM(received.data)
    assert signature.verify(dnsfunc=published(key))
    assert signature.domain == DOMAIN.encode()
    signed = set(signature.include_headers)
    assert {b"from", b"to", b"subject", b"date", b"message-id", b"x-notifier-notice-id"} <= signed
    # A changed body, a changed subject, or a key nobody published: each fails.
    assert not dkim.verify(tampered_body(received.data), dnsfunc=published(key))
    assert not dkim.verify(received.data.replace(b"Subject: ", b"Subject: Re: ", 1), dnsfunc=published(key))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert not dkim.verify(received.data, dnsfunc=published(other))


@pytest.mark.parametrize("kind", [MessageKind.REMINDER, MessageKind.ESCALATION, MessageKind.CLARIFICATION])
async def test_reminders_escalations_and_answers_in_the_thread_are_signed_too(
    channels: Channels, sink: Sink, key: rsa.RSAPrivateKey, kind: MessageKind
) -> None:
    await channels.routes()["telegram"].primary.send(make_content(kind=kind))

    (received,) = sink.received
    assert received.parsed()["In-Reply-To"]
    signature = dkim.DKIM(received.data)
    assert signature.verify(dnsfunc=published(key))
    assert {b"in-reply-to", b"references"} <= set(signature.include_headers)
    assert not dkim.verify(tampered_body(received.data), dnsfunc=published(key))


async def test_an_operations_alert_is_signed(channels: Channels, sink: Sink, key: rsa.RSAPrivateKey) -> None:
    mailer = channels.operations()
    assert mailer is not None
    await mailer.alert(subject="notice TD-1 failed", text="Notice TD-1 failed.\n", key="TD-1.failed")

    (received,) = sink.received
    assert received.rcpt_tos == ["ops@authority.example"]
    assert dkim.verify(received.data, dnsfunc=published(key))
    assert not dkim.verify(received.data.replace(b"TD-1 failed.", b"TD-2 failed.", 1), dnsfunc=published(key))


async def test_an_8bit_message_is_signed_over_the_bytes_the_negotiating_path_sends(
    tmp_path: Path, server: LoopbackController, sink: Sink, key: rsa.RSAPrivateKey
) -> None:
    loaded = settings(tmp_path, server.port, key)
    signer = signer_from(loaded.dkim)
    assert signer is not None
    transport = SmtpTransport(loaded.smtp, signer=signer.sign)
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = FROM
    message["To"] = TO
    message["Subject"] = "8-bit"
    message.set_content("삭제 요청 통지\n", charset="utf-8", cte="8bit")
    try:
        await transport.send(message, sender=FROM, recipients=[TO])
    finally:
        await transport.close()

    (received,) = sink.received
    assert "BODY=8BITMIME" in received.mail_options
    assert "삭제 요청 통지".encode() in received.data
    assert dkim.verify(received.data, dnsfunc=published(key))
