"""The SMTP pool keeps a connection for urgent notices: with every shared connection held by a
slow relay, an urgent notice still goes out at once (real aiosmtpd server)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session

from notifier.channels.rendering import Renderer
from tests.integration.test_email_channel import (
    LoopbackController,
    Sink,
    make_channel,
    make_content,
    renderer,
    running,
    transport_for,
)
from tests.waiting import wait_for

__all__ = ["renderer"]  # the module-scoped fixture, shared with the email channel's tests

URGENT_ID = "TD-telegram-20240903-000099"


class HeldSink(Sink):
    """Holds every message but the urgent notice's until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()  # set from the test's loop, waited on in the server's
        self.held = 0

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        if URGENT_ID.encode() not in data:
            self.held += 1
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 30)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def held() -> Iterator[tuple[HeldSink, LoopbackController]]:
    sink = HeldSink()
    with running(sink) as controller:
        try:
            yield sink, controller
        finally:
            sink.release.set()


async def test_an_urgent_notice_is_sent_while_every_shared_connection_is_busy(
    held: tuple[HeldSink, LoopbackController], renderer: Renderer
) -> None:
    sink, server = held
    async with transport_for(server.port, pool_size=2) as transport:
        channel = make_channel(transport, renderer)
        normal = [asyncio.create_task(channel.send(make_content())) for _ in range(3)]

        async def both_held() -> bool:  # both shared connections are inside DATA, held by the relay
            return sink.held >= 2

        await wait_for(both_held, within=10, what="both shared connections held", interval=0.01)

        result = await asyncio.wait_for(channel.send(make_content(notice_id=URGENT_ID, urgent=True)), 5)

        assert result.code == 250
        assert [URGENT_ID.encode() in r.data for r in sink.received] == [True]
        assert not any(task.done() for task in normal)
        sink.release.set()
        await asyncio.gather(*normal)
    assert len(sink.received) == 4
