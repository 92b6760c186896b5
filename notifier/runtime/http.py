"""The daemon's HTTP server: health, readiness, metrics and request intake (SPEC §5.3, §10)."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from dataclasses import replace
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from notifier.clock import Clock
from notifier.domain.acks import parse_ack
from notifier.domain.evidence import EvidenceKind, EvidenceRecord
from notifier.domain.models import IntakeOutcome
from notifier.domain.notices import parse_notice_id
from notifier.domain.signatures import CallbackRejected, CallbackVerifier
from notifier.domain.validation import MAX_BODY_BYTES
from notifier.errors import ConfigError, InvalidRequest, NotifierError, StoreUnavailable
from notifier.intake.service import IntakeService
from notifier.metrics import Metrics
from notifier.ports import IntakeQueue, Store
from notifier.runtime.console import ConsoleDeps, mount_console
from notifier.services.acks import AckOutcome, AckService
from notifier.services.monitoring import OpenItemsMonitor

log = structlog.get_logger("notifier.http")

# A readiness check waits this long for the store or the queue; a connection attempt that hangs
# (a host that drops packets) would otherwise keep the probe waiting for the driver's own timeout.
READY_CHECK_TIMEOUT_S = 3.0

_SERVICES: web.AppKey[dict[str, Any]] = web.AppKey("services", dict)


def _json(status: int, payload: dict[str, Any]) -> web.Response:
    return web.json_response(payload, status=status)


def _too_large(size: int | None = None) -> web.Response:
    detail = f"body is {size} bytes, " if size is not None else "body is "
    return _json(413, {"error": f"{detail}over the {MAX_BODY_BYTES}-byte limit"})


async def read_limited(request: web.Request) -> bytes | None:
    """The body, or None when it is over the limit (judged by Content-Length first, then bytes)."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return None
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return None
    return body if len(body) <= MAX_BODY_BYTES else None


async def post_request(request: web.Request) -> web.Response:
    services = request.app[_SERVICES]
    token = services["intake_token"]
    if token is not None:
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(), token.encode()):
            log.warning("http.unauthorized", path=request.path)
            return _json(401, {"error": "missing or wrong bearer token"})
    body = await read_limited(request)
    if body is None:
        return _too_large(request.content_length)
    intake: IntakeService = services["intake"]
    try:
        request_id, outcome = await intake.accept(body, source="http:/v1/requests")
    except InvalidRequest as error:
        log.info("request.rejected", source="http:/v1/requests", reason=error.reason)
        return _json(400, {"error": error.reason})
    except NotifierError as error:
        log.error("request.not_stored", source="http:/v1/requests", error=str(error))
        return _json(503, {"error": "the store is unavailable; try again"})
    if outcome is IntakeOutcome.CONFLICT:
        return _json(
            409,
            {
                "request_id": request_id,
                "outcome": "conflict",
                "error": "a request with this request_id and different content was stored first",
            },
        )
    return _json(202, {"request_id": request_id, "outcome": outcome.value})


def _refuse(kind: type[web.HTTPException], message: str) -> web.HTTPException:
    """An HTTP error answer with the JSON body every refusal of this server has."""
    return kind(text=json.dumps({"error": message}), content_type="application/json")


async def _verified_callback(request: web.Request, platform: str) -> tuple[bytes, str]:
    """The body and ``webhook-id`` of a callback whose signature holds; raises the answer otherwise."""
    verifiers: dict[str, CallbackVerifier | None] = request.app[_SERVICES]["callback_verifiers"]
    if platform not in verifiers:
        raise _refuse(web.HTTPNotFound, f"unknown platform {platform[:40]!r}")
    body = await read_limited(request)
    if body is None:
        raise web.HTTPRequestEntityTooLarge(
            max_size=MAX_BODY_BYTES,
            actual_size=request.content_length or MAX_BODY_BYTES + 1,
            text=json.dumps({"error": f"body is over the {MAX_BODY_BYTES}-byte limit"}),
            content_type="application/json",
        )
    verifier = verifiers[platform]
    if verifier is None:
        log.warning("callback.rejected", platform=platform, reason="no signing secret configured")
        raise _refuse(web.HTTPUnauthorized, "callbacks are not configured for this platform")
    try:
        # Real time, not the business clock: the 5-minute tolerance is about the transport.
        webhook_id = verifier.verify(body, request.headers.items(), now=time.time())
    except CallbackRejected as error:
        log.warning("callback.rejected", platform=platform, reason=error.reason)
        raise _refuse(web.HTTPUnauthorized, error.reason) from None
    return body, webhook_id


