"""The composition root: builds the adapters from settings and wires the services together."""

from __future__ import annotations

import contextlib
import errno
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import cast

import structlog
from aiohttp.abc import AbstractResolver

from notifier.acks.imap import ImapReader
from notifier.acks.inbound_smtp import InboundSmtp
from notifier.channels.prober import Prober, prober_options
from notifier.clock import Clock, SystemClock
from notifier.errors import ConfigError
from notifier.intake.service import IntakeService
from notifier.lane import run_urgent_lane
from notifier.metrics import Metrics
from notifier.opening import ack_service, authority, callback_secrets, open_store, profile_bounds, sla_bounds
from notifier.ports import IntakeQueue, Store
from notifier.runtime.ack_queue import AckQueueConsumer
from notifier.runtime.console.app import ConsoleBackend
from notifier.runtime.console.setup import console_app, console_deps
from notifier.runtime.http import HttpServer, build_http_app
from notifier.runtime.lane import HelperProcess, chaining, lower_priority
from notifier.runtime.supervisor import Supervisor
from notifier.services.monitoring import OpenItemsMonitor
from notifier.services.sla import SlaMonitor
from notifier.services.verification import VerificationService, verify_rules, verify_schedules
from notifier.services.verify_followups import ChannelFollowups
from notifier.settings import Settings, mask_url
from notifier.store.runlock import acquire_run_lock
from notifier.wiring import Channels, create_queue, dispatcher, intake_services

log = structlog.get_logger("notifier.app")

# How often the entries written by this daemon and its urgent lane are chained into the ledger.
CHAIN_EVERY = 0.25


