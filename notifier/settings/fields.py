"""What every section of the settings is built from: frozen sections, typed fields, secrets named
by ``*_env`` keys, and the few address and URL rules several sections share."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, SecretStr, ValidationInfo

from notifier.domain.durations import parse_duration

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


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def env_secret(info: ValidationInfo, key: str, name: str, *, required: bool) -> SecretStr | None:
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


def resolve_url(url: str, config_dir: Path) -> str:
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


def split_listen(value: str) -> tuple[str, int]:
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
