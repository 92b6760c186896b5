"""Email replies read from an IMAP mailbox (SPEC §4 ``[imap]``, §7).

Every ``imap.poll_every`` the reader connects, logs in, SELECTs the mailbox, lists its UIDs and hands
each message it has not handled before to the :class:`~notifier.ports.MailSink`, then logs out.

What "handled before" means is the point of this module. Messages are remembered in the store by
(mailbox, UIDVALIDITY, UID), never by the ``\\Seen`` flag: staff read, un-read and file the same
mailbox, and their flags are theirs. For the same reason bodies are fetched with ``BODY.PEEK[]``,
which leaves ``\\Seen`` alone. A new UIDVALIDITY means the server renumbered the mailbox, so every
message under it is new to us (the ack service is idempotent for the repeats this causes).

Delivery to the sink is at least once: a message is remembered only *after* the sink returned, so a
crash or a failing sink in between hands it over again at the next poll, never loses it. While the
store is unavailable a poll stops at the first message it cannot take (``store.unavailable``), and
the reader tries again after its backoff.

Polling is transport time, not business time: the wait between polls is on the event loop (woken by
the stop event), and only the ``at`` of a remembered message comes from the :class:`Clock`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, Protocol

import aioimaplib

from notifier.clock import Clock
from notifier.errors import ConfigError, StoreUnavailable, TransientError
from notifier.logging import get_logger
from notifier.ports import MailSink
from notifier.settings import ImapSettings

__all__ = ["SOURCE", "ImapError", "ImapReader", "MailSeen"]

log = get_logger(__name__)

SOURCE: Final = "email:imap"
# Seconds one IMAP command (or the connection and greeting) may take before the poll is abandoned.
COMMAND_TIMEOUT: Final = 30.0
# UIDs asked about in one store lookup: a first poll of a large mailbox stays within SQL parameter limits.
LOOKUP_BATCH: Final = 500

_UIDVALIDITY: Final = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_FETCH_BODY: Final = re.compile(rb"^\d+ FETCH \(.*BODY\[\] \{(\d+)\}$")
_FETCH_UID: Final = re.compile(rb"\bUID (\d+)\b")


class MailSeen(Protocol):
    """Which IMAP messages have been handled: the store's side of the reader (``AckStore``)."""

    async def remembered_mail(self, mailbox: str, uidvalidity: int, uids: Sequence[int]) -> set[int]:
        """The UIDs among ``uids`` (at most :data:`LOOKUP_BATCH`) already remembered under
        (mailbox, uidvalidity); changes nothing."""
        ...

    async def remember_mail(self, mailbox: str, uidvalidity: int, uid: int, *, at: datetime) -> bool:
        """True the first time an IMAP message (mailbox, UIDVALIDITY, UID) is seen."""
        ...


class ImapError(TransientError):
    """The IMAP server refused a step (LOGIN, SELECT, SEARCH, FETCH) or answered nonsense."""


