"""The API channel against a real aiohttp server standing in for a platform's notice endpoint (SPEC §6.2)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from standardwebhooks.webhooks import Webhook
from structlog.testing import capture_logs

from notifier.channels.api import MAX_RESPONSE_BYTES, ApiChannel, api_payload
from notifier.domain.deadlines import DeadlineProfile
from notifier.domain.models import Evidence, Priority, TakedownRequest
from notifier.domain.notices import (
    GOOD_FAITH_STATEMENT,
    Authority,
    MessageKind,
    NoticeContent,
    SendResult,
)
from notifier.domain.sla import SlaKind
from notifier.errors import ConfigError
from notifier.failures import DeliveryError

TOKEN = "vh-token-3f9a7c"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NOTICE_ID = "TD-videohost-20240903-000012"
CALLBACK = "https://notifier.authority.example/v1/callbacks/videohost"
EXPLANATION = "Synthetic sexual imagery of an identifiable person made without consent."
SHA = "a" * 64
PDQ = "b" * 64
KST = timezone(timedelta(hours=9))

Reply = Callable[[web.Request], Awaitable[web.StreamResponse]]


def notice_content(
    kind: MessageKind = MessageKind.NOTICE, *, callback_url: str | None = None
) -> NoticeContent:
    full = TakedownRequest(
        request_id="kcsc-2024-000148",
        platform="videohost",
        urls=("https://videohost.example/v/1234", "https://videohost.example/v/5678"),
        category="deepfake_sexual_abuse",
        priority=Priority.URGENT,
        legal_basis="Act on the Korea Communications Commission, Art. 21(4)",
        explanation=EXPLANATION,
        decided_at=datetime(2024, 9, 3, 10, 0, tzinfo=KST),
        evidence=(Evidence(sha256=SHA, pdq=PDQ), Evidence(sha256="c" * 64)),
        case_ref="2024-DF-0042",
        territorial_scope=("KR",),
    )
    minimal = TakedownRequest(
        request_id="kcsc-2024-000149",
        platform="videohost",
        urls=("https://videohost.example/v/9999",),
        category="non_consensual_intimate_imagery",
    )
    return NoticeContent(
        notice_id=NOTICE_ID,
        platform="videohost",
        platform_name="VideoHost",
        language="en",
        # Business time of a simulated clock, far from real time: signatures must not use it.
        created_at=datetime(2024, 9, 3, 19, 30, tzinfo=KST),
        ack_by=datetime(2024, 9, 5, 7, 30, tzinfo=UTC),
        remove_by=datetime(2024, 9, 5, 7, 30, 15, tzinfo=UTC),
        authority=Authority(
            name="Korea Communications Standards Commission",
            email="takedown@authority.example",
            reply_to=None,
            timezone="Asia/Seoul",
        ),
        requests=(full, minimal),
        category_labels={"deepfake_sexual_abuse": "Deepfake sexual abuse material"},
        callback_url=callback_url,
        kind=kind,
    )


EXPECTED_ITEMS = [
    {
        "request_id": "kcsc-2024-000148",
        "urls": ["https://videohost.example/v/1234", "https://videohost.example/v/5678"],
        "category": "deepfake_sexual_abuse",
        "legal_basis": "Act on the Korea Communications Commission, Art. 21(4)",
        "explanation": EXPLANATION,
        "evidence": [{"sha256": SHA, "pdq": PDQ}, {"sha256": "c" * 64}],
        "case_ref": "2024-DF-0042",
        "territorial_scope": ["KR"],
        "ack_by": "2024-09-05T07:30:00Z",
        "remove_by": "2024-09-05T07:30:15Z",
        "deadline": None,
    },
    {
        "request_id": "kcsc-2024-000149",
        "urls": ["https://videohost.example/v/9999"],
        "category": "non_consensual_intimate_imagery",
        "legal_basis": None,
        "explanation": None,
        "evidence": [],
        "case_ref": None,
        "territorial_scope": [],
        "ack_by": "2024-09-05T07:30:00Z",
        "remove_by": "2024-09-05T07:30:15Z",
        "deadline": None,
    },
]

EXPECTED_PAYLOAD = {
    "notice_id": NOTICE_ID,
    "platform": "videohost",
    "authority": {"name": "Korea Communications Standards Commission", "email": "takedown@authority.example"},
    "created_at": "2024-09-03T10:30:00Z",
    "ack_by": "2024-09-05T07:30:00Z",
    "remove_by": "2024-09-05T07:30:15Z",
    "callback_url": CALLBACK,
    "good_faith_statement": GOOD_FAITH_STATEMENT,
    "items": EXPECTED_ITEMS,
}


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


async def ticket_reply(request: web.Request) -> web.StreamResponse:
    return web.json_response({"ticket": "VH-1"})


@dataclass
class Platform:
    """A platform's notice endpoint: records what it receives and answers with ``reply``."""

    url: str
    received: list[Received] = field(default_factory=list)
    reply: Reply = ticket_reply
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.received.append(Received(headers=dict(request.headers), body=await request.read()))
        return await self.reply(request)


