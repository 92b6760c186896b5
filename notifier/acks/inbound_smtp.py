"""Email replies forwarded to notifier over SMTP (SPEC §4 ``[inbound_smtp]``, §7).

The authority's mail server (and the demo's simulated platforms) forwards replies and bounces to an
aiosmtpd server running in notifier's own event loop. A message is answered ``250`` only after the
:class:`~notifier.ports.MailSink` has taken it; if the sink fails the answer is ``451`` and the
forwarding server keeps the message and tries again later, so nothing is lost between the two.
Messages over :data:`MAX_MESSAGE_BYTES` are refused with ``552`` (by aiosmtpd, while reading DATA).

There is no authentication: whoever can connect can inject replies, so the listener belongs on
loopback or a private network behind the mail server, and says so in the log otherwise.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Final

from aiosmtpd.smtp import SMTP, Envelope, Session

from notifier.errors import ConfigError, StoreUnavailable
from notifier.logging import get_logger
from notifier.ports import MailSink
from notifier.settings import InboundSmtpSettings, is_loopback

__all__ = ["MAX_MESSAGE_BYTES", "SOURCE", "InboundSmtp"]

log = get_logger(__name__)

SOURCE: Final = "email:smtp"
MAX_MESSAGE_BYTES: Final = 10 * 1024 * 1024


def _split(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    # Same reading as the settings' validation: an empty host means every interface.
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104


class _Handler:
    def __init__(self, owner: InboundSmtp) -> None:
        self._owner = owner

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return await self._owner._deliver(envelope)


class _Server(SMTP):
    """aiosmtpd's protocol, telling its owner when the connection ends."""

    def __init__(self, owner: InboundSmtp, *, hostname: str, data_size_limit: int) -> None:
        super().__init__(
            _Handler(owner),
            hostname=hostname,
            ident="notifier",
            data_size_limit=data_size_limit,
            decode_data=False,  # the sink gets the bytes exactly as sent
            enable_SMTPUTF8=True,
        )
        self._owner = owner

    def connection_lost(self, error: Exception | None) -> None:
        self._owner._connections.discard(self)
        super().connection_lost(error)


class InboundSmtp:
    """``await start()`` listens on ``settings.listen`` (port 0 picks a free one, see :attr:`port`)."""

    def __init__(
        self,
        *,
        settings: InboundSmtpSettings,
        sink: MailSink,
        hostname: str | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        if not settings.listen:
            raise ConfigError("inbound_smtp.listen is empty: there is nothing to listen on")
        self.host, self.port = _split(settings.listen)
        self._sink = sink
        # aiosmtpd would otherwise ask DNS for the FQDN, blocking the loop at every connection.
        self._hostname = hostname or socket.gethostname()
        self._max_bytes = max_message_bytes
        self._server: asyncio.Server | None = None
        self._connections: set[_Server] = set()
        self._in_flight: set[asyncio.Task[bool]] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("inbound_smtp.listening", host=self.host, port=self.port)
        if not is_loopback(self.host):
            log.warning(
                "inbound_smtp.not_loopback",
                host=self.host,
                port=self.port,
                hint="no authentication: only the authority's mail server should reach this address",
            )

    async def stop(self) -> None:
        """Stop listening, let messages being handed to the sink finish, then drop the clients."""
        if self._server is None:
            return
        self._server.close()
        if self._in_flight:
            await asyncio.wait(set(self._in_flight))
            # One more turn of the loop, so their connections write the answer before closing.
            await asyncio.sleep(0)
        for connection in list(self._connections):
            if connection.transport is not None:
                connection.transport.close()
        self._connections.clear()
        await self._server.wait_closed()
        self._server = None
        log.info("inbound_smtp.stopped", host=self.host, port=self.port)

    async def run(self, stop: asyncio.Event) -> None:
        """The supervisor's task: listen until ``stop`` is set."""
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    def _protocol(self) -> _Server:
        server = _Server(self, hostname=self._hostname, data_size_limit=self._max_bytes)
        self._connections.add(server)
        return server

    async def _deliver(self, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        recipients = list(envelope.rcpt_tos)
        # The hand-over is a task of its own, shielded: a client that hangs up mid-way cancels
        # aiosmtpd's connection task, but the sink still finishes what it started (the client will
        # send again; the ack service is idempotent for repeats), and stop() waits for it.
        task = asyncio.create_task(self._hand_over(raw, recipients))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        if await asyncio.shield(task):
            return "250 2.0.0 OK: received"
        return "451 4.3.0 Temporary failure, please send again later"

    async def _hand_over(self, raw: bytes, recipients: list[str]) -> bool:
        try:
            await self._sink.handle_mail(raw, source=SOURCE, envelope_recipients=recipients)
        except StoreUnavailable as error:
            # Expected while the store restarts: the sender keeps the message and sends it again.
            log.warning("store.unavailable", operation="inbound_smtp", error=str(error))
            return False
        except Exception:
            log.exception("inbound_smtp.message_failed", recipients=len(recipients), size=len(raw))
            return False
        log.info("inbound_smtp.received", recipients=len(recipients), size=len(raw))
        return True