class ImapReader:
    """Polls one mailbox and hands each new message to the sink exactly once per (UIDVALIDITY, UID).

    ``run`` keeps going through any failure: a server that is down, refuses the login or drops the
    connection is logged as ``imap.unavailable`` (with the host, never the password) and retried
    with a doubling wait from ``retry_first`` up to ``retry_max`` seconds.
    """

    def __init__(
        self,
        *,
        settings: ImapSettings,
        sink: MailSink,
        seen: MailSeen,
        clock: Clock,
        tls_context: ssl.SSLContext | None = None,
        timeout: float = COMMAND_TIMEOUT,
        retry_first: float = 1.0,
        retry_max: float = 300.0,
    ) -> None:
        if not settings.host:
            raise ConfigError("imap.host is empty: there is no mailbox to read")
        if settings.password is None:
            raise ConfigError("imap.password_env names no password")
        self._settings = settings
        self._sink = sink
        self._seen = seen
        self._clock = clock
        self._tls_context = tls_context
        self._timeout = timeout
        self._retry_first = retry_first
        self._retry_max = retry_max
        # UIDs known to be remembered under ``_uidvalidity``: saves asking the store about the whole
        # mailbox at every poll. Only a cache; the store is the truth.
        self._uidvalidity: int | None = None
        self._done: set[int] = set()

    @property
    def mailbox(self) -> str:
        return self._settings.mailbox

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; a poll in progress stops between two messages."""
        failures = 0
        while not stop.is_set():
            try:
                await self._poll(stop)
            except StoreUnavailable as error:
                # The store restarts: the poll stopped at the first message it could not take, and
                # that one and the rest stay unremembered, so the next poll reads them again. No
                # wait longer than a regular poll's: the mailbox is fine, only the store was away.
                failures += 1
                cap = max(self._retry_first, min(self._retry_max, self._settings.poll_every.total_seconds()))
                delay = min(self._retry_first * 2 ** (failures - 1), cap)
                log.warning(
                    "store.unavailable",
                    operation="imap",
                    mailbox=self.mailbox,
                    error=str(error),
                    failures=failures,
                    retry_in_s=delay,
                )
            except (OSError, TimeoutError, aioimaplib.AioImapException, ImapError) as error:
                failures += 1
                delay = min(self._retry_first * 2 ** (failures - 1), self._retry_max)
                log.warning(
                    "imap.unavailable",
                    host=self._settings.host,
                    port=self._settings.port,
                    mailbox=self.mailbox,
                    error=self._describe(error),
                    failures=failures,
                    retry_in_s=delay,
                )
            except Exception:
                # The store or something else behind the reader failed; the mailbox keeps the
                # messages, so the next poll picks them up again.
                failures += 1
                delay = min(self._retry_first * 2 ** (failures - 1), self._retry_max)
                log.exception("imap.poll_failed", mailbox=self.mailbox, failures=failures, retry_in_s=delay)
            else:
                if failures:
                    log.info("imap.available", host=self._settings.host, after_failures=failures)
                failures = 0
                delay = self._settings.poll_every.total_seconds()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

    async def poll_once(self) -> int:
        """One connect-search-fetch cycle; the number of messages handed to the sink."""
        return await self._poll(None)

    async def _poll(self, stop: asyncio.Event | None) -> int:
        client, uidvalidity = await self._open()
        try:
            if uidvalidity != self._uidvalidity:
                if self._uidvalidity is not None:
                    log.info(
                        "imap.uidvalidity_changed",
                        mailbox=self.mailbox,
                        before=self._uidvalidity,
                        after=uidvalidity,
                    )
                self._uidvalidity = uidvalidity
                self._done = set()
            uids = await self._search(client)
            self._done &= set(uids)  # forget messages that left the mailbox
            fresh = [uid for uid in uids if uid not in self._done]
            known: set[int] = set()
            for start in range(0, len(fresh), LOOKUP_BATCH):
                batch = fresh[start : start + LOOKUP_BATCH]
                known |= await self._seen.remembered_mail(self.mailbox, uidvalidity, batch)
            self._done |= known
            fresh = [uid for uid in fresh if uid not in known]
            if not fresh:
                log.debug("imap.fetched", mailbox=self.mailbox, uidvalidity=uidvalidity, new=0)
                return 0
            outcomes: Counter[str] = Counter()
            for uid in fresh:
                if stop is not None and stop.is_set():
                    break
                outcomes[await self._hand_over(client, uidvalidity, uid)] += 1
            log.info(
                "imap.fetched",
                mailbox=self.mailbox,
                uidvalidity=uidvalidity,
                new=len(fresh),
                handed=outcomes["handed"],
                failed=outcomes["failed"],
                gone=outcomes["gone"],
                in_mailbox=len(uids),
            )
            return outcomes["handed"]
        finally:
            await self._close(client)

    async def _hand_over(self, client: aioimaplib.IMAP4, uidvalidity: int, uid: int) -> str:
        raw = await self._fetch(client, uid)
        if raw is None:
            return "gone"  # expunged between SEARCH and FETCH
        try:
            await self._sink.handle_mail(raw, source=SOURCE)
        except StoreUnavailable:
            raise  # the next messages would fail the same way: end the poll, read them all again later
        except Exception:
            # Not remembered: the next poll hands it over again.
            log.exception("imap.message_failed", mailbox=self.mailbox, uidvalidity=uidvalidity, uid=uid)
            return "failed"
        # The sink has acted on the message; a cancellation now must not lose the record of it.
        await asyncio.shield(self._seen.remember_mail(self.mailbox, uidvalidity, uid, at=self._clock.now()))
        self._done.add(uid)
        return "handed"

    async def _open(self) -> tuple[aioimaplib.IMAP4, int]:
        settings = self._settings
        client: aioimaplib.IMAP4
        if settings.tls:
            client = aioimaplib.IMAP4_SSL(
                settings.host, settings.port, timeout=self._timeout, ssl_context=self._tls_context
            )
        else:
            client = aioimaplib.IMAP4(settings.host, settings.port, timeout=self._timeout)
        try:
            await client.wait_hello_from_server()
            assert settings.password is not None  # checked in __init__
            response = await client.login(settings.username, settings.password.get_secret_value())
            if response.result != "OK":
                raise ImapError(f"LOGIN as {settings.username} refused: {_status_text(response)}")
            response = await client.select(aioimaplib.quoted(settings.mailbox))
            if response.result != "OK":
                raise ImapError(f"SELECT {settings.mailbox} refused: {_status_text(response)}")
            return client, _uidvalidity(response)
        except BaseException:
            await self._close(client)
            raise

    async def _search(self, client: aioimaplib.IMAP4) -> list[int]:
        response = await client.uid_search("ALL", charset=None)
        if response.result != "OK":
            raise ImapError(f"UID SEARCH refused: {_status_text(response)}")
        return _search_uids(response.lines)

    async def _fetch(self, client: aioimaplib.IMAP4, uid: int) -> bytes | None:
        # BODY.PEEK: reading a message must not mark it \Seen in staff's mailbox.
        response = await client.uid("fetch", str(uid), "(UID BODY.PEEK[])")
        if response.result != "OK":
            raise ImapError(f"UID FETCH {uid} refused: {_status_text(response)}")
        return _fetched_body(response.lines, uid)

    async def _close(self, client: aioimaplib.IMAP4) -> None:
        protocol = client.protocol
        task = asyncio.current_task()
        cancelled = task is not None and task.cancelling() > 0
        if protocol.state in (aioimaplib.AUTH, aioimaplib.SELECTED) and not cancelled:
            # A failed LOGOUT changes nothing: the connection is closed below either way.
            with contextlib.suppress(OSError, TimeoutError, aioimaplib.AioImapException):
                await client.logout()
        transport = protocol.transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def _describe(self, error: BaseException) -> str:
        """An error as text for the log, without the password.

        aioimaplib puts a command's arguments in some of its messages (a LOGIN that timed out
        carries the password), so its commands are named, never printed, and the password is masked
        in whatever text remains.
        """
        if isinstance(error, aioimaplib.CommandTimeout):
            text = f"timed out waiting for {error.command.name}"
        elif isinstance(error, TimeoutError):
            text = f"timed out after {self._timeout:g}s"
        else:
            text = f"{type(error).__name__}: {error}"
        password = self._settings.password
        if password is not None:
            secret = password.get_secret_value()
            for form in {secret, aioimaplib.quoted(secret)[1:-1]}:
                if form:
                    text = text.replace(form, "***")
        return text


def _status_text(response: Any) -> str:
    """The server's text on the tagged status line (always the last line aioimaplib keeps)."""
    lines = response.lines
    last = lines[-1] if lines else b""
    return bytes(last).decode("utf-8", "replace")[:200]


