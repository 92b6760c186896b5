"""SMTP delivery for the email channel: a small pool of reused aiosmtplib connections (SPEC §6.1).

At most ``pool_size`` sends run at once, each on a connection of its own, and ``urgent_slots`` more
that only urgent notices may use, so an urgent notice never queues behind a backlog of others;
idle connections wait in a queue for the next send, and one idle for longer than
:data:`IDLE_CHECK_AFTER` seconds is checked with NOOP first. A connection that raised anything (an
SMTP error, a timeout, a cancellation) is closed and replaced, never reused; a send that finds its
pooled connection dropped by the server while idle is tried once more on a fresh one. STARTTLS
follows ``smtp.starttls`` (see :func:`starttls_required`), credentials never cross the network in
clear, a ``signer`` (DKIM) signs the very bytes the server is given, and every failure reaches the
caller as a :class:`~notifier.failures.DeliveryError` classified by
:func:`notifier.failures.from_smtp`. A 7-bit message is handed over by
:func:`notifier.channels.smtp_data.relay`, which spares a 250 kB notice aiosmtplib's passes over
its bytes; one that needs SMTP extensions (8-bit content, international addresses) by ``sendmail``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import email.policy
import io
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.generator import BytesGenerator
from email.message import EmailMessage
from typing import Final, Protocol

import aiosmtplib
from aiosmtplib.email import flatten_message

from notifier.channels.mime import plain
from notifier.channels.smtp_data import relay
from notifier.failures import DeliveryError, from_smtp
from notifier.settings import RelaySettings, is_loopback

__all__ = ["IDLE_CHECK_AFTER", "MailTransport", "SmtpTransport", "flatten", "plain", "starttls_required"]

# Idle connections older than this are checked with NOOP before reuse: servers drop idle clients
# after a few minutes, and a NOOP is cheaper than a failed MAIL FROM.
IDLE_CHECK_AFTER: Final = 30.0
_POLICY: Final = email.policy.SMTP


def starttls_required(settings: RelaySettings) -> bool:
    """Whether a connection must be upgraded with STARTTLS or fail: ``required``, and ``auto``
    towards any host that is not loopback (a relay across a network is not trusted in clear)."""
    return settings.starttls == "required" or (settings.starttls == "auto" and not is_loopback(settings.host))


@dataclass(frozen=True, slots=True)
class Relayed:
    """A message the relay took: its reply code and text, and the exact bytes handed to it (the
    DATA of the SMTP transaction, before dot-stuffing), which the evidence record keeps."""

    code: int
    reply: str
    data: bytes


class MailTransport(Protocol):
    """Hands a finished message to a mail server."""

    async def send(
        self, message: EmailMessage | bytes, *, sender: str, recipients: Sequence[str], urgent: bool = False
    ) -> Relayed:
        """What the server took and answered; raise DeliveryError otherwise. ``message``: the
        message, or its bytes already flattened (sent as they are). ``urgent``: an urgent notice,
        which may use capacity kept for urgent notices."""
        ...


@dataclass(slots=True)
class _Connection:
    smtp: aiosmtplib.SMTP
    last_used: float
    reused: bool = False


class SmtpTransport:
    """A small pool of aiosmtplib connections to one relay (``[smtp]``, or ``[alerts]`` for alerts).

    At most ``pool_size`` sends run at once, each on a connection of its own, plus ``urgent_slots``
    urgent ones (see :meth:`_slot`); idle connections wait in a queue for the next send. A
    connection that raised anything (an SMTP error, a timeout, a cancellation) is closed and
    replaced, never reused. A send that finds its reused connection dropped by the server while
    idle is tried once more on a fresh connection.
    """

    def __init__(
        self,
        settings: RelaySettings,
        *,
        pool_size: int = 4,
        urgent_slots: int = 1,
        tls_context: ssl.SSLContext | None = None,
        idle_check_after: float = IDLE_CHECK_AFTER,
        signer: Callable[[bytes], bytes] | None = None,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        if urgent_slots < 0:
            raise ValueError("urgent_slots must not be negative")
        self._settings = settings
        self._timeout = settings.timeout.total_seconds() or None
        self._tls_required = starttls_required(settings)
        self._tls_context = tls_context
        self._idle_check_after = idle_check_after
        self._sign = signer
        self._idle: asyncio.Queue[_Connection] = asyncio.Queue()
        self._slots = asyncio.Semaphore(pool_size)
        self._urgent_slots = asyncio.Semaphore(urgent_slots) if urgent_slots else None
        self._local_hostname: str | None = None
        self._closed = False

    async def send(
        self, message: EmailMessage | bytes, *, sender: str, recipients: Sequence[str], urgent: bool = False
    ) -> Relayed:
        """Send ``message`` with envelope ``sender`` to ``recipients``: ``Relayed(250, reply, bytes)``.
        Bytes are a message flattened already (see :mod:`notifier.channels.composer`): sent as
        they are, signed first with ``[dkim]``."""
        if self._closed:
            raise DeliveryError("the SMTP transport is shutting down", transient=True)
        if isinstance(message, bytes):
            data = message
        else:
            # Flattening a big message takes milliseconds of CPU: done in a worker thread, so the
            # event loop keeps serving the rest of the daemon (an urgent one's, small, inline).
            data = flatten(message) if urgent else await asyncio.to_thread(flatten, message)
        if self._sign is not None and plain(data, sender, recipients):
            data = self._sign(data)  # else signed in _transmit, over the flattening the server gets
        async with self._slot(urgent):
            connection = await self._checkout()
            try:
                reply = await self._transmit(connection, message, data, sender, recipients)
            except Exception as error:
                self._discard(connection)
                if not (connection.reused and _dropped_while_idle(error)):
                    raise from_smtp(error) from error
                connection = await self._open()
                try:
                    reply = await self._transmit(connection, message, data, sender, recipients)
                except BaseException as retry_error:
                    self._discard(connection)
                    if isinstance(retry_error, Exception):
                        raise from_smtp(retry_error) from retry_error
                    raise
            except BaseException:
                self._discard(connection)  # cancelled mid-command: the session is out of step
                raise
            self._checkin(connection)
            return reply

    async def close(self) -> None:
        """Say QUIT on every idle connection; connections still sending close when they finish."""
        self._closed = True
        while not self._idle.empty():
            connection = self._idle.get_nowait()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.smtp.quit(), timeout=min(self._timeout or 5.0, 5.0))
            connection.smtp.close()
        await asyncio.sleep(0)  # let the transports finish closing their sockets

    # -- the pool ---------------------------------------------------------------------------------

    def _slot(self, urgent: bool) -> asyncio.Semaphore:
        """The send slot to wait for: an urgent send takes a kept slot when one is free, else a
        shared one when one is free, else waits for a kept one (never behind the shared queue)."""
        kept = self._urgent_slots
        if not urgent or kept is None:
            return self._slots
        if kept.locked() and not self._slots.locked():
            return self._slots
        return kept

    async def _checkout(self) -> _Connection:
        while not self._idle.empty():
            connection = self._idle.get_nowait()
            if not connection.smtp.is_connected:
                self._discard(connection)
                continue
            if time.monotonic() - connection.last_used > self._idle_check_after:
                try:
                    await connection.smtp.noop()
                except BaseException as error:
                    self._discard(connection)
                    if not isinstance(error, Exception):
                        raise
                    continue
            connection.reused = True
            return connection
        return await self._open()

    def _checkin(self, connection: _Connection) -> None:
        if self._closed or not connection.smtp.is_connected:
            self._discard(connection)
            return
        connection.last_used = time.monotonic()
        self._idle.put_nowait(connection)

    @staticmethod
    def _discard(connection: _Connection) -> None:
        connection.smtp.close()

    async def _open(self) -> _Connection:
        settings = self._settings
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        smtp = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            local_hostname=self._local_hostname,
            timeout=self._timeout,
            start_tls=False,
            tls_context=self._tls_context,
        )
        try:
            await smtp.connect()
            await smtp.ehlo()
            await self._secure(smtp)
            if settings.username:
                await self._login(smtp)
        except DeliveryError:
            smtp.close()
            raise
        except Exception as error:
            smtp.close()
            raise from_smtp(error) from error
        except BaseException:
            smtp.close()
            raise
        return _Connection(smtp=smtp, last_used=time.monotonic())

    async def _secure(self, smtp: aiosmtplib.SMTP) -> None:
        if self._settings.starttls == "off":
            return
        if smtp.supports_extension("starttls"):
            await smtp.starttls()
            await smtp.ehlo()  # RFC 3207: forget what was learnt before TLS
        elif self._tls_required:
            raise DeliveryError(
                f"the SMTP server {self._settings.host}:{self._settings.port} does not offer STARTTLS "
                f"({self._settings.section}.starttls = {self._settings.starttls})",
                transient=False,
            )

    async def _login(self, smtp: aiosmtplib.SMTP) -> None:
        settings = self._settings
        encrypted = smtp.get_transport_info("sslcontext") is not None
        if not encrypted and not is_loopback(settings.host):
            raise DeliveryError(
                f"refusing to send SMTP credentials to {settings.host} without TLS "
                f"({settings.section}.starttls = off)",
                transient=False,
            )
        if not smtp.supports_extension("auth"):
            raise DeliveryError(
                f"the SMTP server {settings.host}:{settings.port} offers no AUTH "
                f"{'after STARTTLS' if encrypted else 'without TLS'} ({settings.section}.username is set)",
                transient=False,
            )
        password = settings.password.get_secret_value() if settings.password else ""
        await smtp.login(settings.username, password)

    async def _transmit(
        self,
        connection: _Connection,
        message: EmailMessage | bytes,
        data: bytes,
        sender: str,
        recipients: Sequence[str],
    ) -> Relayed:
        smtp = connection.smtp
        options: list[str] = []
        if isinstance(message, EmailMessage) and not plain(data, sender, recipients):
            # 8-bit content or internationalised addresses: the options and the flattening
            # aiosmtplib's send_message would choose, done here so the bytes sent are known (and
            # signed, with [dkim]).
            if smtp.is_ehlo_or_helo_needed:
                await smtp.ehlo()
            options, utf8, cte = _eight_bit_options(smtp, sender, recipients)
            data = flatten_message(message, utf8=utf8, cte_type=cte)
            if self._sign is not None:
                data = self._sign(data)
        if options:
            refused, reply = await smtp.sendmail(sender, list(recipients), data, mail_options=options)
        else:
            refused, reply = await relay(smtp, sender, recipients, data)
        if refused:
            codes = ", ".join(str(response.code) for response in refused.values())
            reply = f"{reply} ({len(refused)} of {len(recipients)} recipients refused: {codes})"
        return Relayed(250, reply, data)


class _Generator(BytesGenerator):
    """The stdlib generator, with every line end (CRLF, CR or LF) made CRLF by three C-level
    replacements per body instead of a Python loop over every line: the same bytes, several times
    faster for large notices (and four times faster than one regex substitution)."""

    def _write_lines(self, lines: str) -> None:
        if lines:
            self.write(lines.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n"))


def flatten(message: EmailMessage) -> bytes:
    """``message`` as the bytes SMTP carries (CRLF line ends), without any ``Bcc`` header."""
    if "Bcc" in message or "Resent-Bcc" in message:
        message = copy.copy(message)
        del message["Bcc"]
        del message["Resent-Bcc"]
    buffer = io.BytesIO()
    _Generator(buffer, policy=_POLICY).flatten(message)
    return buffer.getvalue()


def _eight_bit_options(
    smtp: aiosmtplib.SMTP, sender: str, recipients: Sequence[str]
) -> tuple[list[str], bool, str]:
    """``(MAIL options, utf8, cte_type)`` as :meth:`aiosmtplib.SMTP.send_message` chooses them, from
    the extensions the server announced (every pooled connection said EHLO when it was opened)."""
    options: list[str] = []
    utf8 = not (sender.isascii() and all(r.isascii() for r in recipients))
    if utf8:
        if not smtp.supports_extension("smtputf8"):
            raise aiosmtplib.SMTPNotSupported(
                "An address containing non-ASCII characters was provided, "
                "but SMTPUTF8 is not supported by this server"
            )
        options.append("SMTPUTF8")
    if smtp.supports_extension("8BITMIME"):
        options.append("BODY=8BITMIME")
        return options, utf8, "8bit"
    return options, utf8, "7bit"


def _dropped_while_idle(error: Exception) -> bool:
    """The server closed a pooled connection between two sends (idle timeout, restart)."""
    if isinstance(error, aiosmtplib.SMTPServerDisconnected | ConnectionError):
        return True
    return isinstance(error, aiosmtplib.SMTPResponseException) and error.code == 421