@pytest.fixture
async def platform() -> AsyncIterator[Platform]:
    app = web.Application()
    holder: list[Platform] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        return await holder[0].handle(request)

    app.router.add_post("/v1/notices", handle)
    async with TestServer(app, host="127.0.0.1", port=0) as server:
        holder.append(Platform(url=str(server.make_url("/v1/notices"))))
        yield holder[0]
        holder[0].released.set()  # let handlers that never answered finish, so the server stops


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def channel(
    session: aiohttp.ClientSession,
    url: str,
    *,
    token: str | None = TOKEN,
    signing_secret: str | None = SECRET,
    timeout: float = 10.0,
) -> ApiChannel:
    return ApiChannel(
        session=session,
        url=url,
        token=token,
        signing_secret=signing_secret,
        timeout=timeout,
        callback_url=CALLBACK,
    )


async def send_failing(api: ApiChannel, content: NoticeContent | None = None) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        await api.send(content or notice_content())
    return caught.value


def answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Reply:
    async def reply(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=body, headers=headers)

    return reply


# --- the body -------------------------------------------------------------------------------------


def test_payload_has_exactly_the_fields_of_spec_6_2() -> None:
    assert api_payload(notice_content(), callback_url=CALLBACK) == EXPECTED_PAYLOAD


def test_each_item_states_its_deadlines_and_the_profile_that_sets_them() -> None:
    profile = DeadlineProfile(
        name="tco_removal_order",
        label="Regulation (EU) 2021/784, Art. 3(3): one hour",
        ack_within=timedelta(hours=1),
        removal_within=timedelta(hours=1),
        urgent=True,
    )
    payload = api_payload(replace(notice_content(), deadline=profile), callback_url=CALLBACK)
    assert [(i["ack_by"], i["remove_by"], i["deadline"]) for i in payload["items"]] == [
        (
            "2024-09-05T07:30:00Z",
            "2024-09-05T07:30:15Z",
            {"profile": "tco_removal_order", "label": "Regulation (EU) 2021/784, Art. 3(3): one hour"},
        )
    ] * 2


def test_payload_without_callback_url_says_null() -> None:
    assert api_payload(notice_content(), callback_url=None)["callback_url"] is None


async def test_platform_receives_the_payload_as_json(
    platform: Platform, session: aiohttp.ClientSession
) -> None:
    await channel(session, platform.url).send(notice_content())

    (received,) = platform.received
    assert received.headers["Content-Type"] == "application/json"
    assert json.loads(received.body) == EXPECTED_PAYLOAD


async def test_callback_url_of_the_notice_content_takes_precedence(
    platform: Platform, session: aiohttp.ClientSession
) -> None:
    own = "https://other.authority.example/v1/callbacks/videohost"
    await channel(session, platform.url).send(notice_content(callback_url=own))

    assert json.loads(platform.received[0].body)["callback_url"] == own


