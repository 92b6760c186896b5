"""The daemon's own sections: who the authority is, where it stores and queues, how it listens for
HTTP, where manual notices and templates live, and its runtime and SLA defaults."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, PrivateAttr, SecretStr, ValidationInfo, field_validator, model_validator

from notifier.domain.signatures import decode_secret
from notifier.settings.fields import (
    Duration,
    Email,
    EmailList,
    PositiveDuration,
    Section,
    env_secret,
    is_loopback,
    resolve_url,
    split_listen,
)


class AuthoritySettings(Section):
    name: str
    email: Email
    reply_to: Email | None = None
    timezone: str = "UTC"
    operations_email: EmailList = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"'{value}' is not a known time zone (e.g. Asia/Seoul, UTC)") from None
        return value


class _UrlSection(Section):
    url: str = ""
    url_env: str = ""
    _resolved: str = PrivateAttr(default="")

    @property
    def resolved_url(self) -> str:
        """The URL in use (from ``url`` or the variable ``url_env`` names), paths made absolute."""
        return self._resolved

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> _UrlSection:
        section = type(self).__name__.removesuffix("Settings").lower()
        if self.url and self.url_env:
            raise ValueError(f"give {section}.url or {section}.url_env, not both")
        url = self.url
        if self.url_env:
            secret = env_secret(info, f"{section}.url_env", self.url_env, required=True)
            url = secret.get_secret_value() if secret else ""
        if not url:
            raise ValueError(f"{section}.url (or {section}.url_env) is required")
        config_dir: Path = (info.context or {}).get("config_dir", Path.cwd())
        self._resolved = resolve_url(url, config_dir)
        return self


class StoreSettings(_UrlSection):
    @model_validator(mode="after")
    def _scheme(self) -> StoreSettings:
        if not self.resolved_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("store.url must start with sqlite:/// or postgresql://")
        return self


class QueueSettings(_UrlSection):
    requests: str = "takedown.requests"
    # Urgent requests' own queue (empty: ``<requests>.urgent``), consumed apart from ``requests`` so
    # that an urgent request never waits behind a backlog of normal ones.
    urgent: str = ""
    acks: str = "takedown.acks"
    prefetch: Annotated[int, Field(ge=1, le=65535)] = 1000
    batch_size: Annotated[int, Field(ge=1, le=10000)] = 500
    delivery_limit: Annotated[int, Field(ge=1, le=1000)] = 20

    @property
    def urgent_requests(self) -> str:
        """The queue of urgent requests."""
        return self.urgent or f"{self.requests}.urgent"

    @model_validator(mode="after")
    def _scheme(self) -> QueueSettings:
        if not self.resolved_url.startswith(("sqlite:///", "amqp://", "amqps://")):
            raise ValueError("queue.url must start with sqlite:/// or amqp://")
        return self


class HttpSettings(Section):
    listen: str = "127.0.0.1:8080"
    # The address platforms reach this server at (behind a proxy, say), for the callback URL in
    # API notices; empty: API notices carry no callback URL.
    public_url: str = ""
    intake_token_env: str = ""
    callback_secret_env: str = "NOTIFIER_CALLBACK_SECRET"  # noqa: S105 - the name of a variable, not a secret
    _intake_token: SecretStr | None = PrivateAttr(default=None)
    _callback_secret: SecretStr | None = PrivateAttr(default=None)

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0] if self.listen else ""

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1] if self.listen else 0

    @property
    def intake_token(self) -> SecretStr | None:
        return self._intake_token

    @property
    def callback_secret(self) -> SecretStr | None:
        return self._callback_secret

    @model_validator(mode="after")
    def _secrets(self, info: ValidationInfo) -> HttpSettings:
        if self.listen:
            split_listen(self.listen)
        self._intake_token = env_secret(
            info, "http.intake_token_env", self.intake_token_env, required=bool(self.intake_token_env)
        )
        if self.listen and not is_loopback(self.host) and self._intake_token is None:
            raise ValueError(
                f"http.intake_token_env is required when http.listen ({self.listen}) "
                "is not a loopback address"
            )
        self._callback_secret = env_secret(
            info, "http.callback_secret_env", self.callback_secret_env, required=False
        )
        if self._callback_secret is not None:
            try:
                decode_secret(self._callback_secret.get_secret_value())
            except ValueError as error:
                raise ValueError(f"{self.callback_secret_env}: {error}") from None
        return self


class ManualSettings(Section):
    outbox: Path = Path("var/outbox")


# The notice templates notifier ships, used when the configuration names no folder of its own.
PACKAGED_TEMPLATES = Path(__file__).resolve().parents[1] / "templates"


class TemplatesSettings(Section):
    # A folder of one's own copy of the notice templates, relative to the configuration file's
    # folder; unset, the packaged ones.
    dir: Path | None = None

    @property
    def folder(self) -> Path:
        """The folder the templates are read from: the configured one, else the packaged one."""
        return self.dir or PACKAGED_TEMPLATES


def default_compose_processes() -> int:
    """One composing process beside the daemon's, when the machine has a core for it."""
    return 1 if (os.cpu_count() or 1) > 1 else 0


