"""Typed, frozen settings from ``config/notifier.toml`` and the environment (SPEC §4).

Loading order: the TOML file, then ``NOTIFIER_<SECTION>__<KEY>`` overrides (``__`` between every
level), then validation. Secrets are never written in the file: a key ending in ``_env`` names the
environment variable that holds the secret, and the value is resolved here into a ``SecretStr``.
Every error is one :class:`ConfigError` line naming the file and the key (and the environment
variable, when the bad value came from one).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from notifier.domain.durations import parse_duration
from notifier.domain.validation import PLATFORM_ID_PATTERN
from notifier.errors import ConfigError

DEFAULT_CONFIG = Path("config/notifier.toml")
ENV_PREFIX = "NOTIFIER_"
_CATEGORY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_EMAIL_PATTERN = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+$")


def _duration(value: Any) -> timedelta:
    return parse_duration(value)


def _string_list(value: Any) -> Any:
    """Lists may come from the environment as JSON (``["a","b"]``) or comma-separated text."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def _check_email(value: str) -> str:
    if not _EMAIL_PATTERN.match(value):
        raise ValueError(f"'{value[:80]}' is not an email address")
    return value


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be more than zero")
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
PositiveDuration = Annotated[timedelta, BeforeValidator(_duration), AfterValidator(_positive)]
Email = Annotated[str, BeforeValidator(_check_email)]
EmailList = Annotated[list[Email], BeforeValidator(_string_list)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _env_secret(info: ValidationInfo, key: str, name: str, *, required: bool) -> SecretStr | None:
    """Resolve the secret named by an ``*_env`` key."""
    if not name:
        return None
    environ: Mapping[str, str] = (info.context or {}).get("environ", os.environ)
    value = environ.get(name)
    if value is None or value == "":
        if required:
            raise ValueError(f"environment variable {name} (named by {key}) is not set")
        return None
    return SecretStr(value)


def _resolve_url(url: str, config_dir: Path) -> str:
    """``sqlite:///relative`` is relative to the config file's folder."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////"):
        return prefix + str((config_dir / url[len(prefix) :]).resolve())
    return url


def sqlite_path(url: str) -> Path | None:
    """The file of a resolved ``sqlite:///`` URL, or None for other stores."""
    prefix = "sqlite:///"
    return Path("/" + url[len(prefix) :].lstrip("/")) if url.startswith(prefix) else None


def mask_url(url: str) -> str:
    """A URL fit to print: any password replaced by ``***``."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)


class AuthoritySettings(_Section):
    name: str
    email: Email
    reply_to: Email | None = None
    timezone: str = "UTC"
    operations_email: EmailList = []

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"'{value}' is not a known time zone (e.g. Asia/Seoul, UTC)") from None
        return value


class _UrlSection(_Section):
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
            secret = _env_secret(info, f"{section}.url_env", self.url_env, required=True)
            url = secret.get_secret_value() if secret else ""
        if not url:
            raise ValueError(f"{section}.url (or {section}.url_env) is required")
        config_dir: Path = (info.context or {}).get("config_dir", Path.cwd())
        self._resolved = _resolve_url(url, config_dir)
        return self


class StoreSettings(_UrlSection):
    @model_validator(mode="after")
    def _scheme(self) -> StoreSettings:
        if not self.resolved_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("store.url must start with sqlite:/// or postgresql://")
        return self


class QueueSettings(_UrlSection):
    requests: str = "takedown.requests"
    acks: str = "takedown.acks"
    prefetch: Annotated[int, Field(ge=1, le=65535)] = 1000
    batch_size: Annotated[int, Field(ge=1, le=10000)] = 500
    delivery_limit: Annotated[int, Field(ge=1, le=1000)] = 20

    @model_validator(mode="after")
    def _scheme(self) -> QueueSettings:
        if not self.resolved_url.startswith(("sqlite:///", "amqp://", "amqps://")):
            raise ValueError("queue.url must start with sqlite:/// or amqp://")
        return self


class SmtpSettings(_Section):
    host: str = "localhost"
    port: Annotated[int, Field(ge=1, le=65535)] = 25
    starttls: Literal["auto", "required", "off"] = "auto"
    username: str = ""
    password_env: str = ""
    from_: Annotated[Email, Field(alias="from")] = "takedown@authority.example"
    envelope_from: str = "bounces+{notice_id}@authority.example"
    timeout: Duration = timedelta(seconds=30)
    _password: SecretStr | None = PrivateAttr(default=None)

    @property
    def password(self) -> SecretStr | None:
        return self._password

    @model_validator(mode="after")
    def _secrets(self, info: ValidationInfo) -> SmtpSettings:
        self._password = _env_secret(
            info, "smtp.password_env", self.password_env, required=bool(self.username)
        )
        if "{notice_id}" not in self.envelope_from:
            raise ValueError("smtp.envelope_from must contain {notice_id} so bounces name their notice")
        return self


def _split_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not (0 <= int(port) <= 65535):
        raise ValueError(f"'{value}' is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - an empty host means all interfaces


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class InboundSmtpSettings(_Section):
    listen: str = ""

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if value:
            _split_listen(value)
        return value


class ImapSettings(_Section):
    host: str = ""
    port: Annotated[int, Field(ge=1, le=65535)] = 993
    username: str = ""
    password_env: str = ""
    mailbox: str = "INBOX"
    poll_every: Duration = timedelta(seconds=60)
    tls: bool = True
    _password: SecretStr | None = PrivateAttr(default=None)

    @property
    def password(self) -> SecretStr | None:
        return self._password

    @model_validator(mode="after")
    def _secrets(self, info: ValidationInfo) -> ImapSettings:
        if self.host and not self.tls and not is_loopback(self.host):
            # aioimaplib cannot upgrade with STARTTLS, so tls = false means LOGIN in clear text.
            raise ValueError(
                f"imap.tls is false but imap.host ({self.host}) is not a loopback address: "
                "the password would cross the network in clear text"
            )
        self._password = _env_secret(info, "imap.password_env", self.password_env, required=bool(self.host))
        return self


class HttpSettings(_Section):
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
        return _split_listen(self.listen)[0] if self.listen else ""

    @property
    def port(self) -> int:
        return _split_listen(self.listen)[1] if self.listen else 0

    @property
    def intake_token(self) -> SecretStr | None:
        return self._intake_token

    @property
    def callback_secret(self) -> SecretStr | None:
        return self._callback_secret

    @model_validator(mode="after")
    def _secrets(self, info: ValidationInfo) -> HttpSettings:
        if self.listen:
            _split_listen(self.listen)
        self._intake_token = _env_secret(
            info, "http.intake_token_env", self.intake_token_env, required=bool(self.intake_token_env)
        )
        if self.listen and not is_loopback(self.host) and self._intake_token is None:
            raise ValueError(
                f"http.intake_token_env is required when http.listen ({self.listen}) "
                "is not a loopback address"
            )
        self._callback_secret = _env_secret(
            info, "http.callback_secret_env", self.callback_secret_env, required=False
        )
        return self


class ManualSettings(_Section):
    outbox: Path = Path("var/outbox")


class TemplatesSettings(_Section):
    dir: Path = Path("templates")  # the notice templates, relative to the configuration file's folder


class RuntimeSettings(_Section):
    grace: Duration = timedelta(seconds=20)
    # How long a process holds a notice it is sending; a process that dies mid-send loses it to
    # another after this long. Longer than the slowest send, short enough to take over quickly.
    lease: Duration = timedelta(minutes=5)
    send_concurrency: Annotated[int, Field(ge=1, le=256)] = 8
    # First wait of the short, in-call retries (doubling, 3 tries) before a failure becomes durable.
    in_call_retry_wait: Duration = timedelta(seconds=1)


class SlaSettings(_Section):
    ack_within: Duration = timedelta(hours=36)
    removal_within: Duration = timedelta(hours=36)
    remind_at: Annotated[float, Field(gt=0, lt=1)] = 0.66
    deliver_within: Duration = timedelta(hours=6)
    # A portal notice rendered and not filed by staff for longer than this: an undelivered breach.
    file_within: PositiveDuration = timedelta(hours=2)


class PlatformSlaSettings(_Section):
    ack_within: Duration | None = None
    removal_within: Duration | None = None
    remind_at: Annotated[float, Field(gt=0, lt=1)] | None = None
    file_within: PositiveDuration | None = None


class PlatformEmailSettings(_Section):
    to: EmailList
    cc: EmailList = []

    @field_validator("to")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("needs at least one address")
        return value


class PlatformApiSettings(_Section):
    url: str
    token_env: str = ""
    signing_secret_env: str = ""
    timeout: Duration = timedelta(seconds=30)
    _token: SecretStr | None = PrivateAttr(default=None)
    _signing_secret: SecretStr | None = PrivateAttr(default=None)

    @property
    def token(self) -> SecretStr | None:
        return self._token

    @property
    def signing_secret(self) -> SecretStr | None:
        return self._signing_secret

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _secrets(self, info: ValidationInfo) -> PlatformApiSettings:
        self._token = _env_secret(info, "api.token_env", self.token_env, required=True)
        self._signing_secret = _env_secret(
            info, "api.signing_secret_env", self.signing_secret_env, required=True
        )
        if self._signing_secret and not self._signing_secret.get_secret_value().startswith("whsec_"):
            raise ValueError(
                f"the secret in {self.signing_secret_env} must start with whsec_ (Standard Webhooks)"
            )
        return self


class BatchSettings(_Section):
    max_items: Annotated[int, Field(ge=1, le=10000)] = 50
    max_wait: Duration = timedelta(minutes=10)


class EscalationSettings(_Section):
    email: EmailList = []


Channel = Literal["email", "api", "manual"]


class PlatformSettings(_Section):
    name: str
    channel: Channel
    fallback: Channel | None = None
    language: Literal["en", "ko"] = "en"
    rate_per_minute: Annotated[int, Field(ge=0)] = 0
    email: PlatformEmailSettings | None = None
    api: PlatformApiSettings | None = None
    batch: BatchSettings = BatchSettings()
    sla: PlatformSlaSettings = PlatformSlaSettings()
    escalation: EscalationSettings = EscalationSettings()

    @model_validator(mode="after")
    def _channels(self) -> PlatformSettings:
        for role, channel in (("channel", self.channel), ("fallback", self.fallback)):
            if channel == "email" and self.email is None:
                raise ValueError(f"{role} is email but the [email] section with 'to' is missing")
            if channel == "api" and self.api is None:
                raise ValueError(f"{role} is api but the [api] section with 'url' is missing")
        if self.fallback is not None and self.fallback == self.channel:
            raise ValueError(f"fallback '{self.fallback}' is the same as the channel")
        return self


class Settings(_Section):
    authority: AuthoritySettings
    categories: dict[str, str]
    # Built at validation time (not import time) so the relative path meets the config's folder.
    store: StoreSettings = Field(
        default_factory=lambda: {"url": "sqlite:///var/notifier.db"}, validate_default=True
    )
    queue: QueueSettings = Field(
        default_factory=lambda: {"url": "sqlite:///var/notifier.db"}, validate_default=True
    )
    smtp: SmtpSettings = SmtpSettings()
    inbound_smtp: InboundSmtpSettings = InboundSmtpSettings()
    imap: ImapSettings = ImapSettings()
    http: HttpSettings = HttpSettings()
    # Defaults are validated too, so their relative paths resolve against the config file's folder.
    manual: ManualSettings = Field(default_factory=ManualSettings, validate_default=True)
    templates: TemplatesSettings = Field(default_factory=TemplatesSettings, validate_default=True)
    runtime: RuntimeSettings = RuntimeSettings()
    sla: SlaSettings = SlaSettings()
    platforms: dict[str, PlatformSettings]
    config_path: Path = Field(default=Path(), exclude=True)

    @field_validator("categories")
    @classmethod
    def _categories(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("at least one category is required")
        for key in value:
            if not _CATEGORY_PATTERN.match(key):
                raise ValueError(f"category id '{key}' must match [a-z][a-z0-9_]*")
        return value

    @field_validator("platforms")
    @classmethod
    def _platforms(cls, value: dict[str, PlatformSettings]) -> dict[str, PlatformSettings]:
        if not value:
            raise ValueError("at least one platform is required")
        for key in value:
            if not PLATFORM_ID_PATTERN.match(key):
                raise ValueError(f"platform id '{key}' must match [a-z][a-z0-9_]{{0,31}}")
        return value

    @field_validator("manual")
    @classmethod
    def _outbox(cls, value: ManualSettings, info: ValidationInfo) -> ManualSettings:
        config_dir: Path = (info.context or {}).get("config_dir", Path.cwd())
        return value.model_copy(update={"outbox": (config_dir / value.outbox).resolve()})

    @field_validator("templates")
    @classmethod
    def _templates(cls, value: TemplatesSettings, info: ValidationInfo) -> TemplatesSettings:
        config_dir: Path = (info.context or {}).get("config_dir", Path.cwd())
        return value.model_copy(update={"dir": (config_dir / value.dir).resolve()})

    @property
    def config_dir(self) -> Path:
        return self.config_path.parent

    def sqlite_files(self) -> set[Path]:
        """SQLite files the daemon writes (store and local queue), for the one-``run``-per-file lock."""
        paths = {sqlite_path(self.store.resolved_url), sqlite_path(self.queue.resolved_url)}
        return {p for p in paths if p is not None}


def env_overrides(environ: Mapping[str, str]) -> dict[tuple[str, ...], tuple[str, str]]:
    """``NOTIFIER_A__B__C=v`` → ``{("a", "b", "c"): ("NOTIFIER_A__B__C", "v")}``."""
    found: dict[tuple[str, ...], tuple[str, str]] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        if all(path):
            found[path] = (name, value)
    return found


def _apply(data: dict[str, Any], path: tuple[str, ...], value: str, origin: str) -> None:
    node = data
    for depth, key in enumerate(path[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{origin}: {'.'.join(path[: depth + 1])} is not a section")
        node = child
    node[path[-1]] = value


def _location(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and p.startswith("function-"))]
    return ".".join(parts)


def load_settings(path: Path | str | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Load, override from the environment and validate; raise :class:`ConfigError` on any fault."""
    environ = os.environ if environ is None else environ
    config_path = Path(path or environ.get("NOTIFIER_CONFIG") or DEFAULT_CONFIG)
    try:
        text = config_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{config_path}: no such configuration file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{config_path}: cannot be read ({error})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{config_path}: not valid TOML ({error})") from None

    overrides = env_overrides(environ)
    for key_path, (name, value) in overrides.items():
        _apply(data, key_path, value, name)
    config_dir = config_path.resolve().parent
    data["config_path"] = str(config_path.resolve())
    try:
        return Settings.model_validate(data, context={"environ": environ, "config_dir": config_dir})
    except ValidationError as error:
        raise ConfigError(_describe(config_path, error, overrides)) from None


def _describe(
    config_path: Path, error: ValidationError, overrides: dict[tuple[str, ...], tuple[str, str]]
) -> str:
    first = error.errors(include_url=False, include_input=False)[0]
    loc = _location(first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "missing":
        message = "required key is missing"
    origin = ""
    for key_path, (name, _) in overrides.items():
        if loc and ".".join(key_path) == loc:
            origin = f" (from {name})"
    # A message that already names its key (``http.intake_token_env is required …``) needs no prefix.
    names_key = bool(loc) and message.split(" ", 1)[0].startswith(f"{loc}.")
    prefix = f"{config_path}: {loc}: " if loc and not names_key else f"{config_path}: "
    return f"{prefix}{message}{origin}"
