"""The properties every fuzzer checks, one function per target, shared by the hypothesis tests and
the atheris harnesses: each takes the fuzzed input and fails with AssertionError (or whatever the
code under test let escape) when a property does not hold.

- Request and acknowledgement parsing: the input parses, or :class:`InvalidRequest` comes with a
  non-empty, printable reason naming the field at fault; what parses round-trips through its wire
  form.
- The callback verifier: a callback is accepted or :class:`CallbackRejected` names the header; a
  correctly signed one is accepted, and one byte changed anywhere is refused.
- The reply classifier: total (a verdict for any bytes, no exception), well-formed and
  deterministic.
"""

from __future__ import annotations

import base64
import json
import re
import unicodedata
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import Webhook

from notifier.domain.acks import Ack, parse_ack, plan_ack
from notifier.domain.errors import InvalidRequest
from notifier.domain.models import NoticeState, RequestState, TakedownRequest
from notifier.domain.notices import parse_notice_id
from notifier.domain.replies import MailKind, MailVerdict, classify
from notifier.domain.signatures import TOLERANCE_S, CallbackRejected, CallbackVerifier
from notifier.domain.validation import Vocabulary, parse_request, request_id_hint

VOCABULARY = Vocabulary(
    platforms=frozenset({"telegram", "videohost", "silent_platform"}),
    categories=frozenset({"deepfake_sexual_abuse", "non_consensual_intimate_imagery", "terrorism"}),
    deadlines=frozenset({"urgent", "standard"}),
    category_deadlines={"terrorism": "urgent"},
)
REQUEST_FIELDS = (
    "request_id",
    "platform",
    "urls",
    "category",
    "priority",
    "legal_basis",
    "explanation",
    "decided_at",
    "evidence",
    "case_ref",
    "territorial_scope",
    "deadline",
)
ACK_FIELDS = ("notice_id", "status", "items", "ticket", "at")
RECEIVED_AT = datetime(2024, 9, 4, 7, 12, tzinfo=UTC)
# A synthetic secret (base64 of "notifier fuzzing key, not a real secret").
SECRET = "whsec_bm90aWZpZXIgZnV6emluZyBrZXksIG5vdCBhIHJlYWwgc2VjcmV0"
VERIFIER = CallbackVerifier.from_secret(SECRET)
NOW = 1_725_000_000.0
CALLBACK_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def assert_clean_reason(reason: str) -> None:
    assert reason, "a rejection without a reason"
    controls = [char for char in reason if unicodedata.category(char) in ("Cc", "Cs")]
    assert not controls, f"control characters {controls!r} in reason {reason!r}"
    assert len(reason) <= 1000, f"a reason of {len(reason)} characters"


def _names_a_field(reason: str, fields: tuple[str, ...]) -> bool:
    """A reason starts by naming what is wrong: the body, a known field (``urls[3]``,
    ``evidence[0].sha256``), or an unknown field it quotes."""
    if reason.startswith("body") or ": unknown field" in reason:
        return True
    head = re.match(r"[a-z_]+", reason)
    return head is not None and head.group(0) in fields


# -- requests -----------------------------------------------------------------------------------


def check_request(body: bytes | str) -> TakedownRequest | None:
    try:
        request = parse_request(body, VOCABULARY)
    except InvalidRequest as error:
        assert_clean_reason(error.reason)
        assert _names_a_field(error.reason, REQUEST_FIELDS), f"reason names no field: {error.reason!r}"
        if isinstance(body, bytes):
            hint = request_id_hint(body)
            assert hint is None or isinstance(hint, str)
        return None
    # The canonical form is itself a valid body, and reads back as the same request.
    again = parse_request(request.canonical_json(), VOCABULARY)
    assert again == request, f"{request!r} read back as {again!r}"
    assert again.content_hash() == request.content_hash()
    assert TakedownRequest.from_canonical(request.canonical()) == request
    return request


# -- acknowledgements ---------------------------------------------------------------------------


def ack_wire(ack: Ack) -> dict[str, Any]:
    """The §5.2 body an acknowledgement was read from, in its canonical shape."""
    body: dict[str, Any] = {"notice_id": ack.notice_id, "status": ack.status.value}
    if ack.items:
        body["items"] = [{"request_id": i.request_id, "status": i.status.value} for i in ack.items]
    if ack.ticket is not None:
        body["ticket"] = ack.ticket
    if ack.platform_at is not None:
        body["at"] = ack.platform_at.isoformat()
    return body


