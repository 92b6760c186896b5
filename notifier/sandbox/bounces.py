"""The bounce a sandbox platform's mail server sends when a mailbox is full.

Real mail servers report a full mailbox as a temporary condition they gave up on: an RFC 3464
report with ``Action: failed`` and ``Status: 4.2.2`` (``452 4.2.2 Mailbox full``), a soft bounce.
It goes to the VERP envelope sender of the message it returns, as every bounce does, so notifier
can tell which of its messages came back.
"""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

__all__ = ["MAILBOX_FULL_STATUS", "mailbox_full_bounce"]

MAILBOX_FULL_STATUS = "4.2.2"
_RETURNED_HEADERS = ("from", "to", "subject", "date", "message-id", "in-reply-to", "references")


def mailbox_full_bounce(
    *, original: EmailMessage, verp: str, recipient: str, host: str, at: datetime
) -> bytes:
    """A Postfix-style delivery-status notification (RFC 3464) for ``recipient``'s full mailbox,
    addressed to ``verp`` (the envelope sender ``original`` came with), returning its headers.
    ``host`` is the reporting mail server's name."""
    boundary = f"bounce-{make_msgid().strip('<>').partition('@')[0]}"
    returned = b"".join(
        f"{name}: {value}\r\n".encode("utf-8", "replace")
        for name, value in original.items()
        if name.lower() in _RETURNED_HEADERS
    )
    head = (
        f"From: MAILER-DAEMON@{host} (Mail Delivery System)\r\n"
        f"To: {verp}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {format_datetime(at)}\r\n"
        f"Message-ID: {make_msgid(domain=host)}\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        f"This is the mail system at host {host}.\r\n\r\n"
        "I'm sorry to have to inform you that your message could not be delivered\r\n"
        f"to one or more recipients.\r\n\r\n<{recipient}>: host {host} said: 452 4.2.2 Mailbox full\r\n"
        "    (in reply to RCPT TO command)\r\n\r\n"
        f"--{boundary}\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; {host}\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        f"Action: failed\r\nStatus: {MAILBOX_FULL_STATUS}\r\n"
        f"Diagnostic-Code: smtp; 452 {MAILBOX_FULL_STATUS} Mailbox full\r\n\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
    ).encode()
    return head + returned + f"\r\n--{boundary}--\r\n".encode()
