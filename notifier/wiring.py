"""The adapters of a configuration that send and receive, built from its settings: the queue, the
channels and their shared transports, the intake services and the dispatcher. The store and what
the services are given of the settings (bounds, secrets) are :mod:`notifier.opening`'s."""

from __future__ import annotations

import random
from collections.abc import Mapping

import aiohttp

from notifier.channels.api import ApiChannel
from notifier.channels.composer import Composer
from notifier.channels.dkim import signer_from
from notifier.channels.email import EmailChannel, OperationsMailer, SmtpTransport
from notifier.channels.manual import ManualChannel
from notifier.channels.rendering import Renderer
from notifier.clock import Clock
from notifier.intake.amqp import AmqpQueue
from notifier.intake.local import LocalQueue
from notifier.intake.service import IntakeService
from notifier.metrics import Metrics
from notifier.opening import authority, vocabulary
from notifier.ports import Channel, IntakeQueue, Store
from notifier.services.dispatcher import Dispatcher, Route
from notifier.services.verification import verify_schedules
from notifier.settings import PlatformSettings, Settings, sqlite_path


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
        queues=[settings.queue.requests, settings.queue.urgent_requests, settings.queue.acks],
    )


class Channels:
    """The shared transports (one SMTP connection pool, one HTTP session, and the alerts' own SMTP
    pool when configured) and the channels built on them."""

    def __init__(self, settings: Settings, clock: Clock, *, compose_processes: int | None = None) -> None:
        """``compose_processes``: instead of ``runtime.compose_processes`` (the urgent lane, whose
        small notices are composed at once in its own thread, needs none)."""
        self.settings = settings
        self.clock = clock
        self.renderer = Renderer(settings.templates.folder)
        # Notices' emails composed in processes of their own beside the event loop: started by
        # the daemon as it starts, else at the first notice to compose.
        processes = settings.runtime.compose_processes if compose_processes is None else compose_processes
        self.composer = Composer(self.renderer, processes=processes)
        # Every email leaves DKIM-signed when [dkim] is set: notices, reminders, escalations,
        # clarifications, withdrawals and the operations alerts alike.
        dkim = signer_from(settings.dkim)
        sign = dkim.sign if dkim is not None else None
        self.smtp = SmtpTransport(
            settings.smtp, signer=sign, urgent_slots=settings.runtime.urgent_send_concurrency
        )
        # Alerts over a relay of their own when [alerts] names one: an alert that the notice relay
        # is failing must not depend on it. Alerts are few, so one connection is plenty.
        self.alerts_smtp = (
            SmtpTransport(settings.alerts, pool_size=1, signer=sign) if settings.alerts.host else None
        )
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
                composer=self.composer,
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
        schedules = verify_schedules(settings) if settings.verify.enabled else {}
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
                first_check_after=schedules[platform_id].first_after if schedules else None,
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
        self.composer.close()
        await self.smtp.close()
        if self.alerts_smtp is not None:
            await self.alerts_smtp.close()
        await self.session.close()


# Messages of the urgent queue stored per transaction: few, so that none waits for a long commit.
URGENT_BATCH = 20


def intake_services(
    settings: Settings, store: Store, queue: IntakeQueue, clock: Clock, metrics: Metrics
) -> tuple[IntakeService, IntakeService]:
    """Intake of the requests queue, and of the urgent requests' own queue: consumed by a loop of
    its own in small batches, so that an urgent request waits neither behind a backlog on the main
    queue nor for a big batch's commit."""
    urgent_deadlines = [name for name, profile in settings.deadlines.items() if profile.urgent]

    def consuming(name: str, batch_size: int) -> IntakeService:
        return IntakeService(
            store=store,
            queue=queue,
            queue_name=name,
            vocabulary=vocabulary(settings),
            clock=clock,
            metrics=metrics,
            batch_size=batch_size,
            urgent_deadlines=urgent_deadlines,
        )

    return (
        consuming(settings.queue.requests, settings.queue.batch_size),
        consuming(settings.queue.urgent_requests, URGENT_BATCH),
    )


def dispatcher(
    settings: Settings,
    *,
    store: Store,
    channels: Channels,
    routes: Mapping[str, Route],
    clock: Clock,
    metrics: Metrics,
    rng: random.Random | None = None,
) -> Dispatcher:
    return Dispatcher(
        store=store,
        routes=routes,
        authority=authority(settings),
        category_labels=settings.category_labels,
        clock=clock,
        metrics=metrics,
        deliver_within=settings.sla.deliver_within,
        alerts=channels.operations(),
        lease=settings.runtime.lease,
        concurrency=settings.runtime.send_concurrency,
        urgent_slots=settings.runtime.urgent_send_concurrency,
        in_call_wait=settings.runtime.in_call_retry_wait.total_seconds(),
        rng=rng,
    )