@pytest.mark.parametrize(
    ("kind", "follow_up", "tag"),
    [
        (MessageKind.REMINDER, 1, "reminder"),
        (MessageKind.ESCALATION, 1, "escalation"),
        (MessageKind.ESCALATION, 2, "escalation-2"),  # a later breach of the other bound
    ],
)
async def test_reminder_and_escalation_use_ids_of_their_own(
    platform: Platform, session: aiohttp.ClientSession, kind: MessageKind, follow_up: int, tag: str
) -> None:
    await channel(session, platform.url).send(replace(notice_content(kind), follow_up=follow_up))

    (received,) = platform.received
    own_id = f"{NOTICE_ID}.{tag}"
    assert received.headers["Idempotency-Key"] == own_id
    assert received.headers["webhook-id"] == own_id
    Webhook(SECRET).verify(received.body, received.headers)
    body = json.loads(received.body)
    assert body == {**EXPECTED_PAYLOAD, "kind": kind.value, "regarding": NOTICE_ID}


async def test_an_escalation_names_the_breaches_it_is_about(
    platform: Platform, session: aiohttp.ClientSession
) -> None:
    content = replace(notice_content(MessageKind.ESCALATION), breaches=(SlaKind.REMOVAL_BREACH,), follow_up=2)
    await channel(session, platform.url).send(content)

    body = json.loads(platform.received[0].body)
    assert body == {
        **EXPECTED_PAYLOAD,
        "kind": "escalation",
        "regarding": NOTICE_ID,
        "breaches": ["removal_breach"],
    }


# --- the headers ----------------------------------------------------------------------------------


async def test_headers_carry_bearer_token_idempotency_key_and_a_valid_signature(
    platform: Platform, session: aiohttp.ClientSession
) -> None:
    await channel(session, platform.url).send(notice_content())

    (received,) = platform.received
    headers = received.headers
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Idempotency-Key"] == NOTICE_ID
    assert headers["webhook-id"] == NOTICE_ID
    assert headers["webhook-signature"].startswith("v1,")
    # Real time, although the notice was created in 2024 by a simulated clock.
    assert abs(int(headers["webhook-timestamp"]) - datetime.now(UTC).timestamp()) < 60
    assert Webhook(SECRET).verify(received.body, headers) == EXPECTED_PAYLOAD


async def test_a_resend_carries_the_same_idempotency_key_and_body(
    platform: Platform, session: aiohttp.ClientSession
) -> None:
    api = channel(session, platform.url)
    await api.send(notice_content())
    await api.send(notice_content())

    first, second = platform.received
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == NOTICE_ID
    assert first.body == second.body


async def test_without_token_there_is_no_authorization_header(
    platform: Platform, session: aiohttp.ClientSession
) -> None:
    await channel(session, platform.url, token=None).send(notice_content())

    headers = platform.received[0].headers
    assert "Authorization" not in headers
    assert headers["Idempotency-Key"] == NOTICE_ID


async def test_without_signing_secret_there_are_no_webhook_headers(
    platform: Platform, session: aiohttp.ClientSession
) -> None:
    await channel(session, platform.url, signing_secret=None).send(notice_content())

    headers = {name.lower() for name in platform.received[0].headers}
    assert not {"webhook-id", "webhook-timestamp", "webhook-signature"} & headers
    assert "authorization" in headers


