"""The composition root: builds the adapters from settings and wires the services together."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack

import aiohttp
import structlog

from notifier.acks.imap import ImapReader
from notifier.acks.inbound_smtp import InboundSmtp
from notifier.channels.api import ApiChannel
from notifier.channels.email import EmailChannel, OperationsMailer, SmtpTransport
from notifier.channels.manual import ManualChannel
from notifier.channels.rendering import Renderer
from notifier.clock import Clock, SystemClock
from notifier.domain.notices import Authority
from notifier.domain.sla import SlaBounds
from notifier.domain.validation import Vocabulary
from notifier.intake.amqp import AmqpQueue
from notifier.intake.local import LocalQueue
from notifier.intake.service import IntakeService
from notifier.metrics import Metrics
from notifier.ports import Channel, IntakeQueue, Store
from notifier.runtime.ack_queue import AckQueueConsumer
from notifier.runtime.http import HttpServer, build_http_app
from notifier.runtime.supervisor import Supervisor
from notifier.services.acks import AckService, FallbackRule
from notifier.services.alerts import OperationsAlerts
from notifier.services.dispatcher import Dispatcher, Route
from notifier.services.monitoring import OpenItemsMonitor
from notifier.services.sla import SlaMonitor
from notifier.settings import PlatformSettings, Settings, mask_url, sqlite_path
from notifier.store import create_store
from notifier.store.runlock import acquire_run_lock

log = structlog.get_logger("notifier.app")


def vocabulary(settings: Settings) -> Vocabulary:
    return Vocabulary(
        platforms=frozenset(settings.platforms),
        categories=frozenset(settings.categories),
        deadlines=frozenset(settings.deadlines),
        category_deadlines=settings.category_deadlines,
    )


def create_queue(settings: Settings) -> IntakeQueue:
    url = settings.queue.resolved_url
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        return LocalQueue(path)
    return AmqpQueue(
        url,
        prefetch=settings.queue.prefetch,
        delivery_limit=settings.queue.delivery_limit,
        queues=[settings.queue.requests, settings.queue.acks],
    )


async def open_store(settings: Settings) -> Store:
    path = sqlite_path(settings.store.resolved_url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    return await create_store(settings.store.resolved_url)


def authority(settings: Settings) -> Authority:
    a = settings.authority
    return Authority(name=a.name, email=a.email, reply_to=a.reply_to, timezone=a.timezone)


class Channels:
    """The shared transports (one SMTP connection pool, one HTTP session, and the alerts' own SMTP
    pool when configured) and the channels built on them."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.renderer = Renderer(settings.templates.dir)
        self.smtp = SmtpTransport(settings.smtp)
        # Alerts over a relay of their own when [alerts] names one: an alert that the notice relay
        # is failing must not depend on it. Alerts are few, so one connection is plenty.
        self.alerts_smtp = SmtpTransport(settings.alerts, pool_size=1) if settings.alerts.host else None
        self.session = aiohttp.ClientSession()

    def channel(self, platform_id: str, platform: PlatformSettings, kind: str) -> Channel:
        settings = self.settings
        if kind == "email":
            assert platform.email is not None  # settings validation guarantees it
            return EmailChannel(
                transport=self.smtp,
                renderer=self.renderer,
                authority=authority(settings),
                from_addr=settings.smtp.from_,
                to=platform.email.to,
                cc=platform.email.cc,
                envelope_from=settings.smtp.envelope_from,
                reply_to=settings.authority.reply_to,
                escalation_to=platform.escalation.email,
                clock=self.clock,
            )
        if kind == "api":
            assert platform.api is not None
            token, secret = platform.api.token, platform.api.signing_secret
            return ApiChannel(
                session=self.session,
                url=platform.api.url,
                token=token.get_secret_value() if token else None,
                signing_secret=secret.get_secret_value() if secret else None,
                timeout=platform.api.timeout.total_seconds(),
                callback_url=self.callback_url(platform_id),
            )
        return ManualChannel(outbox=settings.manual.outbox, renderer=self.renderer)

    def callback_url(self, platform_id: str) -> str | None:
        base = self.settings.http.public_url.rstrip("/")
        return f"{base}/v1/callbacks/{platform_id}" if base else None

    def routes(self) -> dict[str, Route]:
        settings = self.settings
        routes: dict[str, Route] = {}
        for platform_id, platform in settings.platforms.items():
            routes[platform_id] = Route(
                platform=platform_id,
                name=platform.name,
                language=platform.language,
                primary=self.channel(platform_id, platform, platform.channel),
                fallback=self.channel(platform_id, platform, platform.fallback)
                if platform.fallback
                else None,
                max_items=platform.batch.max_items,
                max_wait=platform.batch.max_wait,
                rate_per_minute=platform.rate_per_minute,
                ack_within=platform.sla.ack_within or settings.sla.ack_within,
                removal_within=platform.sla.removal_within or settings.sla.removal_within,
                callback_url=self.callback_url(platform_id) if platform.api is not None else None,
                profiles=settings.platform_profiles(platform_id),
            )
        return routes

    def escalations(self) -> dict[str, Channel]:
        """For platforms not reached by email, an email channel to their escalation contacts (an
        email platform's own channel already sends escalations there, in the notice's thread)."""
        settings = self.settings
        channels: dict[str, Channel] = {}
        for platform_id, platform in settings.platforms.items():
            if platform.channel == "email" or not platform.escalation.email:
                continue
            channels[platform_id] = EmailChannel(
                transport=self.smtp,
                renderer=self.renderer,
                authority=authority(settings),
                from_addr=settings.smtp.from_,
                to=platform.escalation.email,
                cc=platform.email.to if platform.email is not None else (),
                envelope_from=settings.smtp.envelope_from,
                reply_to=settings.authority.reply_to,
                escalation_to=platform.escalation.email,
                clock=self.clock,
            )
        return channels

    def operations(self) -> OperationsMailer | None:
        to = self.settings.authority.operations_email
        if not to:
            return None
        domain = self.settings.authority.email.rpartition("@")[2]
        return OperationsMailer(
            transport=self.alerts_smtp or self.smtp,
            from_addr=self.settings.alerts.from_ or self.settings.smtp.from_,
            to=to,
            domain=domain,
            clock=self.clock,
            # Its own VERP tag: a bounce of an alert is told apart from one of a notice.
            envelope_from=self.settings.smtp.envelope_from,
        )

    async def close(self) -> None:
        await self.smtp.close()
        if self.alerts_smtp is not None:
            await self.alerts_smtp.close()
        await self.session.close()


