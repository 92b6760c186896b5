"""The SMTP transaction for bytes already as SMTP carries them (notifier.channels.smtp_data).

What :func:`wire_ready` writes is compared with what aiosmtplib's own DATA command writes, for any
bytes; what :func:`relay` sends is read back from a real aiosmtpd server.
"""

from __future__ import annotations

import aiosmtplib
import pytest
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import given
from hypothesis import strategies as st

from notifier.channels.smtp import SmtpTransport
from notifier.channels.smtp_data import relay, wire_ready
from tests.integration.test_email_channel import Sink, running, settings_for

SENDER = "takedown@authority.example"
TO = "abuse@telegram.example"


def as_aiosmtplib_writes(data: bytes) -> bytes:
    """The bytes ``SMTPProtocol.execute_data_command`` writes after ``DATA`` for ``data``."""
    return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(data)) + b".\r\n"


# Short messages drawn from the characters that matter (line ends, periods) and a few others.
messages = st.binary(max_size=64).map(lambda raw: bytes(b"\r\n.a "[byte % 5] for byte in raw))


@given(messages)
def test_wire_ready_writes_what_aiosmtplib_writes_or_declines(data: bytes) -> None:
    ready = wire_ready(data)
    if ready is None:
        # Declined only when some line end is not CRLF.
        assert data.replace(b"\r\n", b"") != data.replace(b"\r\n", b"").replace(b"\r", b"").replace(
            b"\n", b""
        )
    else:
        assert ready == as_aiosmtplib_writes(data)


@given(st.lists(st.sampled_from([b"", b".", b"..", b"a.b", b". a", b"x"]), max_size=12))
def test_wire_ready_takes_every_crlf_message(lines: list[bytes]) -> None:
    data = b"\r\n".join(lines)
    assert wire_ready(data) == as_aiosmtplib_writes(data)


def test_a_lone_line_feed_is_left_to_aiosmtplib() -> None:
    assert wire_ready(b"Subject: x\r\n\r\nbody\n.\r\n") is None
    assert wire_ready(b"Subject: x\r\n\r\nbody\r.\r\n") is None


async def test_lines_starting_with_a_period_arrive_as_written_with_their_size() -> None:
    sink = Sink()
    data = b"Subject: periods\r\n\r\n.first\r\n..second\r\nthird.\r\n.\r\nlast"
    with running(sink) as server:
        transport = SmtpTransport(settings_for(server.port))
        try:
            relayed = await transport.send(data, sender=SENDER, recipients=[TO])
        finally:
            await transport.close()

    (received,) = sink.received
    assert received.data == data + b"\r\n"
    assert f"SIZE={len(data) + 2}" in received.mail_options  # aiosmtpd announces SIZE
    assert relayed.code == 250
    assert received.rcpt_tos == [TO]


async def test_mixed_line_ends_go_through_aiosmtplib_and_arrive_as_crlf() -> None:
    sink = Sink()
    with running(sink) as server:
        transport = SmtpTransport(settings_for(server.port))
        try:
            await transport.send(b"Subject: mixed\n\n.one\r\ntwo\n", sender=SENDER, recipients=[TO])
        finally:
            await transport.close()

    assert sink.received[0].data == b"Subject: mixed\r\n\r\n.one\r\ntwo\r\n"


async def test_every_recipient_refused_raises_as_sendmail_does() -> None:
    sink = Sink()
    with running(sink) as server:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        await smtp.connect()
        try:
            with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as caught:
                await relay(smtp, SENDER, ["nouser@telegram.example", "tempfail@telegram.example"], b"x\r\n")
            refused, _ = await relay(smtp, SENDER, ["nouser@telegram.example", TO], b"y\r\n")
        finally:
            smtp.close()

    assert [error.code for error in caught.value.recipients] == [550, 451]
    assert {address: response.code for address, response in refused.items()} == {
        "nouser@telegram.example": 550
    }
    assert [r.data for r in sink.received] == [b"y\r\n"]
