"""The signed-callback verifier (Standard Webhooks; SPEC §5.3, §7) under arbitrary and tampered input:
a callback is accepted or refused with :class:`CallbackRejected` naming the header, a correctly
signed one is accepted within the 5-minute tolerance, and one changed after signing never is.

The regression tests at the end pin what fuzzing found in the reference library's ``verify``, which
the daemon called directly before: each of those callbacks made the server answer 500.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from notifier.clock import SimulatedClock
from notifier.domain.signatures import CallbackRejected, CallbackVerifier, decode_secret
from notifier.domain.validation import Vocabulary
from notifier.errors import ConfigError
from notifier.intake.memory import MemoryQueue
from notifier.intake.service import IntakeService
from notifier.metrics import Metrics
from notifier.runtime.http import build_http_app
from notifier.services.acks import AckService
from notifier.services.monitoring import OpenItemsMonitor
from notifier.store import SqlStore
from tests.fuzz import targets
from tests.fuzz.budget import budget

NAMES = st.sampled_from([*targets.CALLBACK_HEADERS, "Webhook-Id", "WEBHOOK-SIGNATURE", "content-type"])
# What aiohttp hands over for a header is any text, undecodable bytes as lone surrogates included.
header_values = st.text(max_size=80) | st.sampled_from(
    ["v1", "v1,", "v1,a,b", "v1,!!!", "v2,AAAA", "v1,AAAA v1", " ", "\udcff", "1e400", "nan", "-1"]
)


@budget(200)
@given(
    body=st.binary(max_size=200),
    headers=st.lists(st.tuples(NAMES, header_values), max_size=5),
    skew=st.integers(-1000, 1000),
)
def test_arbitrary_headers_are_accepted_or_refused_naming_the_header(
    body: bytes, headers: list[tuple[str, str]], skew: int
) -> None:
    targets.check_callback(body, headers, targets.NOW + skew)


webhook_ids = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64)


@budget(200)
@given(
    body=st.binary(max_size=300) | st.text(max_size=100).map(str.encode),
    webhook_id=webhook_ids,
    skew=st.integers(-400, 400) | st.sampled_from([-301, -300, 300, 301]),
    tamper=st.sampled_from(targets.TAMPERINGS),
    at=st.integers(0, 1 << 16),
)
def test_a_signed_callback_holds_only_as_signed_and_within_five_minutes(
    body: bytes, webhook_id: str, skew: int, tamper: str | None, at: int
) -> None:
    targets.check_signed_callback(body, webhook_id, skew, tamper, at)


@budget(100)
@given(secret=st.text(max_size=60))
def test_any_secret_text_decodes_or_is_refused_with_a_reason_that_does_not_quote_it(secret: str) -> None:
    try:
        key = decode_secret(secret)
    except ValueError as error:
        assert "signing secret" in str(error)
        assert secret.removeprefix("whsec_") not in str(error) or len(secret) < 6
    else:
        assert key


# -- regressions: what the reference library's verify let escape ---------------------------------

SIGNED = {"webhook-id": "msg_1", "webhook-timestamp": str(int(targets.NOW))}


@pytest.mark.parametrize(
    "signature",
    ["v1", "v1,a,b", "v1,!!!", "v1,AAAA,", ",", "v1,AAAA v1"],
    ids=["no-comma", "two-commas", "not-base64", "trailing-comma", "bare-comma", "second-entry-bare"],
)
def test_a_malformed_signature_header_is_refused_naming_it_not_raised(signature: str) -> None:
    with pytest.raises(CallbackRejected) as rejected:
        targets.VERIFIER.verify(b"{}", {**SIGNED, "webhook-signature": signature}, now=targets.NOW)
    assert rejected.value.reason.startswith("webhook-signature")


def test_a_body_that_is_not_utf8_is_judged_by_its_signature_not_decoded() -> None:
    body = b'{"notice_id": "\xff"}'
    headers = targets.VERIFIER.sign("msg_1", int(targets.NOW), body)
    assert targets.VERIFIER.verify(body, headers, now=targets.NOW) == "msg_1"
    with pytest.raises(CallbackRejected):
        targets.VERIFIER.verify(body + b" ", headers, now=targets.NOW)


@pytest.mark.parametrize("webhook_id", ["\udcff", "msg 1", "é", "x" * 257], ids=repr)
def test_a_webhook_id_outside_printable_ascii_is_refused_naming_it(webhook_id: str) -> None:
    headers = {**SIGNED, "webhook-id": webhook_id, "webhook-signature": "v1,AAAA"}
    with pytest.raises(CallbackRejected) as rejected:
        targets.VERIFIER.verify(b"{}", headers, now=targets.NOW)
    assert rejected.value.reason.startswith("webhook-id")


@pytest.mark.parametrize("stamp", ["1e400", "nan", "-1", "1725000000.5", "0x66"])
def test_a_timestamp_that_is_not_whole_seconds_is_refused_naming_it(stamp: str) -> None:
    headers = {**SIGNED, "webhook-timestamp": stamp, "webhook-signature": "v1,AAAA"}
    with pytest.raises(CallbackRejected) as rejected:
        targets.VERIFIER.verify(b"{}", headers, now=targets.NOW)
    assert rejected.value.reason.startswith("webhook-timestamp")


@pytest.mark.parametrize("secret", ["whsec_", "whsec_A", "whsec_====="])
def test_a_secret_that_is_not_base64_is_a_config_error_at_startup_not_a_500_per_callback(
    secret: str,
) -> None:
    with pytest.raises(ValueError, match="signing secret"):
        CallbackVerifier.from_secret(secret)
    with pytest.raises(ConfigError, match="telegram"):
        build_http_app(**_app_parts(None), callback_secrets={"telegram": secret})  # type: ignore[arg-type]


# -- over HTTP: hostile callbacks are answered 4xx, never 500 -------------------------------------


def _app_parts(store: SqlStore | None) -> dict[str, object]:
    clock, metrics = SimulatedClock(), Metrics()
    queue = MemoryQueue()
    vocabulary = Vocabulary(platforms=frozenset({"telegram"}), categories=frozenset({"x"}))
    return {
        "intake": IntakeService(
            store=store,  # type: ignore[arg-type]
            queue=queue,
            queue_name="takedown.requests",
            vocabulary=vocabulary,
            clock=clock,
            metrics=metrics,
        ),
        "store": store,
        "queue": queue,
        "metrics_": metrics,
        "intake_token": None,
        "acks": AckService(
            store=store,  # type: ignore[arg-type]
            clock=clock,
            metrics=metrics,
            fallbacks={},
            deliver_within=timedelta(hours=6),
        ),
        "clock": clock,
        "open_items": OpenItemsMonitor(
            store=store,  # type: ignore[arg-type]
            clock=clock,
            platforms=["telegram"],
            collector=metrics.open_items,
        ),
    }


@pytest.fixture
async def server(store: SqlStore) -> AsyncIterator[TestServer]:
    app = build_http_app(**_app_parts(store), callback_secrets={"telegram": targets.SECRET})  # type: ignore[arg-type]
    started = TestServer(app)
    await started.start_server()
    try:
        yield started
    finally:
        await started.close()


async def _post_raw(server: TestServer, headers: list[bytes], body: bytes) -> int:
    """POST a callback with header lines sent as raw bytes (aiohttp's client would refuse some)."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        head = [
            b"POST /v1/callbacks/telegram HTTP/1.1",
            f"Host: {server.host}".encode(),
            f"Content-Length: {len(body)}".encode(),
            b"Connection: close",
            *headers,
        ]
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=10)
    finally:
        writer.close()
        await writer.wait_closed()
    return int(status_line.split()[1])


