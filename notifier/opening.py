"""What every command builds straight from the settings: the store opened, the vocabulary requests
are checked against, the authority, the SLA bounds, the callbacks' secrets and the service that
applies acknowledgements.

Kept apart from :mod:`notifier.wiring` (channels, transports, queues, the dispatcher), which only the
commands that run the daemon or send need: a command that reads the store starts without importing
them."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

from notifier.clock import Clock
from notifier.domain.notices import Authority
from notifier.domain.sla import SlaBounds
from notifier.domain.validation import Vocabulary
from notifier.errors import ConfigError
from notifier.metrics import Metrics
from notifier.ports import Store
from notifier.services.acks import AckService, FallbackRule
from notifier.services.alerts import OperationsAlerts
from notifier.settings import Settings, sqlite_path
from notifier.store import create_store, open_existing_store
from notifier.store.evidence_writer import EvidenceOptions, parse_key


def vocabulary(settings: Settings) -> Vocabulary:
    return Vocabulary(
        platforms=frozenset(settings.platforms),
        categories=frozenset(settings.categories),
        deadlines=frozenset(settings.deadlines),
        category_deadlines=settings.category_deadlines,
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
    rng: random.Random | None = None,
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
        rng=rng,
    )