def _uidvalidity(response: Any) -> int:
    for line in response.lines:
        match = _UIDVALIDITY.search(bytes(line))
        if match:
            return int(match.group(1))
    raise ImapError("SELECT answered without UIDVALIDITY")


def _search_uids(lines: Sequence[bytes]) -> list[int]:
    """UIDs from aioimaplib's SEARCH lines (``* SEARCH`` already stripped), before the status line."""
    uids: set[int] = set()
    for line in lines[:-1]:
        uids.update(int(token) for token in bytes(line).split() if token.isdigit())
    return sorted(uids)


def _fetched_body(lines: Sequence[bytes | bytearray], uid: int) -> bytes | None:
    """The ``BODY[]`` literal of message ``uid`` in a UID FETCH response, or None if it is gone.

    aioimaplib keeps a literal as a ``bytearray`` right after the line announcing it
    (``3 FETCH (UID 7 BODY[] {1234}``); the UID may also come after it (``UID 7)``).
    """
    for index, line in enumerate(lines[:-1]):
        if isinstance(line, bytearray):
            continue
        match = _FETCH_BODY.match(line)
        literal = lines[index + 1]
        if match is None or not isinstance(literal, bytearray) or len(literal) != int(match.group(1)):
            continue
        trailer = lines[index + 2] if index + 2 < len(lines) else b""
        found = _FETCH_UID.search(line) or _FETCH_UID.search(bytes(trailer))
        if found is not None and int(found.group(1)) != uid:
            continue
        return bytes(literal)
    return None