async def test_hostile_callback_headers_are_answered_401_never_500(server: TestServer) -> None:
    now = str(int(time.time()))
    body = json.dumps({"notice_id": "TD-telegram-20240903-000012", "status": "received"}).encode()
    cases = [
        [b"webhook-id: msg_1", f"webhook-timestamp: {now}".encode(), b"webhook-signature: v1"],
        [b"webhook-id: msg_1", f"webhook-timestamp: {now}".encode(), b"webhook-signature: v1,a,b"],
        [b"webhook-id: msg_1", f"webhook-timestamp: {now}".encode(), b"webhook-signature: v1,!!!"],
        [b"webhook-id: \xff\xfe", f"webhook-timestamp: {now}".encode(), b"webhook-signature: v1,AAAA"],
        [b"webhook-id: msg_1", b"webhook-timestamp: 1e400", b"webhook-signature: v1,AAAA"],
        [b"webhook-id: msg_1", f"webhook-timestamp: {now}".encode()],
    ]
    statuses = [await _post_raw(server, headers, body) for headers in cases]
    assert statuses == [401] * len(cases)


async def test_a_correctly_signed_callback_that_is_not_utf8_is_answered_400_naming_the_body(
    server: TestServer,
) -> None:
    body = b'{"notice_id": "\xff"}'
    signed = targets.VERIFIER.sign("msg_1", int(time.time()), body)
    status = await _post_raw(server, [f"{name}: {value}".encode() for name, value in signed.items()], body)
    assert status == 400
