"""The mail sections: the relay notices leave through, the mailboxes and listener replies arrive at."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, SecretStr, ValidationInfo, field_validator, model_validator

from notifier.settings.fields import Duration, Email, Section, env_secret, is_loopback, split_listen


class SmtpSettings(Section):
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
        self._password = env_secret(
            info, "smtp.password_env", self.password_env, required=bool(self.username)
        )
        if "{notice_id}" not in self.envelope_from:
            raise ValueError("smtp.envelope_from must contain {notice_id} so bounces name their notice")
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
