"""One SMTP mail transaction for a message whose bytes are already as SMTP carries them.

aiosmtplib's ``sendmail`` makes every line end CRLF and quotes every line starting with a period
with two regular-expression passes over the message, and a third pass to state its size when the
server offers SIZE: some 6 ms of the event loop's time for a 250 kB notice, more than everything
else the send costs. notifier's composer already writes CRLF line ends (:func:`flatten`), so
:func:`wire_ready` only has to count to prove it, and quotes the periods with one ``bytes.replace``;
:func:`relay` then runs the transaction (MAIL, RCPT, DATA) with the same commands, answers and
exceptions as ``sendmail``. Bytes whose line ends are mixed go through ``sendmail`` unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import aiosmtplib
from aiosmtplib import SMTPResponse, SMTPStatus
from aiosmtplib.email import parse_address

__all__ = ["relay", "wire_ready"]

_CRLF = b"\r\n"
_END = b".\r\n"


def wire_ready(data: bytes) -> bytes | None:
    """``data`` as the DATA command sends it (periods quoted, the closing ``.`` line added), or
    ``None`` when a lone CR or LF would need the line ends made CRLF first. The bytes are those
    aiosmtplib's ``execute_data_command`` writes for ``data``."""
    crlf = data.count(_CRLF)
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        return None
    if not data.endswith(_CRLF):
        data += _CRLF
    # Every LF follows a CR, so "a line starting with a period" is the start, or a period after CRLF.
    quoted = data.replace(b"\r\n.", b"\r\n..")
    if quoted.startswith(b"."):
        quoted = b"." + quoted
    return quoted + _END


async def relay(
    smtp: aiosmtplib.SMTP, sender: str, recipients: Sequence[str], data: bytes
) -> tuple[dict[str, SMTPResponse], str]:
    """Send ASCII ``data`` from ``sender`` (an ASCII address) to ``recipients``, as ``sendmail``
    would with no options: ``(refused recipients, the server's final reply)``. Raises what
    ``sendmail`` raises (every recipient refused, the sender refused, DATA refused, a dropped
    connection, a timeout), the envelope reset after a refusal as ``sendmail`` resets it. The
    connection must be one the caller uses alone (the transport's pool)."""
    payload = wire_ready(data)
    if payload is None:
        return await smtp.sendmail(sender, list(recipients), data)
    parse_address(sender)
    for recipient in recipients:
        parse_address(recipient)
    options = []
    if smtp.is_ehlo_or_helo_needed:
        await smtp.ehlo()
    if smtp.supports_extension("size"):
        # RFC 1870: the octets of the message as sent, CRLF included, before periods are quoted.
        options.append(f"size={len(data) + (0 if data.endswith(_CRLF) else 2)}")
    try:
        return await _transaction(smtp, sender, recipients, payload, options)
    except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
        # As sendmail does: the envelope reset, so the session can serve the next message.
        with contextlib.suppress(ConnectionError, aiosmtplib.SMTPResponseException):
            await smtp.rset()
        raise


async def _transaction(
    smtp: aiosmtplib.SMTP, sender: str, recipients: Sequence[str], payload: bytes, options: list[str]
) -> tuple[dict[str, SMTPResponse], str]:
    await smtp.mail(sender, options=options)
    refused: dict[str, SMTPResponse] = {}
    errors: list[aiosmtplib.SMTPRecipientRefused] = []
    for recipient in recipients:
        try:
            await smtp.rcpt(recipient)
        except aiosmtplib.SMTPRecipientRefused as error:
            errors.append(error)
            refused[recipient] = SMTPResponse(error.code, error.message)
    if len(errors) == len(recipients):
        raise aiosmtplib.SMTPRecipientsRefused(errors)
    start = await smtp.execute_command(b"DATA")
    if start.code != SMTPStatus.start_input:
        raise aiosmtplib.SMTPDataError(start.code, start.message)
    protocol = smtp.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    # ``execute_data_command``'s second half, without its passes over the bytes.
    protocol.write(payload)
    reply = await protocol.read_response(timeout=smtp.timeout)
    if reply.code != SMTPStatus.completed:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)
    return refused, reply.message
