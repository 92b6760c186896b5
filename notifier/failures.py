"""Every failure of a channel classified once: transient (worth retrying) or permanent.

SMTP reply codes, HTTP statuses and the exceptions of aiosmtplib, aiohttp and the socket layer
are mapped here and nowhere else; channels raise :class:`DeliveryError` built by these functions,
and the dispatcher asks only ``error.transient``.
"""

from __future__ import annotations

import asyncio
import ssl
from datetime import timedelta

import aiohttp
import aiosmtplib

from notifier.domain.evidence import EvidenceRecord
from notifier.errors import NotifierError

# SMTP 4xx are transient by definition (RFC 5321 §4.2.1); 5xx are permanent, except the few
# servers use for conditions that pass: 552 "mailbox full / message too large for now" is treated
# as permanent, as RFC 5321 asks, and left to the fallback.
_TRANSIENT_HTTP = frozenset({408, 425, 429})


class DeliveryError(NotifierError):
    """A send that did not deliver, with what the other side said."""

    def __init__(
        self,
        detail: str,
        *,
        transient: bool,
        code: int | None = None,
        retry_after: timedelta | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.transient = transient
        self.code = code
        self.retry_after = retry_after
        # What was sent and answered before it failed (the evidence record); set by the channel.
        self.evidence: tuple[EvidenceRecord, ...] = ()


def smtp_code_is_transient(code: int) -> bool:
    return 400 <= code < 500


def http_status_is_transient(status: int) -> bool:
    return status in _TRANSIENT_HTTP or 500 <= status < 600


def parse_retry_after(value: str | None, *, cap: timedelta = timedelta(hours=6)) -> timedelta | None:
    """``Retry-After`` in seconds (the HTTP-date form is rare from APIs and is ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:  # noqa: PLR0124 - NaN check without importing math
        return None
    return min(timedelta(seconds=seconds), cap)


def from_smtp(error: Exception) -> DeliveryError:
    """An aiosmtplib (or socket) exception as a classified DeliveryError."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in error.recipients]
        transient = all(smtp_code_is_transient(c) for c in codes)
        detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in error.recipients)
        return DeliveryError(
            f"recipients refused: {detail}"[:500], transient=transient, code=codes[0] if codes else None
        )
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return DeliveryError(
            f"SMTP {error.code} {error.message}"[:500],
            transient=smtp_code_is_transient(error.code),
            code=error.code,
        )
    if isinstance(error, aiosmtplib.SMTPNotSupported):
        # The server lacks what the message needs (SMTPUTF8, AUTH, STARTTLS): retrying won't add it.
        return DeliveryError(f"SMTP server does not support it: {error}"[:500], transient=False)
    if isinstance(error, ssl.SSLCertVerificationError):
        return DeliveryError(f"TLS certificate not trusted: {error.verify_message}", transient=False)
    if isinstance(error, aiosmtplib.SMTPException | OSError | asyncio.TimeoutError | ssl.SSLError):
        return DeliveryError(f"{type(error).__name__}: {error}"[:500], transient=True)
    return DeliveryError(f"{type(error).__name__}: {error}"[:500], transient=False)


def from_http_status(status: int, reason: str, retry_after: str | None = None) -> DeliveryError:
    return DeliveryError(
        f"HTTP {status} {reason}"[:500],
        transient=http_status_is_transient(status),
        code=status,
        retry_after=parse_retry_after(retry_after),
    )


def from_http_exception(error: Exception) -> DeliveryError:
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        return DeliveryError(f"TLS certificate not trusted: {error}"[:500], transient=False)
    if isinstance(error, aiohttp.ClientError | OSError | asyncio.TimeoutError):
        return DeliveryError(f"{type(error).__name__}: {error}"[:500], transient=True)
    return DeliveryError(f"{type(error).__name__}: {error}"[:500], transient=False)
