"""The IMAP reader against a private Dovecot (``tests/integration/dovecot.py``).

Each test reads a mailbox of its own on the session's server. The ``seen`` store is
:class:`MemorySeen` below, a fake of :class:`notifier.acks.imap.MailSeen`: the store's
``remember_mail`` exists, but the read side the reader needs (``remembered_mail``) is not in the
store yet. Messages are put in and inspected with the standard library's imaplib, a client
independent of the aioimaplib under test.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from notifier.acks import imap as imap_module
from notifier.acks.imap import SOURCE, ImapReader
from notifier.clock import SimulatedClock
from notifier.settings import ImapSettings
from tests.integration.dovecot import Dovecot
from tests.waiting import wait_for

PASSWORD_ENV = "TEST_IMAP_PASSWORD"


@dataclass
class MemorySeen:
    """What the store keeps for the reader: (mailbox, uidvalidity, uid) → when it was handled."""

    remembered: dict[tuple[str, int, int], datetime] = field(default_factory=dict)

    async def remembered_mail(self, mailbox: str, uidvalidity: int, uids: Sequence[int]) -> set[int]:
        return {uid for uid in uids if (mailbox, uidvalidity, uid) in self.remembered}

    async def remember_mail(self, mailbox: str, uidvalidity: int, uid: int, *, at: datetime) -> bool:
        key = (mailbox, uidvalidity, uid)
        if key in self.remembered:
            return False
        self.remembered[key] = at
        return True


@dataclass
class RecordingSink:
    """Keeps what it is handed; ``fail_next`` makes that many hand-overs raise first."""

    received: list[tuple[bytes, str, tuple[str, ...]]] = field(default_factory=list)
    fail_next: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle_mail(self, raw: bytes, *, source: str, envelope_recipients: Sequence[str] = ()) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("the ack service is down")
        self.received.append((raw, source, tuple(envelope_recipients)))
        self.changed.set()

    @property
    def raws(self) -> list[bytes]:
        return [raw for raw, _, _ in self.received]

    async def wait_for(self, count: int, *, within: float = 30.0) -> None:
        async with asyncio.timeout(within):
            while len(self.received) < count:
                self.changed.clear()
                await self.changed.wait()


def reply(n: int) -> bytes:
    return (
        f"From: abuse@telegram.example\r\nTo: takedown-replies@authority.example\r\n"
        f"Subject: Re: [TD-telegram-20240903-{n:06d}] Takedown notice\r\n"
        f"Message-ID: <reply-{n}-{uuid.uuid4().hex}@telegram.example>\r\n\r\n"
        f"We have received your notice {n}.\r\n"
    ).encode()


def imap_settings(
    dovecot: Dovecot, mailbox: str, *, password: str | None = None, **extra: Any
) -> ImapSettings:
    data = {
        "host": dovecot.host,
        "port": dovecot.port,
        "username": dovecot.username,
        "password_env": PASSWORD_ENV,
        "mailbox": mailbox,
        "poll_every": "60s",
        "tls": False,
        **extra,
    }
    secret = dovecot.password if password is None else password
    return ImapSettings.model_validate(data, context={"environ": {PASSWORD_ENV: secret}})


@pytest.fixture
async def mailbox(dovecot: Dovecot) -> AsyncIterator[str]:
    """A mailbox of this test's own on the session's Dovecot."""
    name = f"Replies-{uuid.uuid4().hex[:10]}"
    await asyncio.to_thread(dovecot.create, name)
    yield name
    await asyncio.to_thread(dovecot.delete, name)


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock()


def reader(
    dovecot: Dovecot, mailbox: str, sink: RecordingSink, seen: MemorySeen, clock: SimulatedClock, **kw: Any
) -> ImapReader:
    settings = kw.pop("settings", None) or imap_settings(dovecot, mailbox)
    return ImapReader(settings=settings, sink=sink, seen=seen, clock=clock, **kw)


def count(logs: Sequence[Mapping[str, Any]], event: str) -> int:
    return sum(1 for entry in logs if entry["event"] == event)


async def append(dovecot: Dovecot, mailbox: str, raw: bytes, *, flags: str = "") -> int:
    return await asyncio.to_thread(dovecot.append, mailbox, raw, flags=flags)


async def test_appended_messages_are_handed_over_once_and_a_second_poll_hands_over_nothing(
    dovecot: Dovecot, mailbox: str, clock: SimulatedClock
) -> None:
    messages = [reply(n) for n in range(3)]
    uids = [await append(dovecot, mailbox, raw) for raw in messages]
    uidvalidity = await asyncio.to_thread(dovecot.uidvalidity, mailbox)
    sink, seen = RecordingSink(), MemorySeen()
    imap = reader(dovecot, mailbox, sink, seen, clock)

    with capture_logs() as logs:
        assert await imap.poll_once() == 3
        assert await imap.poll_once() == 0

    assert sink.raws == messages  # the bytes as stored, in UID order
    assert {source for _, source, _ in sink.received} == {SOURCE} == {"email:imap"}
    assert seen.remembered == {(mailbox, uidvalidity, uid): clock.now() for uid in uids}
    fetched = [entry for entry in logs if entry["event"] == "imap.fetched" and entry.get("new")]
    assert len(fetched) == 1
    assert fetched[0]["handed"] == 3
    assert fetched[0]["failed"] == 0
    assert fetched[0]["uidvalidity"] == uidvalidity


async def test_a_restarted_reader_with_the_same_store_hands_over_nothing_again(
    dovecot: Dovecot, mailbox: str, clock: SimulatedClock
) -> None:
    for n in range(2):
        await append(dovecot, mailbox, reply(n))
    seen = MemorySeen()
    first = RecordingSink()
    assert await reader(dovecot, mailbox, first, seen, clock).poll_once() == 2

    second = RecordingSink()
    assert await reader(dovecot, mailbox, second, seen, clock).poll_once() == 0
    assert second.received == []


async def test_staff_marking_messages_seen_or_unseen_changes_nothing_and_a_new_message_is_handed_over_once(
    dovecot: Dovecot, mailbox: str, clock: SimulatedClock
) -> None:
    uids = [await append(dovecot, mailbox, reply(n)) for n in range(3)]
    sink, seen = RecordingSink(), MemorySeen()
    imap = reader(dovecot, mailbox, sink, seen, clock)
    assert await imap.poll_once() == 3

    await asyncio.to_thread(dovecot.set_seen, mailbox, uids[:2], seen=True)
    assert await imap.poll_once() == 0
    await asyncio.to_thread(dovecot.set_seen, mailbox, uids, seen=False)
    assert await imap.poll_once() == 0
    restarted = reader(dovecot, mailbox, sink, seen, clock)
    assert await restarted.poll_once() == 0

    late = reply(99)
    await append(dovecot, mailbox, late)
    assert await restarted.poll_once() == 1
    assert await restarted.poll_once() == 0
    assert len(sink.received) == 4
    assert sink.raws[-1] == late


async def test_fetching_leaves_every_message_flag_as_staff_left_it(
    dovecot: Dovecot, mailbox: str, clock: SimulatedClock
) -> None:
    unread = await append(dovecot, mailbox, reply(1))
    read = await append(dovecot, mailbox, reply(2), flags=r"\Seen")
    flagged = await append(dovecot, mailbox, reply(3), flags=r"\Flagged")
    before = await asyncio.to_thread(dovecot.flags, mailbox)

    assert await reader(dovecot, mailbox, RecordingSink(), MemorySeen(), clock).poll_once() == 3

    after = await asyncio.to_thread(dovecot.flags, mailbox)
    assert r"\Seen" not in after[unread]
    assert r"\Seen" in after[read]
    assert r"\Seen" not in after[flagged]
    assert {uid: flags - {r"\Recent"} for uid, flags in after.items()} == {
        uid: flags - {r"\Recent"} for uid, flags in before.items()
    }


async def test_a_message_the_sink_fails_on_is_handed_over_again_at_the_next_poll(
    dovecot: Dovecot, mailbox: str, clock: SimulatedClock
) -> None:
    messages = [reply(1), reply(2)]
    first = await append(dovecot, mailbox, messages[0])
    second = await append(dovecot, mailbox, messages[1])
    sink, seen = RecordingSink(fail_next=1), MemorySeen()
    imap = reader(dovecot, mailbox, sink, seen, clock)

    with capture_logs() as logs:
        assert await imap.poll_once() == 1

    failed = [entry for entry in logs if entry["event"] == "imap.message_failed"]
    assert [entry["uid"] for entry in failed] == [first]
    assert failed[0]["log_level"] == "error"
    assert {key[2] for key in seen.remembered} == {second}  # only what the sink took

    assert await imap.poll_once() == 1
    assert {key[2] for key in seen.remembered} == {first, second}
    assert await imap.poll_once() == 0
    assert sink.raws == [messages[1], messages[0]]  # each once: the failed one a poll later


async def test_a_new_uidvalidity_hands_the_recreated_mailbox_over_again(
    dovecot: Dovecot, mailbox: str, clock: SimulatedClock
) -> None:
    await append(dovecot, mailbox, reply(1))
    sink, seen = RecordingSink(), MemorySeen()
    imap = reader(dovecot, mailbox, sink, seen, clock)
    assert await imap.poll_once() == 1
    before = await asyncio.to_thread(dovecot.uidvalidity, mailbox)

    # Deleted and created again: the server numbers its messages afresh under a new UIDVALIDITY,
    # so UID 1 is a different message now.
    await asyncio.to_thread(dovecot.delete, mailbox)
    await asyncio.to_thread(dovecot.create, mailbox)
    after = await asyncio.to_thread(dovecot.uidvalidity, mailbox)
    assert after != before
    renumbered = [reply(10), reply(11)]
    assert [await append(dovecot, mailbox, raw) for raw in renumbered] == [1, 2]

    with capture_logs() as logs:
        assert await imap.poll_once() == 2
    assert sink.raws[1:] == renumbered
    assert {(uv, uid) for _, uv, uid in seen.remembered} == {(before, 1), (after, 1), (after, 2)}
    changed = [entry for entry in logs if entry["event"] == "imap.uidvalidity_changed"]
    assert [(entry["before"], entry["after"]) for entry in changed] == [(before, after)]

    assert await reader(dovecot, mailbox, sink, seen, clock).poll_once() == 0


async def test_a_wrong_password_is_logged_and_retried_without_crashing_or_logging_the_password(
    dovecot: Dovecot, mailbox: str, clock: SimulatedClock, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "not-the-password-4b1d"
    settings = imap_settings(dovecot, mailbox, password=wrong)
    sink = RecordingSink()
    imap = reader(
        dovecot, mailbox, sink, MemorySeen(), clock, settings=settings, retry_first=0.01, retry_max=0.05
    )
    stop = asyncio.Event()
    caplog.set_level(logging.DEBUG)

    with capture_logs() as logs:
        task = asyncio.create_task(imap.run(stop))

        async def failed_three_times() -> bool:
            assert not task.done(), "the reader stopped on its own"
            return count(logs, "imap.unavailable") >= 3

        await wait_for(failed_three_times, within=30, what="three failed logins")
        stop.set()
        async with asyncio.timeout(10):
            await task

    unavailable = [entry for entry in logs if entry["event"] == "imap.unavailable"]
    assert {entry["host"] for entry in unavailable} == {"127.0.0.1"}
    assert {entry["log_level"] for entry in unavailable} == {"warning"}
    assert [entry["failures"] for entry in unavailable[:3]] == [1, 2, 3]
    assert all("LOGIN" in entry["error"] for entry in unavailable)
    assert sink.received == []
    for text in (repr(logs), caplog.text):
        assert wrong not in text
        assert dovecot.password not in text


async def test_run_hands_over_what_arrives_between_polls_and_returns_when_stopped(
    dovecot: Dovecot, mailbox: str, clock: SimulatedClock
) -> None:
    settings = imap_settings(dovecot, mailbox, poll_every="0.05s")
    sink, seen = RecordingSink(), MemorySeen()
    imap = reader(dovecot, mailbox, sink, seen, clock, settings=settings)
    stop = asyncio.Event()
    task = asyncio.create_task(imap.run(stop))
    messages = [reply(1), reply(2)]
    try:
        await append(dovecot, mailbox, messages[0])
        await sink.wait_for(1)
        await append(dovecot, mailbox, messages[1])
        await sink.wait_for(2)
    finally:
        stop.set()
        async with asyncio.timeout(10):
            await task
    assert sink.raws == messages
    assert len(seen.remembered) == 2


async def test_an_unreachable_server_is_logged_as_unavailable_and_retried(clock: SimulatedClock) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = ImapSettings.model_validate(
        {"host": "127.0.0.1", "port": port, "username": "u", "password_env": PASSWORD_ENV, "tls": False},
        context={"environ": {PASSWORD_ENV: "pw-never-logged"}},
    )
    imap = ImapReader(
        settings=settings,
        sink=RecordingSink(),
        seen=MemorySeen(),
        clock=clock,
        retry_first=0.01,
        retry_max=0.02,
    )
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(imap.run(stop))

        async def failed_twice() -> bool:
            return count(logs, "imap.unavailable") >= 2

        await wait_for(failed_twice, within=30, what="two failed connections")
        stop.set()
        async with asyncio.timeout(10):
            await task
    first = next(entry for entry in logs if entry["event"] == "imap.unavailable")
    assert (first["host"], first["port"]) == ("127.0.0.1", port)
    assert "pw-never-logged" not in repr(logs)


def test_login_in_clear_text_to_a_host_that_is_not_loopback_is_refused() -> None:
    # Refused by the settings themselves, so `notifier check-config` says it before a start does.
    with pytest.raises(ValidationError, match="the password would cross the network in clear text"):
        ImapSettings.model_validate(
            {
                "host": "imap.authority.example",
                "port": 143,
                "username": "u",
                "password_env": PASSWORD_ENV,
                "tls": False,
            },
            context={"environ": {PASSWORD_ENV: "pw"}},
        )


async def test_with_tls_the_reader_checks_the_server_certificate(
    dovecot: Dovecot, mailbox: str, clock: SimulatedClock
) -> None:
    assert dovecot.tls_ca_pem is not None
    await append(dovecot, mailbox, reply(1))
    settings = imap_settings(dovecot, mailbox, port=dovecot.tls_port, tls=True)
    trusting = ssl.create_default_context(cadata=dovecot.tls_ca_pem.decode())
    sink = RecordingSink()
    assert (
        await reader(
            dovecot, mailbox, sink, MemorySeen(), clock, settings=settings, tls_context=trusting
        ).poll_once()
        == 1
    )

    # The system's default trust does not know the test CA: the handshake fails, nothing is read.
    untrusting = reader(dovecot, mailbox, RecordingSink(), MemorySeen(), clock, settings=settings)
    with pytest.raises(ssl.SSLCertVerificationError):
        await untrusting.poll_once()


async def test_the_store_is_asked_about_a_large_mailbox_in_batches(
    dovecot: Dovecot, mailbox: str, clock: SimulatedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imap_module, "LOOKUP_BATCH", 2)
    for n in range(5):
        await append(dovecot, mailbox, reply(n))
    asked: list[int] = []

    class CountingSeen(MemorySeen):
        async def remembered_mail(self, mailbox: str, uidvalidity: int, uids: Sequence[int]) -> set[int]:
            asked.append(len(uids))
            return await super().remembered_mail(mailbox, uidvalidity, uids)

    seen, sink = CountingSeen(), RecordingSink()
    assert await reader(dovecot, mailbox, sink, seen, clock).poll_once() == 5
    assert asked == [2, 2, 1]
    asked.clear()
    assert await reader(dovecot, mailbox, sink, seen, clock).poll_once() == 0
    assert asked == [2, 2, 1]
    assert len(sink.received) == 5