class RuntimeSettings(Section):
    grace: Duration = timedelta(seconds=20)
    # How long a claim on a notice lasts without renewal. A send renews it every third of it while
    # it runs, however long it takes; a process that dies mid-send loses the notice to another
    # after this long. An SLA monitor's claim on the notices it is deciding about lasts as long.
    lease: Duration = timedelta(seconds=45)
    send_concurrency: Annotated[int, Field(ge=1, le=256)] = 8
    # More sends at once that only urgent notices may use, so that an urgent notice never waits
    # for a slot behind normal ones (the SMTP pool keeps connections for them too).
    urgent_send_concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    # First wait of the short, in-call retries (doubling, 3 tries) before a failure becomes durable.
    in_call_retry_wait: Duration = timedelta(seconds=1)
    # Processes that compose notices' emails beside the event loop (0: a worker thread of the
    # daemon's own process). By default one when the machine has a second core.
    compose_processes: Annotated[int, Field(ge=0, le=16)] = Field(default_factory=default_compose_processes)
    # Urgent requests taken in, batched and sent by a process of their own (the urgent lane), so
    # that none waits for a turn of the busy daemon's event loop. On PostgreSQL with RabbitMQ
    # only: on SQLite the daemon's own process does it.
    urgent_process: bool = True
    # With the urgent lane, how much lower the CPU priority (nice) of the daemon's bulk work (its
    # own event loop and its composing processes) is than the lane's: on a busy machine the lane's
    # few steps run first. 0: the same priority. Linux only.
    bulk_nice: Annotated[int, Field(ge=0, le=19)] = 10


class SlaSettings(Section):
    ack_within: Duration = timedelta(hours=36)
    removal_within: Duration = timedelta(hours=36)
    remind_at: Annotated[float, Field(gt=0, lt=1)] = 0.66
    deliver_within: Duration = timedelta(hours=6)
    # A portal notice rendered and not filed by staff for longer than this: an undelivered breach.
    file_within: PositiveDuration = timedelta(hours=2)


class ConsoleSettings(Section):
    """The operations console (SPEC §16): under ``/console/`` on ``http.listen``, or on its own
    ``listen``."""

    listen: str = ""  # empty: served by the HTTP listener
    session_ttl: Duration = timedelta(hours=8)
    # "auto": cookies are Secure unless the console listens on a loopback address.
    secure_cookies: Literal["auto", "always", "never"] = "auto"
    # The overview's "due soon" window: deadlines within this long from now.
    due_within: Duration = timedelta(hours=6)
    # Wrong passwords allowed per minute, per user and per address, before a lockout of this long.
    max_failures: Annotated[int, Field(ge=1, le=100)] = 5
    lockout: Duration = timedelta(minutes=15)
    refresh: Duration = timedelta(seconds=30)  # how often the overview updates itself
    # How old the overview's counts and the framed compliance report may be: they are computed in
    # the background, at most this often, and shown with the time they were computed.
    overview_every: Duration = timedelta(seconds=10)
    report_every: Duration = timedelta(minutes=5)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if value:
            split_listen(value)
        return value

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0] if self.listen else ""

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1] if self.listen else 0


class VerifySettings(Section):
    """How notifier checks that content is gone (SPEC §13)."""

    enabled: bool = True
    # Private, loopback, link-local and multicast addresses are refused unless this is set (tests,
    # the sandbox): checked on the resolved address and again on every redirect.
    allow_private: bool = False
    # The variable holding an egress proxy URL for the checks; empty: direct.
    proxy_env: str = ""
    user_agent: str = ""
    max_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 256 * 1024
    timeout: PositiveDuration = timedelta(seconds=20)
    per_host_concurrency: Annotated[int, Field(ge=1, le=256)] = 4
    per_host_per_minute: Annotated[int, Field(ge=1, le=100_000)] = 600
    max_redirects: Annotated[int, Field(ge=0, le=20)] = 5
    recheck_after: list[PositiveDuration] = Field(
        default_factory=lambda: [timedelta(days=1), timedelta(days=7), timedelta(days=30)]
    )
    renotice: bool = True
    _proxy: SecretStr | None = PrivateAttr(default=None)

    @property
    def proxy(self) -> str:
        """The egress proxy URL, or empty for direct connections."""
        return self._proxy.get_secret_value() if self._proxy else ""

    @model_validator(mode="after")
    def _proxy_url(self, info: ValidationInfo) -> VerifySettings:
        self._proxy = env_secret(info, "verify.proxy_env", self.proxy_env, required=bool(self.proxy_env))
        return self


class DeadlineSettings(Section):
    """``[deadlines.<profile>]``: the bounds a legal basis sets (SPEC §14)."""

    label: str
    ack_within: PositiveDuration
    removal_within: PositiveDuration
    remind_at: Annotated[float, Field(gt=0, lt=1)] = 0.66
    urgent: bool = False


class CategorySettings(Section):
    """``[categories.<id>]`` as a table: its label in notices, and optionally its deadline profile."""

    label: str
    deadline: str | None = None


class EvidenceSettings(Section):
    """The evidence record (SPEC §15): the hash-chained ledger and its encrypted payloads."""

    enabled: bool = True
    # The variable holding the payloads' AES key (16, 24 or 32 bytes, hex or base64). `notifier
    # run` refuses to start without it while the record is enabled; commands that only read or
    # record staff actions work without it (payloads are then hashed, not kept).
    key_env: str = "NOTIFIER_EVIDENCE_KEY"
    retention: PositiveDuration = timedelta(days=180)
    _key: SecretStr | None = PrivateAttr(default=None)

    @property
    def key(self) -> str:
        """The key as written in the variable, or empty when it is not set."""
        return self._key.get_secret_value() if self._key else ""

    @model_validator(mode="after")
    def _resolve_key(self, info: ValidationInfo) -> EvidenceSettings:
        self._key = env_secret(info, "evidence.key_env", self.key_env, required=False)
        return self
