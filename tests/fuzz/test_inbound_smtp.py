"""The inbound SMTP listener under arbitrary DATA over real aiosmtpd sessions, handing mail to the
real acknowledgement service on a SQLite store holding one delivered notice.

Whatever the bytes, the listener keeps running and loses nothing: a message it answers 250 is
applied (an acknowledgement, a receipt, a bounce, an ignored delay or alert reply) or kept as a
dead letter with a clean reason (unmatched, about no notice of ours, or failing its handling); a
message it does not take is refused with a 5xx the sender keeps it by (a line over RFC 5321's
limit). Never a 451 for a message that would fail the same way each time it is sent again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from notifier.acks.inbound_smtp import SOURCE, InboundSmtp
from notifier.clock import SimulatedClock
from notifier.metrics import Metrics
from notifier.services.acks import AckService, FallbackRule
from notifier.settings import InboundSmtpSettings
from notifier.store import SqlStore
from tests.fuzz import targets
from tests.fuzz.budget import budget
from tests.fuzz.strategies import mutated
from tests.stores import delivered_notice

SEEDS = Path(__file__).parent / "corpus" / "replies"
SEED_NOTICE = "TD-telegram-20240903-000012"
# What the service logs when it has acted on a mail (applied it, or decided it changes nothing).
APPLIED = {
    "ack.received",
    "ack.unchanged",
    "ack.unknown_items",
    "receipt.received",
    "notice.bounced",
    "bounce.ignored",
    "reminder.bounced",
    "escalation.bounced",
    "alert.bounced",
    "mail.delay_notice",
    "mail.ignored",
}


@dataclass
class Handing:
    """The acknowledgement service, recording each mail handed to it and what became of it."""

    service: AckService
    handed: list[bytes] = field(default_factory=list)

    async def handle_mail(self, raw: bytes, *, source: str, envelope_recipients: Sequence[str] = ()) -> None:
        self.handed.append(raw)
        await self.service.handle_mail(raw, source=source, envelope_recipients=envelope_recipients)


@dataclass
class World:
    store: SqlStore
    sink: Handing
    listener: InboundSmtp
    notice_id: str


@pytest.fixture
async def world(store: SqlStore) -> AsyncIterator[World]:
    clock = SimulatedClock()
    notice_id = (await delivered_notice(store, clock, request_id="synthetic-1")).notice_id
    service = AckService(
        store=store,
        clock=clock,
        metrics=Metrics(),
        fallbacks={"telegram": FallbackRule(primary="email", fallback=None)},
        deliver_within=timedelta(hours=6),
        our_domains=["authority.example"],
    )
    sink = Handing(service)
    listener = InboundSmtp(
        settings=InboundSmtpSettings(listen="127.0.0.1:0"), sink=sink, hostname="localhost"
    )
    await listener.start()
    try:
        yield World(store=store, sink=sink, listener=listener, notice_id=notice_id)
    finally:
        await listener.stop()


def _stuffed(data: bytes) -> bytes:
    """``data`` as DATA sends it: lines that start with a dot doubled, then the end marker."""
    lines = [b"." + line if line.startswith(b".") else line for line in data.split(b"\r\n")]
    body = b"\r\n".join(lines)
    return body + (b".\r\n" if body.endswith(b"\r\n") else b"\r\n.\r\n")


async def _reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    lines = []
    while True:
        line = await asyncio.wait_for(reader.readline(), timeout=30)
        lines.append(line)
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3]), b"".join(lines)


async def smtp_session(listener: InboundSmtp, data: bytes, recipient: str) -> int:
    """One SMTP session sending ``data`` byte for byte (dot-stuffed): the code DATA was answered."""
    reader, writer = await asyncio.open_connection(listener.host, listener.port)
    try:
        assert (await _reply(reader))[0] == 220
        for command, expected in (
            (b"EHLO fuzz.example", 250),
            (b"MAIL FROM:<mailer-daemon@mx.t.example>", 250),
            (f"RCPT TO:<{recipient}>".encode(), 250),
            (b"DATA", 354),
        ):
            writer.write(command + b"\r\n")
            code, text = await _reply(reader)
            assert code == expected, text
        writer.write(_stuffed(data))
        code, _ = await _reply(reader)
        writer.write(b"QUIT\r\n")
        await _reply(reader)
        return code
    finally:
        writer.close()
        await writer.wait_closed()


def _seeds() -> list[bytes]:
    return [path.read_bytes() for path in sorted(SEEDS.glob("*.eml"))]


mail = (
    st.binary(max_size=1500)
    | st.sampled_from(_seeds()).flatmap(lambda seed: mutated(seed, max_mutations=3))
    | st.sampled_from(_seeds())
)
recipients = st.sampled_from(["takedown-replies@authority.example", "bounces+{notice}@authority.example"])


@budget(40)
@given(data=mail, recipient=recipients)
async def test_every_message_is_applied_or_kept_with_a_reason_and_the_listener_keeps_running(
    world: World, data: bytes, recipient: str
) -> None:
    # The seeds name a notice of their own; most examples are about the one in the store.
    data = data.replace(SEED_NOTICE.encode(), world.notice_id.encode())
    handed = len(world.sink.handed)
    with capture_logs() as logs:
        code = await smtp_session(world.listener, data, recipient.format(notice=world.notice_id))

    events = [entry for entry in logs if entry.get("source") in (SOURCE, None)]
    if code != 250:
        assert 500 <= code < 600, f"answered {code}: the sender would send it again and again"
        assert len(world.sink.handed) == handed
        return
    assert len(world.sink.handed) == handed + 1
    raw = world.sink.handed[-1]
    kept = [entry for entry in events if entry["event"] == "mail.dead_lettered"]
    applied = [entry for entry in events if entry["event"] in APPLIED]
    assert len(kept) + len(applied) >= 1, f"neither applied nor kept: {[e['event'] for e in events]}"
    if kept:
        targets.assert_clean_reason(kept[0]["reason"])
        stored = await world.store.dead_letters(limit=1000)
        assert any(letter.source == SOURCE and raw.startswith(letter.body) for letter in stored)
    assert not [entry for entry in events if entry["event"] == "mail.failed"], "a mail failed its handling"


async def test_after_hostile_sessions_a_reply_is_still_taken_in(world: World) -> None:
    for data in (b"\x00" * 10, b"." * 5000, b"\r\n" * 50, b"\xff\xfe", b"Subject: =?x?q?\r\n\r\n"):
        await smtp_session(world.listener, data, "takedown-replies@authority.example")
    reply = (
        f"From: abuse@t.example\r\nTo: takedown-replies@authority.example\r\n"
        f"Subject: Re: [{world.notice_id}] Takedown notice\r\n"
        f"In-Reply-To: <{world.notice_id}.notice@authority.example>\r\n\r\nWe received it.\r\n"
    ).encode()
    with capture_logs() as logs:
        assert await smtp_session(world.listener, reply, "takedown-replies@authority.example") == 250
    assert "ack.received" in [entry["event"] for entry in logs]