def sla_bounds(settings: Settings) -> dict[str, SlaBounds]:
    """Each platform's bounds: its own where it sets them, else the [sla] defaults."""
    sla = settings.sla
    return {
        platform_id: SlaBounds(
            ack_within=platform.sla.ack_within or sla.ack_within,
            removal_within=platform.sla.removal_within or sla.removal_within,
            remind_at=platform.sla.remind_at or sla.remind_at,
            file_within=platform.sla.file_within or sla.file_within,
        )
        for platform_id, platform in settings.platforms.items()
    }


def profile_bounds(settings: Settings) -> dict[tuple[str, str], SlaBounds]:
    """Each deadline profile's bounds on each platform (its overrides applied); ``file_within`` is
    the platform's, since filing a portal notice is the authority's own clock."""
    platform_bounds = sla_bounds(settings)
    return {
        (platform_id, name): SlaBounds(
            ack_within=profile.ack_within,
            removal_within=profile.removal_within,
            remind_at=profile.remind_at,
            file_within=platform_bounds[platform_id].file_within,
        )
        for platform_id in settings.platforms
        for name, profile in settings.platform_profiles(platform_id).items()
    }


def callback_secrets(settings: Settings) -> dict[str, str | None]:
    """Per platform, the secret its callbacks are signed with: its own, else the shared one."""
    shared = settings.http.callback_secret
    secrets: dict[str, str | None] = {}
    for platform_id, platform in settings.platforms.items():
        own = platform.api.signing_secret if platform.api is not None else None
        chosen = own or shared
        secrets[platform_id] = chosen.get_secret_value() if chosen is not None else None
    return secrets


def ack_service(
    settings: Settings,
    store: Store,
    clock: Clock,
    metrics: Metrics,
    *,
    on_redelivery: Callable[[], None] | None = None,
    alerts: OperationsAlerts | None = None,
) -> AckService:
    fallbacks = {
        platform_id: FallbackRule(primary=platform.channel, fallback=platform.fallback)
        for platform_id, platform in settings.platforms.items()
    }
    return AckService(
        store=store,
        clock=clock,
        metrics=metrics,
        fallbacks=fallbacks,
        deliver_within=settings.sla.deliver_within,
        our_domains=[settings.authority.email.rpartition("@")[2]],
        on_redelivery=on_redelivery,
        alerts=alerts,
    )


