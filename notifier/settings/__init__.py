"""Typed, frozen settings from ``config/notifier.toml`` and the environment (SPEC §4).

Loading order: the TOML file, then ``NOTIFIER_<SECTION>__<KEY>`` overrides (``__`` between every
level), then validation. Secrets are never written in the file: a key ending in ``_env`` names the
environment variable that holds the secret, and the value is resolved here into a ``SecretStr``.
Every error is one :class:`ConfigError` line naming the file and the key (and the environment
variable, when the bad value came from one).

The modules of this package change for different reasons: ``fields`` (what a section is made of),
``sections`` (the daemon's own), ``mail`` (the relays, the mailbox and the inbound listener),
``platforms`` (one platform's section) and ``loading`` (the whole file and how it is read). Import
from ``notifier.settings``.
"""

from __future__ import annotations

from notifier.settings.dkim import DEFAULT_SIGNED_HEADERS, DkimKey, DkimSettings
from notifier.settings.fields import Duration, Email, EmailList, is_loopback, mask_url, sqlite_path
from notifier.settings.loading import DEFAULT_CONFIG, ENV_PREFIX, Settings, env_overrides, load_settings
from notifier.settings.mail import (
    AlertsSettings,
    ImapSettings,
    InboundSmtpSettings,
    RelaySettings,
    SmtpSettings,
)
from notifier.settings.platforms import (
    BatchSettings,
    Channel,
    EscalationSettings,
    PlatformApiSettings,
    PlatformDeadlineSettings,
    PlatformEmailSettings,
    PlatformSettings,
    PlatformSlaSettings,
    PlatformVerifySettings,
)
from notifier.settings.sections import (
    AuthoritySettings,
    CategorySettings,
    ConsoleSettings,
    DeadlineSettings,
    EvidenceSettings,
    HttpSettings,
    ManualSettings,
    QueueSettings,
    RuntimeSettings,
    SlaSettings,
    StoreSettings,
    TemplatesSettings,
    VerifySettings,
)

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_SIGNED_HEADERS",
    "ENV_PREFIX",
    "AlertsSettings",
    "AuthoritySettings",
    "BatchSettings",
    "CategorySettings",
    "Channel",
    "ConsoleSettings",
    "DeadlineSettings",
    "DkimKey",
    "DkimSettings",
    "Duration",
    "Email",
    "EmailList",
    "EscalationSettings",
    "EvidenceSettings",
    "HttpSettings",
    "ImapSettings",
    "InboundSmtpSettings",
    "ManualSettings",
    "PlatformApiSettings",
    "PlatformDeadlineSettings",
    "PlatformEmailSettings",
    "PlatformSettings",
    "PlatformSlaSettings",
    "PlatformVerifySettings",
    "QueueSettings",
    "RelaySettings",
    "RuntimeSettings",
    "Settings",
    "SlaSettings",
    "SmtpSettings",
    "StoreSettings",
    "TemplatesSettings",
    "VerifySettings",
    "env_overrides",
    "is_loopback",
    "load_settings",
    "mask_url",
    "sqlite_path",
]
