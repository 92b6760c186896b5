"""One platform's section: its channels and addresses, batching, SLA bounds and escalation."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, SecretStr, ValidationInfo, field_validator, model_validator

from notifier.domain.signatures import decode_secret
from notifier.settings.fields import Duration, EmailList, PositiveDuration, Section, env_secret


class PlatformSlaSettings(Section):
    ack_within: Duration | None = None
    removal_within: Duration | None = None
    remind_at: Annotated[float, Field(gt=0, lt=1)] | None = None
    file_within: PositiveDuration | None = None


class PlatformVerifySettings(Section):
    """What means "removed" on this platform (SPEC §13): statuses, markers in the bytes read of a
    2xx answer (regexes), and final URLs after redirects (regexes)."""

    removed_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(
        default_factory=lambda: [404, 410, 451]
    )
    removed_markers: list[str] = Field(default_factory=list)
    removed_redirect: list[str] = Field(default_factory=list)

    @field_validator("removed_markers", "removed_redirect")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"'{pattern[:80]}' is not a regular expression: {error}") from None
        return value


class PlatformDeadlineSettings(Section):
    """``[platforms.<id>.deadlines.<profile>]``: this platform's bounds for a profile. Never looser
    than the profile's unless ``loosen = true``."""

    ack_within: PositiveDuration | None = None
    removal_within: PositiveDuration | None = None
    remind_at: Annotated[float, Field(gt=0, lt=1)] | None = None
    loosen: bool = False


class PlatformEmailSettings(Section):
    to: EmailList
    cc: EmailList = Field(default_factory=list)

    @field_validator("to")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("needs at least one address")
        return value


class PlatformApiSettings(Section):
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
        self._token = env_secret(info, "api.token_env", self.token_env, required=True)
        self._signing_secret = env_secret(
            info, "api.signing_secret_env", self.signing_secret_env, required=True
        )
        if self._signing_secret and not self._signing_secret.get_secret_value().startswith("whsec_"):
            raise ValueError(
                f"the secret in {self.signing_secret_env} must start with whsec_ (Standard Webhooks)"
            )
        if self._signing_secret:
            try:
                decode_secret(self._signing_secret.get_secret_value())
            except ValueError as error:
                raise ValueError(f"{self.signing_secret_env}: {error}") from None
        return self


class BatchSettings(Section):
    max_items: Annotated[int, Field(ge=1, le=10000)] = 50
    max_wait: Duration = timedelta(minutes=10)


class EscalationSettings(Section):
    email: EmailList = Field(default_factory=list)


Channel = Literal["email", "api", "manual"]


class PlatformSettings(Section):
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
    verify: PlatformVerifySettings = PlatformVerifySettings()
    deadlines: dict[str, PlatformDeadlineSettings] = Field(default_factory=dict)

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