async def post_callback(request: web.Request) -> web.Response:
    """A platform's signed acknowledgement (Standard Webhooks; SPEC §5.3)."""
    services = request.app[_SERVICES]
    platform = request.match_info["platform"]
    body, webhook_id = await _verified_callback(request, platform)
    acks: AckService = services["acks"]
    clock: Clock = services["clock"]
    try:
        ack = parse_ack(body, source=f"callback:{platform}", received_at=clock.now())
        signed = {k.lower(): v for k, v in request.headers.items() if k.lower().startswith("webhook-")}
        received = EvidenceRecord(
            kind=EvidenceKind.CALLBACK,
            notice_id=ack.notice_id,
            payload=body,
            meta={"platform": platform, "headers": signed},
        )
        ack = replace(ack, webhook_id=webhook_id, evidence=(received,))
    except InvalidRequest as error:
        log.warning("callback.invalid", platform=platform, reason=error.reason, webhook_id=webhook_id)
        raise _refuse(web.HTTPBadRequest, error.reason) from None
    parsed = parse_notice_id(ack.notice_id)
    if parsed is None or parsed[0] != platform:
        log.warning("callback.wrong_platform", platform=platform, notice_id=ack.notice_id)
        raise _refuse(web.HTTPUnprocessableEntity, f"{ack.notice_id} is not a notice to {platform}")
    try:
        # The webhook-id is remembered in the transaction that records the acknowledgement: a
        # replay is answered 204 and not applied again, and a crash loses neither.
        result = await acks.acknowledge(ack)
    except StoreUnavailable:
        raise _refuse(web.HTTPServiceUnavailable, "the store is unavailable; send it again") from None
    if result.outcome in (AckOutcome.UNKNOWN_NOTICE, AckOutcome.UNKNOWN_ITEMS):
        raise _refuse(web.HTTPUnprocessableEntity, result.detail)
    return web.Response(status=204)


async def healthz(request: web.Request) -> web.Response:
    return _json(200, {"status": "ok"})


async def _check(component: Store | IntakeQueue) -> str:
    try:
        async with asyncio.timeout(READY_CHECK_TIMEOUT_S):
            await component.ping()
    except Exception as error:  # a timeout included: a store that does not answer is not ready
        return f"unavailable: {type(error).__name__}"
    return "ok"


async def readyz(request: web.Request) -> web.Response:
    """200 while the store and the queue both answer, 503 (naming which does not) otherwise."""
    services = request.app[_SERVICES]
    names = ("store", "queue")
    results = await asyncio.gather(*(_check(services[name]) for name in names))
    checks = dict(zip(names, results, strict=True))
    ready = all(value == "ok" for value in checks.values())
    return _json(200 if ready else 503, {"status": "ready" if ready else "not ready", "checks": checks})


async def metrics(request: web.Request) -> web.Response:
    services = request.app[_SERVICES]
    open_items: OpenItemsMonitor = services["open_items"]
    await open_items.refresh()  # never raises for an unavailable store: the rest is served anyway
    response = web.Response(body=generate_latest(services["metrics"].exposition))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response


def build_http_app(
    *,
    intake: IntakeService,
    store: Store,
    queue: IntakeQueue,
    metrics_: Metrics,
    intake_token: str | None,
    acks: AckService,
    clock: Clock,
    callback_secrets: dict[str, str | None],
    open_items: OpenItemsMonitor,
    console: ConsoleDeps | None = None,
) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES + 1)
    app[_SERVICES] = {
        "intake": intake,
        "store": store,
        "queue": queue,
        "metrics": metrics_,
        "intake_token": intake_token,
        "acks": acks,
        "clock": clock,
        "callback_verifiers": _verifiers(callback_secrets),
        "open_items": open_items,
    }
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/v1/requests", post_request)
    app.router.add_post("/v1/callbacks/{platform}", post_callback)
    if console is not None:
        mount_console(app, console)
    return app


def _verifiers(secrets: dict[str, str | None]) -> dict[str, CallbackVerifier | None]:
    verifiers: dict[str, CallbackVerifier | None] = {}
    for platform, secret in secrets.items():
        try:
            verifiers[platform] = CallbackVerifier.from_secret(secret) if secret else None
        except ValueError as error:
            raise ConfigError(f"the callback secret of platform {platform}: {error}") from None
    return verifiers


class HttpServer:
    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5)
        self._host = host
        self._port = port
        self.bound_port: int | None = None

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server  # the only way aiohttp exposes the bound port when listening on port 0
        sockets = getattr(server, "sockets", None) or []
        self.bound_port = sockets[0].getsockname()[1] if sockets else self._port
        log.info("http.listening", host=self._host, port=self.bound_port)

    async def stop(self) -> None:
        await self._runner.cleanup()
