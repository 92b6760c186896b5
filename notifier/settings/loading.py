"""The whole configuration and how it is read: the TOML file, then the environment's overrides,
then validation, every fault reported as one :class:`ConfigError` line naming the file and the key."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from notifier.domain.deadlines import DeadlineProfile, looser_keys
from notifier.domain.durations import format_duration
from notifier.domain.validation import PLATFORM_ID_PATTERN
from notifier.errors import ConfigError
from notifier.settings.dkim import DkimSettings
from notifier.settings.fields import Section, sqlite_path
from notifier.settings.mail import AlertsSettings, ImapSettings, InboundSmtpSettings, SmtpSettings
from notifier.settings.platforms import PlatformSettings
from notifier.settings.sections import (
    PACKAGED_TEMPLATES,
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

DEFAULT_CONFIG = Path("config/notifier.toml")
ENV_PREFIX = "NOTIFIER_"
_CATEGORY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class Settings(Section):
    authority: AuthoritySettings
    # ``id = "label"`` or ``[categories.<id>]`` with ``label`` and ``deadline`` (SPEC §14).
    categories: dict[str, str | CategorySettings]
    deadlines: dict[str, DeadlineSettings] = Field(default_factory=dict)
    # Built at validation time (not import time) so the relative path meets the config's folder.
    store: StoreSettings = Field(
        default_factory=lambda: {"url": "sqlite:///var/notifier.db"}, validate_default=True
    )
    queue: QueueSettings = Field(
        default_factory=lambda: {"url": "sqlite:///var/notifier.db"}, validate_default=True
    )
    smtp: SmtpSettings = SmtpSettings()
    alerts: AlertsSettings = AlertsSettings()
    dkim: DkimSettings = DkimSettings()
    inbound_smtp: InboundSmtpSettings = InboundSmtpSettings()
    imap: ImapSettings = ImapSettings()
    http: HttpSettings = HttpSettings()
    console: ConsoleSettings = ConsoleSettings()
    # Defaults are validated too, so their relative paths resolve against the config file's folder.
    manual: ManualSettings = Field(default_factory=ManualSettings, validate_default=True)
    templates: TemplatesSettings = Field(default_factory=TemplatesSettings, validate_default=True)
    runtime: RuntimeSettings = RuntimeSettings()
    sla: SlaSettings = SlaSettings()
    verify: VerifySettings = Field(default_factory=VerifySettings, validate_default=True)
    evidence: EvidenceSettings = Field(default_factory=EvidenceSettings, validate_default=True)
    platforms: dict[str, PlatformSettings]
    config_path: Path = Field(default=Path(), exclude=True)

    @model_validator(mode="after")
    def _alerts_have_recipients(self) -> Settings:
        if self.alerts.host and not self.authority.operations_email:
            raise ValueError(
                "alerts.host is set but authority.operations_email is empty: no alert would use it"
            )
        return self

    @model_validator(mode="after")
    def _deadlines(self) -> Settings:
        for name, profile in self.deadlines.items():
            if not _CATEGORY_PATTERN.match(name):
                raise ValueError(f"deadlines.{name}: a profile id must match [a-z][a-z0-9_]*")
            if profile.removal_within < profile.ack_within:
                raise ValueError(
                    f"deadlines.{name}.removal_within ({format_duration(profile.removal_within)}) is "
                    f"shorter than deadlines.{name}.ack_within ({format_duration(profile.ack_within)})"
                )
        for category, entry in self.categories.items():
            deadline = entry.deadline if isinstance(entry, CategorySettings) else None
            if deadline is not None and deadline not in self.deadlines:
                raise ValueError(
                    f"categories.{category}.deadline: '{deadline}' is not a profile under [deadlines]"
                )
        for platform_id, platform in self.platforms.items():
            for name, override in platform.deadlines.items():
                key = f"platforms.{platform_id}.deadlines.{name}"
                if name not in self.deadlines:
                    raise ValueError(f"{key}: '{name}' is not a profile under [deadlines]")
                looser = looser_keys(self.profile(name), override.ack_within, override.removal_within)
                if looser and not override.loosen:
                    raise ValueError(
                        f"{key}.{looser[0]} is looser than deadlines.{name}.{looser[0]}; "
                        f"set {key}.loosen = true if the law allows it"
                    )
                ack = override.ack_within or self.deadlines[name].ack_within
                removal = override.removal_within or self.deadlines[name].removal_within
                if removal < ack:
                    raise ValueError(
                        f"{key}.removal_within ({format_duration(removal)}) is shorter than "
                        f"ack_within ({format_duration(ack)})"
                    )
        return self

    @property
    def category_labels(self) -> dict[str, str]:
        """Each category's label in notices."""
        return {
            key: entry if isinstance(entry, str) else entry.label for key, entry in self.categories.items()
        }

    @property
    def category_deadlines(self) -> dict[str, str]:
        """The categories that name a deadline profile, with it."""
        return {
            key: entry.deadline
            for key, entry in self.categories.items()
            if isinstance(entry, CategorySettings) and entry.deadline is not None
        }

    def profile(self, name: str, platform: str | None = None) -> DeadlineProfile:
        """Profile ``name`` as it applies on ``platform`` (its overrides), or as configured."""
        base = self.deadlines[name]
        override = self.platforms[platform].deadlines.get(name) if platform is not None else None
        return DeadlineProfile(
            name=name,
            label=base.label,
            ack_within=(override.ack_within if override else None) or base.ack_within,
            removal_within=(override.removal_within if override else None) or base.removal_within,
            remind_at=(override.remind_at if override else None) or base.remind_at,
            urgent=base.urgent,
        )

    def platform_profiles(self, platform: str) -> dict[str, DeadlineProfile]:
        """Every profile as it applies on ``platform``."""
        return {name: self.profile(name, platform) for name in self.deadlines}

    @field_validator("categories")
    @classmethod
    def _categories(cls, value: dict[str, str | CategorySettings]) -> dict[str, str | CategorySettings]:
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
        if value.dir is None:
            return value.model_copy(update={"dir": PACKAGED_TEMPLATES})
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