class Daemon:
    """``notifier run``: every service of the daemon, started and stopped together."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        resolver: AbstractResolver | None = None,
        rng: random.Random | None = None,
        bulk_nice: int = 0,
    ) -> None:
        """``resolver`` answers the prober's name look-ups (the system's by default): the demo's
        sandbox platforms are names only it knows. ``rng`` draws the retry jitter (unseeded by
        default; the demo seeds it, so a run is the same every time)."""
        self.settings = settings
        self._rng = rng
        # How much to lower this thread's CPU priority when the urgent lane runs (``notifier run``
        # passes runtime.bulk_nice; a daemon inside another program leaves its priority alone).
        self._bulk_nice = bulk_nice
        self.clock: Clock = clock or SystemClock()
        self._resolver = resolver
        self.metrics = Metrics()
        self.supervisor = Supervisor(grace=settings.runtime.grace.total_seconds())
        self._resources = AsyncExitStack()
        self.http: HttpServer | None = None
        self.console_http: HttpServer | None = None
        self.store: Store | None = None
        self.queue: IntakeQueue | None = None
        self.inbound_smtp: InboundSmtp | None = None
        self.verification: VerificationService | None = None
        self.urgent_lane: HelperProcess | None = None

    async def start(self) -> None:
        """Open the store and the queue, start the HTTP server and the background services.

        If any part fails to start, whatever was already opened is closed again before the error
        propagates, so a failed start leaves no lock, connection or socket behind.
        """
        try:
            await self._start()
        except BaseException:
            await self.supervisor.abort()  # the services already running, before what they use
            await self._resources.aclose()
            raise

    async def _serve_http(self, store: Store, queue: IntakeQueue, intake: IntakeService) -> None:
        """The console, and the HTTP listener (health, metrics, intake, callbacks)."""
        settings = self.settings
        console = console_deps(
            settings, cast(ConsoleBackend, store), self.acks, self.clock, sla_bounds(settings)
        )
        if settings.console.listen:
            self.console_http = HttpServer(console_app(console), settings.console.host, settings.console.port)
            self._resources.push_async_callback(self.console_http.stop)
            await self.console_http.start()
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
                console=None if settings.console.listen else console,
            )
            self.http = HttpServer(app, settings.http.host, settings.http.port)
            self._resources.push_async_callback(self.http.stop)
            async with _listening("http.listen", settings.http.listen):
                await self.http.start()

    async def _start(self) -> None:
        settings = self.settings
        for path in sorted(settings.sqlite_files()):
            path.parent.mkdir(parents=True, exist_ok=True)
            self._resources.callback(acquire_run_lock(path).close)
        # On a store several processes share, evidence entries wait in the store for the chainer
        # below (a quarter of a second) instead of queueing, in every transaction, for the one
        # lock on the ledger's head.
        shared = not settings.sqlite_files()
        store = self.store = await open_store(settings, deferred_evidence=shared)
        self._resources.push_async_callback(store.close)
        queue = self.queue = create_queue(settings)
        self._resources.push_async_callback(queue.close)
        await queue.connect()
        intake, urgent_intake = intake_services(settings, store, queue, self.clock, self.metrics)
        self._prepare_lane()
        channels = Channels(settings, self.clock)
        self._resources.push_async_callback(channels.close)
        channels.composer.warm()
        routes = channels.routes()
        self.dispatcher = dispatcher(
            settings,
            store=store,
            channels=channels,
            routes=routes,
            clock=self.clock,
            metrics=self.metrics,
            rng=self._rng,
        )
        for service in (intake, urgent_intake):
            service.on_accepted = self.dispatcher.kick
            service.on_urgent = self.dispatcher.kick_urgent
        self.acks = ack_service(
            settings,
            store,
            self.clock,
            self.metrics,
            on_redelivery=self.dispatcher.kick,
            alerts=channels.operations(),
            rng=self._rng,
        )
        await self._serve_http(store, queue, intake)
        ack_consumer = AckQueueConsumer(
            store=store,
            queue=queue,
            queue_name=settings.queue.acks,
            acks=self.acks,
            clock=self.clock,
            metrics=self.metrics,
        )
        self.supervisor.spawn("intake", intake.run)
        if self.urgent_lane is not None:
            self.supervisor.spawn("urgent-lane", self.urgent_lane.run)
        else:
            self.supervisor.spawn("intake-urgent", urgent_intake.run)
        if shared:
            self.supervisor.spawn("evidence-chain", chaining(store, every=CHAIN_EVERY))
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
            # A monitor that dies mid-round leaves the notices it claimed to another after this
            # long, as a sender leaves its notice: a fixed minute would let a reminder of a
            # tight bound pass unsent behind its breach.
            claim_lease=settings.runtime.lease,
        )
        self.dispatcher.on_delivered = self.sla.delivered
        self.supervisor.spawn("ack-queue", ack_consumer.run)
        self.supervisor.spawn("sla", self.sla.run)
        if settings.verify.enabled:
            prober = Prober(prober_options(settings.verify, settings.authority.name), resolver=self._resolver)
            self._resources.push_async_callback(prober.close)
            self.verification = VerificationService(
                store=store,
                checker=prober,
                rules=verify_rules(settings),
                schedules=verify_schedules(settings),
                clock=self.clock,
                metrics=self.metrics,
                renotice=settings.verify.renotice,
                send_followup=ChannelFollowups(
                    store=store,
                    routes=routes,
                    authority=authority(settings),
                    category_labels=settings.category_labels,
                ),
            )
            self.verification.on_renotice = self.dispatcher.kick  # a re-notice is queued: send it
            self.supervisor.spawn("verify", self.verification.run)
        if settings.inbound_smtp.listen:
            self.inbound_smtp = InboundSmtp(settings=settings.inbound_smtp, sink=self.acks)
            async with _listening("inbound_smtp.listen", settings.inbound_smtp.listen):
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

    def _prepare_lane(self) -> None:
        """The urgent lane, when wanted (started with the other tasks); and the bulk work (this
        thread, and the composing processes started after this) yielding the CPU to it."""
        settings = self.settings
        if not self._urgent_lane_wanted():
            return
        self.urgent_lane = HelperProcess(
            "urgent lane",
            run_urgent_lane,
            (settings,),
            grace=settings.runtime.grace.total_seconds(),
            samples=self.metrics.lanes,
        )
        if lower_priority(self._bulk_nice):
            log.info("daemon.priority_lowered", nice=self._bulk_nice)

    def _urgent_lane_wanted(self) -> bool:
        """The urgent lane runs where a second process can share the store and the queue
        (PostgreSQL and RabbitMQ), on the real clock (a simulated one cannot be shared)."""
        settings = self.settings
        shared = not settings.sqlite_files()
        return settings.runtime.urgent_process and shared and isinstance(self.clock, SystemClock)

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


@contextlib.asynccontextmanager
async def _listening(key: str, address: str) -> AsyncIterator[None]:
    """A socket that cannot be bound is a configuration fault: one line naming the key."""
    try:
        yield
    except OSError as error:
        reason = error.strerror or str(error)
        if error.errno == errno.EADDRINUSE:
            reason = "the address is already in use (another process listens there)"
        raise ConfigError(f'{key} = "{address}": cannot listen there: {reason}') from None


async def run_daemon(settings: Settings, *, clock: Clock | None = None) -> int:
    daemon = Daemon(settings, clock=clock, bulk_nice=settings.runtime.bulk_nice)
    await daemon.start()
    daemon.supervisor.install_signal_handlers()
    try:
        return await daemon.wait()
    finally:
        daemon.supervisor.remove_signal_handlers()


# open_store: the seam through which the daemon opens its store (bench/dispatch.py wraps it).
__all__ = ["Daemon", "open_store", "run_daemon"]
