"""The mail sections: the relays notices and alerts leave through, the mailbox and the listener
replies arrive at."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, ClassVar, Final, Literal

from pydantic import Field, PrivateAttr, SecretStr, ValidationInfo, field_validator, model_validator

from notifier.settings.fields import Duration, Email, Section, env_secret, is_loopback, split_listen


class RelaySettings(Section):
    """An SMTP relay: where to connect, how to secure the connection and how to log in.

    ``section`` names the keys in messages (``smtp.password_env``, ``alerts.password_env``).
    """

    section: ClassVar[str] = "smtp"

    host: str = "localhost"
    port: Annotated[int, Field(ge=1, le=65535)] = 25
    starttls: Literal["auto", "required", "off"] = "auto"
    username: str = ""
    password_env: str = ""
    timeout: Duration = timedelta(seconds=30)
    _password: SecretStr | None = PrivateAttr(default=None)

    @property
    def password(self) -> SecretStr | None:
        return self._password

    @model_validator(mode="after")
    def _password_secret(self, info: ValidationInfo) -> RelaySettings:
        self._password = env_secret(
            info, f"{self.section}.password_env", self.password_env, required=bool(self.username)
        )
        return self


class SmtpSettings(RelaySettings):
    """The relay notices, reminders and escalations leave through."""

    from_: Annotated[Email, Field(alias="from")] = "takedown@authority.example"
    envelope_from: str = "bounces+{notice_id}@authority.example"

    @model_validator(mode="after")
    def _verp(self) -> SmtpSettings:
        if "{notice_id}" not in self.envelope_from:
            raise ValueError("smtp.envelope_from must contain {notice_id} so bounces name their notice")
        return self


# The keys that only mean something for a relay of the alerts' own.
_RELAY_KEYS: Final = frozenset({"port", "starttls", "username", "password_env", "timeout"})


class AlertsSettings(RelaySettings):
    """A relay of its own for the operations alerts, so that an alert about the notice relay failing
    does not depend on that relay. Without ``host`` alerts go through ``[smtp]``; ``from`` alone
    changes only their sender."""

    section: ClassVar[str] = "alerts"

    host: str = ""
    from_: Annotated[Email | None, Field(alias="from")] = None

    @model_validator(mode="after")
    def _relay_needs_host(self) -> AlertsSettings:
        relay_keys = sorted(self.model_fields_set & _RELAY_KEYS)
        if not self.host and relay_keys:
            keys = ", ".join(f"alerts.{key}" for key in relay_keys)
            raise ValueError(f"{keys} without alerts.host: alerts would still use the [smtp] relay")
        return self


class InboundSmtpSettings(Section):
    listen: str = ""

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if value:
            split_listen(value)
        return value


class ImapSettings(Section):
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
        self._password = env_secret(info, "imap.password_env", self.password_env, required=bool(self.host))
        return self
