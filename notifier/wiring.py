"""The adapters of a configuration, built from its settings: the queue, the store, the channels and
their shared transports, and what the services are given of the settings (bounds, secrets)."""

from __future__ import annotations

import dataclasses
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
from notifier.domain.notices import Authority
from notifier.domain.sla import SlaBounds
from notifier.domain.validation import Vocabulary
from notifier.errors import ConfigError
from notifier.intake.amqp import AmqpQueue
from notifier.intake.local import LocalQueue
from notifier.intake.service import IntakeService
from notifier.metrics import Metrics
from notifier.ports import Channel, IntakeQueue, Store
from notifier.services.dispatcher import Dispatcher, Route
from notifier.services.verification import verify_schedules
from notifier.settings import PlatformSettings, Settings, sqlite_path
from notifier.store import create_store, open_existing_store
from notifier.store.evidence_writer import EvidenceOptions, parse_key


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
        queues=[settings.queue.requests, settings.queue.urgent_requests, settings.queue.acks],
    )


async def open_store(settings: Settings, *, existing: bool = False, deferred_evidence: bool = False) -> Store:
    """The store, migrated to this version (the daemon); with ``existing``, only a store notifier
    made and migrated before (the commands that read or edit it): a mistyped path or URL is refused
    naming ``store.url``, never created empty. ``deferred_evidence``: the urgent lane's, whose
    evidence entries wait for the next process that takes the ledger head."""
    url = settings.store.resolved_url
    path = sqlite_path(url)
    evidence = evidence_options(settings)
    if deferred_evidence:
        evidence = dataclasses.replace(evidence, deferred=True)
    if existing:
        if path is not None and not path.is_file():
            raise ConfigError(
                f"store.url: {path} does not exist (nothing has run with this configuration yet: "
                "check the path, or start `notifier run` once)"
            )
        return await open_existing_store(url, evidence=evidence)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    return await create_store(url, evidence=evidence)


def evidence_options(settings: Settings) -> EvidenceOptions:
    """The evidence record's settings for the store: its payloads' key parsed (a malformed one is
    refused naming ``evidence.key_env``), None when the variable is not set."""
    section = settings.evidence
    key = parse_key(section.key, name=f"evidence.key_env ({section.key_env})") if section.key else None
    return EvidenceOptions(enabled=section.enabled, key=key, retention=section.retention)


def require_evidence_key(settings: Settings) -> None:
    """The daemon keeps what it sends and receives: refuse to run with the record on and no key."""
    section = settings.evidence
    if section.enabled and not section.key:
        raise ConfigError(
            f"evidence.key_env: environment variable {section.key_env or '(none named)'} is not set; "
            "the evidence record encrypts its payloads with it (or set evidence.enabled = false)"
        )
    evidence_options(settings)


def authority(settings: Settings) -> Authority:
    a = settings.authority
    return Authority(name=a.name, email=a.email, reply_to=a.reply_to, timezone=a.timezone)


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