@pytest.mark.parametrize("secret", ["whsec_", "whsec_====", "whsec_abcde", "whsec_not*base64!"])
async def test_a_malformed_signing_secret_is_a_config_error_that_does_not_quote_it(
    session: aiohttp.ClientSession, secret: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        channel(session, "http://127.0.0.1:9/", signing_secret=secret)
    assert str(caught.value) == 'api signing secret is not a Standard Webhooks secret ("whsec_" + base64)'


@pytest.mark.parametrize("token", ["abc123\r\nX-Evil: 1", "abc123 def", "abc123\x00"])
async def test_a_malformed_token_is_a_config_error_that_does_not_quote_it(
    session: aiohttp.ClientSession, token: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        channel(session, "http://127.0.0.1:9/", token=token)
    assert "abc123" not in str(caught.value)


# --- receipts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "ticket"),
    [
        (200, {"ticket": "VH-1"}, "VH-1"),
        (200, {"ticket_id": 7}, "7"),
        (201, {"ticket_id": "VH-2", "status": "queued"}, "VH-2"),
        (200, {"ticket": None, "ticket_id": "VH-3"}, "VH-3"),
        (200, {"ticket": True}, None),
        (200, {"ticket": "line\nbreak"}, None),
        (200, {"ticket": "x" * 1000}, None),
        (200, ["VH-1"], None),
        (200, {"received": True}, None),
    ],
)
async def test_a_2xx_is_delivered_with_the_ticket_of_a_json_body(
    platform: Platform, session: aiohttp.ClientSession, status: int, body: Any, ticket: str | None
) -> None:
    async def reply(request: web.Request) -> web.StreamResponse:
        return web.json_response(body, status=status)

    platform.reply = reply

    result = await channel(session, platform.url).send(notice_content())

    assert result == SendResult(code=status, ticket=ticket, detail=result.detail)
    assert str(status) in result.detail


@pytest.mark.parametrize(
    ("status", "body"), [(202, b""), (204, b""), (200, b"OK"), (200, b"\xff\xfe not utf-8")]
)
async def test_a_2xx_without_a_json_ticket_is_still_delivered(
    platform: Platform, session: aiohttp.ClientSession, status: int, body: bytes
) -> None:
    platform.reply = answer(status, body)

    result = await channel(session, platform.url).send(notice_content())

    assert result.code == status
    assert result.ticket is None
    assert not result.awaiting_submission


async def test_a_json_receipt_just_under_the_read_limit_is_read_whole(
    platform: Platform, session: aiohttp.ClientSession
) -> None:
    padding = "p" * (MAX_RESPONSE_BYTES - 100)
    platform.reply = answer(200, json.dumps({"padding": padding, "ticket": "VH-9"}).encode())

    result = await channel(session, platform.url).send(notice_content())

    assert result.ticket == "VH-9"


async def test_a_huge_response_body_is_cut_at_the_limit_and_the_notice_still_delivered(
    platform: Platform, session: aiohttp.ClientSession
) -> None:
    chunk = b"x" * 65536
    chunks = 256  # 16 MiB of valid JSON: read whole, it would yield the ticket

    async def reply(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            await response.write(b'{"ticket": "VH-1", "padding": "')
            for _ in range(chunks):
                await response.write(chunk)
            await response.write(b'"}')
        except ConnectionError:
            pass  # the client stopped reading and closed the connection, as it should
        return response

    platform.reply = reply

    result = await channel(session, platform.url).send(notice_content())

    assert result.code == 200
    assert result.ticket is None  # cut at MAX_RESPONSE_BYTES, the JSON no longer parses


async def test_a_huge_error_body_is_not_read(platform: Platform, session: aiohttp.ClientSession) -> None:
    platform.reply = answer(503, b"<html>" + b"x" * (8 * 1024 * 1024))

    error = await send_failing(channel(session, platform.url))

    assert error.transient
    assert error.code == 503


# --- failures -------------------------------------------------------------------------------------


async def test_503_is_transient_with_its_code(platform: Platform, session: aiohttp.ClientSession) -> None:
    platform.reply = answer(503)

    error = await send_failing(channel(session, platform.url))

    assert error.transient
    assert error.code == 503
    assert error.retry_after is None


async def test_429_with_retry_after_is_transient_and_says_when(
    platform: Platform, session: aiohttp.ClientSession
) -> None:
    platform.reply = answer(429, headers={"Retry-After": "2"})

    error = await send_failing(channel(session, platform.url))

    assert error.transient
    assert error.code == 429
    assert error.retry_after == timedelta(seconds=2)


@pytest.mark.parametrize("status", [408, 425, 500, 502, 504])
async def test_statuses_worth_retrying_are_transient(
    platform: Platform, session: aiohttp.ClientSession, status: int
) -> None:
    platform.reply = answer(status)

    error = await send_failing(channel(session, platform.url))

    assert error.transient
    assert error.code == status


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422, 307])
async def test_other_statuses_are_permanent(
    platform: Platform, session: aiohttp.ClientSession, status: int
) -> None:
    headers = {"Location": "http://127.0.0.1:9/elsewhere"} if status == 307 else None
    platform.reply = answer(status, headers=headers)

    error = await send_failing(channel(session, platform.url))

    assert not error.transient
    assert error.code == status
    assert len(platform.received) == 1  # a redirect is not followed


