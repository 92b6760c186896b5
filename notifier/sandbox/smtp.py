"""An SMTP sink: a real SMTP server (aiosmtpd) in this event loop that keeps what it receives."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass(frozen=True, slots=True)
class Received:
    sender: str
    recipients: tuple[str, ...]
    data: bytes

    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class _Faults:
    # (code line) answers for the next DATA commands, consumed in order.
    data_answers: list[str] = field(default_factory=list)
    # recipient address -> answer to RCPT TO, e.g. "550 5.1.1 no such user"
    recipients: dict[str, str] = field(default_factory=dict)


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        answer = self._sink.faults.recipients.get(address.lower())
        if answer is not None:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self._sink.faults.data_answers:
            return self._sink.faults.data_answers.pop(0)
        content = envelope.original_content or envelope.content or b""
        data = content if isinstance(content, bytes) else content.encode()
        received = Received(sender=str(envelope.mail_from), recipients=tuple(envelope.rcpt_tos), data=data)
        self._sink.received.append(received)
        for listener in list(self._sink.listeners):
            listener(received)
        self._sink._changed.set()
        return "250 2.0.0 OK: queued"


class SmtpSink:
    """``await SmtpSink().start()`` listens on 127.0.0.1 (port 0 picks a free one)."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, tls_context: ssl.SSLContext | None = None
    ) -> None:
        self.host = host
        self.port = port
        self._tls = tls_context
        self.received: list[Received] = []
        self.listeners: list[Callable[[Received], Any]] = []
        self.faults = _Faults()
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._open: list[SMTP] = []
        self._changed = asyncio.Event()

    def _protocol(self) -> SMTP:
        self.connections += 1
        protocol = SMTP(
            _Handler(self), hostname="sink.sandbox.example", tls_context=self._tls, ident="notifier sandbox"
        )
        self._open.append(protocol)  # dropped by stop(), as a crashed server drops them
        return protocol

    async def start(self) -> SmtpSink:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Go down like a crashed server: stop listening and drop every open connection."""
        if self._server is not None:
            self._server.close()
            for protocol in self._open:
                transport = protocol.transport
                if transport is not None:
                    transport.close()
            self._open.clear()
            await self._server.wait_closed()
            self._server = None

    async def wait_for(self, count: int, *, within: float = 30.0) -> list[Received]:
        """Wait until ``count`` messages have arrived (or fail after ``within`` seconds)."""
        async with asyncio.timeout(within):
            while len(self.received) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.received[:count]