class Daemon:
    """``notifier run``: every service of the daemon, started and stopped together."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.metrics = Metrics()
        self.supervisor = Supervisor(grace=settings.runtime.grace.total_seconds())
        self._resources = AsyncExitStack()
        self.http: HttpServer | None = None
        self.store: Store | None = None
        self.queue: IntakeQueue | None = None
        self.inbound_smtp: InboundSmtp | None = None

    async def start(self) -> None:
        """Open the store and the queue, start the HTTP server and the background services.

        If any part fails to start, whatever was already opened is closed again before the error
        propagates, so a failed start leaves no lock, connection or socket behind.
        """
        try:
            await self._start()
        except BaseException:
            await self._resources.aclose()
            raise

    async def _start(self) -> None:
        settings = self.settings
        for path in sorted(settings.sqlite_files()):
            path.parent.mkdir(parents=True, exist_ok=True)
            self._resources.callback(acquire_run_lock(path).close)
        store = self.store = await open_store(settings)
        self._resources.push_async_callback(store.close)
        queue = self.queue = create_queue(settings)
        self._resources.push_async_callback(queue.close)
        await queue.connect()
        intake = IntakeService(
            store=store,
            queue=queue,
            queue_name=settings.queue.requests,
            vocabulary=vocabulary(settings),
            clock=self.clock,
            metrics=self.metrics,
            batch_size=settings.queue.batch_size,
        )
        channels = Channels(settings, self.clock)
        self._resources.push_async_callback(channels.close)
        routes = channels.routes()
        self.dispatcher = Dispatcher(
            store=store,
            routes=routes,
            authority=authority(settings),
            category_labels=settings.category_labels,
            clock=self.clock,
            metrics=self.metrics,
            deliver_within=settings.sla.deliver_within,
            alerts=channels.operations(),
            lease=settings.runtime.lease,
            concurrency=settings.runtime.send_concurrency,
            in_call_wait=settings.runtime.in_call_retry_wait.total_seconds(),
        )
        intake.on_accepted = self.dispatcher.kick
        self.acks = ack_service(
            settings,
            store,
            self.clock,
            self.metrics,
            on_redelivery=self.dispatcher.kick,
            alerts=channels.operations(),
        )
        if settings.http.listen:
            token = settings.http.intake_token
            app = build_http_app(
                intake=intake,
                store=store,
                queue=queue,
                metrics_=self.metrics,
                intake_token=token.get_secret_value() if token else None,
                acks=self.acks,
                clock=self.clock,
                callback_secrets=callback_secrets(settings),
                open_items=OpenItemsMonitor(
                    store=store,
                    clock=self.clock,
                    platforms=sorted(settings.platforms),
                    collector=self.metrics.open_items,
                ),
            )
            self.http = HttpServer(app, settings.http.host, settings.http.port)
            self._resources.push_async_callback(self.http.stop)
            await self.http.start()
        ack_consumer = AckQueueConsumer(
            store=store,
            queue=queue,
            queue_name=settings.queue.acks,
            acks=self.acks,
            clock=self.clock,
            metrics=self.metrics,
        )
        self.supervisor.spawn("intake", intake.run)
        self.supervisor.spawn("dispatch", self.dispatcher.run)
        self.sla = SlaMonitor(
            store=store,
            routes=routes,
            bounds=sla_bounds(settings),
            authority=authority(settings),
            category_labels=settings.category_labels,
            clock=self.clock,
            metrics=self.metrics,
            escalations=channels.escalations(),
            alerts=channels.operations(),
            profile_bounds=profile_bounds(settings),
        )
        self.dispatcher.on_delivered = self.sla.delivered
        self.supervisor.spawn("ack-queue", ack_consumer.run)
        self.supervisor.spawn("sla", self.sla.run)
        if settings.inbound_smtp.listen:
            self.inbound_smtp = InboundSmtp(settings=settings.inbound_smtp, sink=self.acks)
            await self.inbound_smtp.start()
            self._resources.push_async_callback(self.inbound_smtp.stop)
        if settings.imap.host:
            reader = ImapReader(settings=settings.imap, sink=self.acks, seen=store, clock=self.clock)
            self.supervisor.spawn("imap", reader.run)
        log.info(
            "daemon.started",
            store=mask_url(settings.store.resolved_url),
            queue=mask_url(settings.queue.resolved_url),
            platforms=sorted(settings.platforms),
        )

    async def wait(self) -> int:
        """Run until stopped (signal, :meth:`stop` or a crashed task); 0 on a clean stop."""
        try:
            clean = await self.supervisor.wait()
        finally:
            await self._resources.aclose()
        log.info("daemon.stopped", clean=clean)
        return 0 if clean else 1

    def stop(self) -> None:
        self.supervisor.stop.set()


async def run_daemon(settings: Settings, *, clock: Clock | None = None) -> int:
    daemon = Daemon(settings, clock=clock)
    await daemon.start()
    daemon.supervisor.install_signal_handlers()
    try:
        return await daemon.wait()
    finally:
        daemon.supervisor.remove_signal_handlers()


__all__ = ["Daemon", "create_queue", "open_store", "run_daemon", "vocabulary"]