async def test_connection_refused_is_transient(session: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The port was free a moment ago and nothing listens on it now.

    error = await send_failing(channel(session, f"http://127.0.0.1:{port}/v1/notices"))

    assert error.transient
    assert error.code is None


async def test_a_platform_that_never_answers_times_out_as_transient(
    platform: Platform, session: aiohttp.ClientSession
) -> None:
    async def never(request: web.Request) -> web.StreamResponse:
        await platform.released.wait()
        return web.Response(status=200)

    platform.reply = never
    started = asyncio.get_running_loop().time()

    error = await send_failing(channel(session, platform.url, timeout=0.5))

    assert error.transient
    assert asyncio.get_running_loop().time() - started < 5
    assert len(platform.received) == 1


async def test_a_body_that_stalls_midway_times_out_as_transient(
    platform: Platform, session: aiohttp.ClientSession
) -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        response.content_length = 100
        await response.prepare(request)
        await response.write(b'{"ticket":')
        await platform.released.wait()
        return response

    platform.reply = stall

    error = await send_failing(channel(session, platform.url, timeout=0.5))

    assert error.transient


# --- logs -----------------------------------------------------------------------------------------


async def test_api_sent_is_logged_with_ids_and_never_the_secrets_or_the_body(
    platform: Platform, session: aiohttp.ClientSession
) -> None:
    with capture_logs() as logs:
        await channel(session, platform.url).send(notice_content())
        platform.reply = answer(401, b'{"error": "bad token ' + TOKEN.encode() + b'"}')
        await send_failing(channel(session, platform.url))

    sent = [entry for entry in logs if entry["event"] == "api.sent"]
    assert sent == [
        {
            "event": "api.sent",
            "log_level": "info",
            "notice_id": NOTICE_ID,
            "platform": "videohost",
            "kind": "notice",
            "http_status": 200,
            "ticket": "VH-1",
        }
    ]
    written = repr(logs)
    for secret in (TOKEN, SECRET, SECRET.removeprefix("whsec_"), EXPLANATION, "Bearer"):
        assert secret not in written


async def test_a_refusal_does_not_echo_the_platform_body_or_the_token(
    platform: Platform, session: aiohttp.ClientSession
) -> None:
    platform.reply = answer(401, b'{"error": "bad token ' + TOKEN.encode() + b'"}')

    error = await send_failing(channel(session, platform.url))

    assert str(error) == error.detail == "HTTP 401 Unauthorized"


async def test_the_record_keeps_the_exact_body_and_headers_without_the_token_and_the_answer(
    platform: Platform, session: aiohttp.ClientSession
) -> None:
    platform.reply = answer(201, b'{"ticket": "VH-1"}')

    result = await channel(session, platform.url).send(notice_content())

    sent, answered = result.evidence
    (received,) = platform.received
    assert (sent.kind, sent.notice_id, sent.payload) == ("api.request", NOTICE_ID, received.body)
    assert "Authorization" not in sent.meta["headers"]
    assert sent.meta["headers"]["webhook-signature"] == received.headers["webhook-signature"]
    assert TOKEN not in json.dumps(sent.meta)
    assert (answered.kind, answered.payload, answered.meta["status"]) == (
        "api.answer",
        b'{"ticket": "VH-1"}',
        201,
    )


async def test_a_refused_call_keeps_what_was_sent_and_the_answer_in_the_error(
    platform: Platform, session: aiohttp.ClientSession
) -> None:
    platform.reply = answer(503, b"busy")

    error = await send_failing(channel(session, platform.url))

    sent, answered = error.evidence
    assert sent.payload == platform.received[0].body
    assert (answered.payload, answered.meta["status"]) == (b"busy", 503)
