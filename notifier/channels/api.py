"""The API channel: a notice POSTed as JSON to the platform's endpoint (SPEC §6.2).

The body is serialised once, and those exact bytes are what is signed and sent. A platform that
configured a signing secret can check, with any Standard Webhooks library, that the notice comes
from the authority and was not altered; the same ``Idempotency-Key`` on every re-send of a notice
lets it drop the copies a retry after a lost answer produces.

Failures are classified in :mod:`notifier.failures`: connection errors, timeouts, 408, 425, 429 and
5xx are worth retrying (``Retry-After`` is passed on); any other answer outside 2xx is permanent.
Redirects are not followed: a notice endpoint that moved is a configuration to fix, and following
it would replay a signed body, with its bearer token, to an address nobody configured.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from notifier.domain.evidence import EvidenceKind, EvidenceRecord
from notifier.domain.models import format_timestamp
from notifier.domain.notices import (
    GOOD_FAITH_STATEMENT,
    MessageKind,
    NoticeContent,
    SendResult,
    api_message_id,
)
from notifier.errors import ConfigError
from notifier.failures import from_http_exception, from_http_status
from notifier.logging import get_logger

__all__ = ["MAX_RESPONSE_BYTES", "ApiChannel", "api_message_id", "api_payload"]

# Enough for any receipt; a platform (or a proxy's error page) cannot make notifier buffer more.
MAX_RESPONSE_BYTES: Final = 64 * 1024
# A ticket is an identifier the platform's staff quote back; anything longer or with control
# characters is not one, and is not carried into the store, reports and reminder emails.
_MAX_TICKET_CHARS: Final = 256

log = get_logger(__name__)


def api_payload(content: NoticeContent, *, callback_url: str | None) -> dict[str, Any]:
    """The JSON body of SPEC §6.2. A reminder or escalation carries the same notice, marked with
    ``kind`` and ``regarding`` (the notice id it follows up on)."""
    profile = content.deadline
    deadline = {"profile": profile.name, "label": profile.label} if profile is not None else None
    payload: dict[str, Any] = {
        "notice_id": content.notice_id,
        "platform": content.platform,
        "authority": {"name": content.authority.name, "email": content.authority.email},
        "created_at": format_timestamp(content.created_at),
        "ack_by": format_timestamp(content.ack_by),
        "remove_by": format_timestamp(content.remove_by),
        "callback_url": callback_url,
        "good_faith_statement": GOOD_FAITH_STATEMENT,
        "items": [
            {
                "request_id": request.request_id,
                "urls": list(request.urls),
                "category": request.category,
                "legal_basis": request.legal_basis,
                "explanation": request.explanation,
                "evidence": [evidence.as_dict() for evidence in request.evidence],
                "case_ref": request.case_ref,
                "territorial_scope": list(request.territorial_scope),
                # Each request's own deadlines and the profile that sets them (SPEC §14): a notice
                # holds one profile, so they are the notice's.
                "ack_by": format_timestamp(content.ack_by),
                "remove_by": format_timestamp(content.remove_by),
                "deadline": deadline,
            }
            for request in content.requests
        ],
    }
    if content.kind is not MessageKind.NOTICE:
        payload["kind"] = content.kind.value
        payload["regarding"] = content.notice_id
    if content.kind is MessageKind.CLARIFICATION:
        payload["clarification"] = content.note
    if content.kind is MessageKind.WITHDRAWAL:
        payload["withdrawal_reason"] = content.note
    if content.kind is MessageKind.ESCALATION and content.breaches:
        payload["breaches"] = [kind.value for kind in content.breaches]
    return payload


class ApiChannel:
    """Sends notices to one platform's HTTP API.

    The ``session`` belongs to the caller, who closes it: one session (and its connection pool) is
    shared by every API platform. ``callback_url`` is where the platform may POST its
    acknowledgements; a ``callback_url`` on the notice content itself takes precedence.
    """

    name = "api"

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        url: str,
        token: str | None,
        signing_secret: str | None,
        timeout: float,
        callback_url: str | None = None,
    ) -> None:
        self._session = session
        self._url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._callback_url = callback_url
        self._authorization: str | None = None
        if token:
            # Checked here so that a malformed token fails at start with a message that does not
            # quote it, rather than in aiohttp's header validation, whose error would.
            if not token.isprintable() or any(c.isspace() for c in token):
                raise ConfigError("api token contains whitespace or control characters")
            self._authorization = f"Bearer {token}"
        self._webhook: Webhook | None = None
        if signing_secret:
            try:
                self._webhook = Webhook(signing_secret)
            except (binascii.Error, ValueError, EmptyWebhookSecretError):
                raise ConfigError(
                    'api signing secret is not a Standard Webhooks secret ("whsec_" + base64)'
                ) from None

    async def send(self, content: NoticeContent) -> SendResult:
        message_id = api_message_id(content)
        callback_url = content.callback_url or self._callback_url
        body = json.dumps(
            api_payload(content, callback_url=callback_url), ensure_ascii=False, separators=(",", ":")
        ).encode()
        headers = self._headers(message_id, body)
        shown = {k: v for k, v in headers.items() if k.lower() not in _SECRET_HEADERS}
        sent = EvidenceRecord(
            kind=EvidenceKind.API_REQUEST,
            notice_id=content.notice_id,
            request_ids=tuple(r.request_id for r in content.requests),
            payload=body,
            meta={"method": "POST", "url": self._url, "headers": shown, "message_kind": content.message_tag},
        )
        try:
            async with self._session.post(
                self._url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as response:
                status = response.status
                reason = response.reason or ""
                answer = await _read_capped(response.content, MAX_RESPONSE_BYTES)
                answered = _answer_record(content.notice_id, status, reason, response.headers, answer)
                if not 200 <= status < 300:
                    error = from_http_status(status, reason, response.headers.get("Retry-After"))
                    error.evidence = (sent, answered)
                    raise error
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            failure = from_http_exception(error)
            failure.evidence = (sent,)
            raise failure from error
        ticket = _ticket(answer)
        log.info(
            "api.sent",
            notice_id=content.notice_id,
            platform=content.platform,
            kind=content.kind.value,
            http_status=status,
            ticket=ticket,
        )
        return SendResult(
            code=status, ticket=ticket, detail=f"HTTP {status} {reason}".strip(), evidence=(sent, answered)
        )

    async def close(self) -> None:
        """Nothing to release: the session is the caller's."""

    def _headers(self, message_id: str, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Idempotency-Key": message_id}
        if self._authorization is not None:
            headers["Authorization"] = self._authorization
        if self._webhook is not None:
            # Real time, not notifier's clock: the platform checks the timestamp against its own
            # clock (Standard Webhooks allows five minutes), also when notifier runs on a simulated
            # business clock in the demo and the tests.
            now = datetime.now(UTC)
            headers["webhook-id"] = message_id
            headers["webhook-timestamp"] = str(int(now.timestamp()))
            headers["webhook-signature"] = self._webhook.sign(message_id, now, body.decode())
        return headers


# Headers whose values are secrets: never in the evidence record (the signature is kept: it proves
# what was signed, and reveals nothing of the secret).
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


def _answer_record(
    notice_id: str, status: int, reason: str, headers: Mapping[str, str], answer: bytes
) -> EvidenceRecord:
    kept = {k: v for k, v in headers.items() if k.lower() not in _SECRET_HEADERS | {"set-cookie"}}
    return EvidenceRecord(
        kind=EvidenceKind.API_ANSWER,
        notice_id=notice_id,
        payload=answer,
        meta={"status": status, "reason": reason, "headers": kept},
    )


async def _read_capped(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """At most ``limit`` bytes of a response body; the rest is left unread (the connection is then
    closed rather than reused)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _ticket(answer: bytes) -> str | None:
    """The platform's receipt: ``ticket`` (or ``ticket_id``) of a JSON object body, as a string."""
    try:
        data = json.loads(answer)
    except ValueError:  # not JSON, not UTF-8, empty, or cut at MAX_RESPONSE_BYTES
        return None
    if not isinstance(data, dict):
        return None
    for key in ("ticket", "ticket_id"):
        value = data.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            return str(value)
        if isinstance(value, str):
            value = value.strip()
            if value and len(value) <= _MAX_TICKET_CHARS and value.isprintable():
                return value
    return None