def check_ack(body: bytes, states: tuple[RequestState, ...] = ()) -> Ack | None:
    try:
        ack = parse_ack(body, source="amqp:takedown.acks", received_at=RECEIVED_AT)
    except InvalidRequest as error:
        assert_clean_reason(error.reason)
        assert _names_a_field(error.reason, ACK_FIELDS), f"reason names no field: {error.reason!r}"
        return None
    assert parse_notice_id(ack.notice_id) is not None
    again = parse_ack(json.dumps(ack_wire(ack)).encode(), source=ack.source, received_at=RECEIVED_AT)
    assert again == ack, f"{ack!r} read back as {again!r}"
    # Whatever the notice's requests are in, the plan is total and never moves anything backward.
    ids = [item.request_id for item in ack.items][: len(states)] or ["r-0"]
    requests = {
        rid: states[i % len(states)] if states else RequestState.DELIVERED for i, rid in enumerate(ids)
    }
    for notice_state in (NoticeState.DELIVERED, NoticeState.ACKNOWLEDGED, NoticeState.RESOLVED):
        plan = plan_ack(notice_state, requests, ack)
        for change in plan.changes:
            assert change.before in requests.values()
            assert change.after is not change.before
        if notice_state is NoticeState.RESOLVED:
            assert not plan.changes
    return ack


# -- signed callbacks ---------------------------------------------------------------------------


def check_callback(body: bytes, headers: list[tuple[str, str]], now: float = NOW) -> str | None:
    try:
        webhook_id = VERIFIER.verify(body, headers, now=now)
    except CallbackRejected as error:
        assert_clean_reason(error.reason)
        assert error.reason.startswith(("missing header: ", *CALLBACK_HEADERS)), error.reason
        return None
    assert webhook_id
    return webhook_id


TAMPERINGS = (None, "body", "timestamp", "webhook-id", "signature")


def check_signed_callback(body: bytes, webhook_id: str, skew: int, tamper: str | None, at: int) -> None:
    """A callback signed as a platform signs it (the same signature as the reference library's):
    accepted within the 5-minute tolerance, refused outside it or with one thing changed after
    signing (a bit of the body, the timestamp, a character of the id, a bit of the signature)."""
    timestamp = int(NOW) + skew
    headers = VERIFIER.sign(webhook_id, timestamp, body)
    try:
        text = body.decode()
    except UnicodeDecodeError:
        pass
    else:
        when = datetime.fromtimestamp(timestamp, tz=UTC)
        assert Webhook(SECRET).sign(webhook_id, when, text) == headers["webhook-signature"]
    if tamper is None:
        accepted = check_callback(body, list(headers.items()))
        assert (accepted == webhook_id) == (abs(skew) <= TOLERANCE_S), (skew, accepted)
        return
    if tamper == "body":
        changed = bytearray(body or b"x")
        if body:
            changed[at % len(body)] ^= 1 << (at % 8)
        body = bytes(changed)
    elif tamper == "timestamp":
        headers["webhook-timestamp"] = str(timestamp + 1 + at % 100)
    elif tamper == "webhook-id":
        index = at % len(webhook_id)
        other = "A" if webhook_id[index] != "A" else "B"
        headers["webhook-id"] = webhook_id[:index] + other + webhook_id[index + 1 :]
    else:
        digest = bytearray(base64.b64decode(headers["webhook-signature"].removeprefix("v1,")))
        digest[at % len(digest)] ^= 1 << (at % 8)
        headers["webhook-signature"] = "v1," + base64.b64encode(bytes(digest)).decode()
    assert check_callback(body, list(headers.items())) is None, f"accepted with the {tamper} changed"


# -- the reply classifier -----------------------------------------------------------------------

MESSAGE_TAG = re.compile(r"(?:notice|reminder|escalation)(?:-[0-9]{1,3})?|alert")


def assert_well_formed(verdict: MailVerdict) -> None:
    assert isinstance(verdict.kind, MailKind)
    assert_clean_reason(verdict.reason)
    assert all(parse_notice_id(notice) for notice in verdict.notice_ids), verdict.notice_ids
    assert bool(verdict.notice_ids) == bool(verdict.matched_by)
    if verdict.kind is MailKind.HUMAN:
        assert verdict.notice_ids
    if verdict.kind is MailKind.UNRELATED:
        assert verdict.notice_ids == ()
        assert verdict.message is None
    if verdict.kind is not MailKind.HUMAN:
        assert not verdict.counts_as_acknowledgement
    if verdict.removal_claimed:  # a human reply's wording; unmatched, only beside a ticket that may match
        assert verdict.kind is MailKind.HUMAN or (verdict.kind is MailKind.UNRELATED and verdict.ticket)
    if verdict.kind is not MailKind.BOUNCE:
        assert verdict.bounce_status is None
        assert not verdict.delayed
    assert verdict.message is None or MESSAGE_TAG.fullmatch(verdict.message), verdict.message
    assert verdict.ticket is None or not any(unicodedata.category(c) == "Cc" for c in verdict.ticket)


def check_mail(raw: bytes, recipients: tuple[str, ...] = ()) -> MailVerdict:
    verdict = classify(raw, envelope_recipients=recipients, our_domains=("authority.example",))
    assert_well_formed(verdict)
    again = classify(raw, envelope_recipients=recipients, our_domains=("authority.example",))
    assert again == verdict, f"two readings differ: {verdict!r} then {again!r}"
    return verdict
