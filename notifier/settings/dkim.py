"""``[dkim]``: the key every outgoing email is signed with (SPEC §15), so a platform can check that a
notice is the authority's and unchanged.

The private key is read once, here, from the environment variable ``private_key_env`` names; it is
never written in the file, never printed and never put in an error message (errors name the key and
the variable only).
"""

from __future__ import annotations

import re
from typing import Annotated, Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import BeforeValidator, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from notifier.settings.fields import Section, _string_list, env_secret

# RFC 6376 §5.4.1 recommends these; the notifier's own X- header names the notice, and Reply-To, Cc
# and Auto-Submitted change where answers go and who answers. A name in the list that a message
# lacks is simply not signed in it.
DEFAULT_SIGNED_HEADERS: Final = (
    "From",
    "To",
    "Cc",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Content-Type",
    "MIME-Version",
    "Auto-Submitted",
    "X-Notifier-Notice-Id",
)
# Headers a relay adds or rewrites (RFC 6376 §5.4): signing them would break every signature.
_NEVER_SIGNED: Final = frozenset(
    {"return-path", "received", "bcc", "resent-bcc", "dkim-signature", "comments"}
)
_FIELD_NAME: Final = re.compile(r"^[!-9;-~]{1,76}$")  # RFC 5322 ftext
_SELECTOR: Final = re.compile(
    r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62}))*$"
)
_DOMAIN: Final = re.compile(
    r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
MIN_RSA_BITS: Final = 1024  # RFC 8301: verifiers reject shorter keys

DkimKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


class DkimSettings(Section):
    """Off unless ``domain``, ``selector`` and ``private_key_env`` are all given."""

    domain: str = ""
    selector: str = ""
    private_key_env: str = ""
    headers: Annotated[list[str], BeforeValidator(_string_list)] = Field(
        default_factory=lambda: list(DEFAULT_SIGNED_HEADERS)
    )
    _key: DkimKey | None = PrivateAttr(default=None)

    @property
    def enabled(self) -> bool:
        return self._key is not None

    @property
    def key(self) -> DkimKey | None:
        """The private key, loaded once from the environment (None when DKIM is off)."""
        return self._key

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _FIELD_NAME.match(name):
                raise ValueError(f"'{name[:80]}' is not a header field name")
            if name.lower() in _NEVER_SIGNED:
                raise ValueError(f"{name} is changed on the way by relays and must not be signed")
        if "from" not in {name.lower() for name in value}:
            raise ValueError("must include From (RFC 6376 §5.4)")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _load_key(self, info: ValidationInfo) -> DkimSettings:
        given = {
            k: v
            for k, v in (
                ("domain", self.domain),
                ("selector", self.selector),
                ("private_key_env", self.private_key_env),
            )
            if v
        }
        if not given:
            return self
        missing = [f"dkim.{k}" for k in ("domain", "selector", "private_key_env") if k not in given]
        if missing:
            raise ValueError(
                f"{', '.join(missing)} missing: [dkim] needs domain, selector and private_key_env"
            )
        if not _DOMAIN.match(self.domain):
            raise ValueError(f"dkim.domain: '{self.domain[:80]}' is not a domain name")
        if not _SELECTOR.match(self.selector):
            raise ValueError(f"dkim.selector: '{self.selector[:80]}' is not a DNS label")
        secret = env_secret(info, "dkim.private_key_env", self.private_key_env, required=True)
        assert secret is not None  # required=True raises instead
        self._key = load_key(secret.get_secret_value().encode(), self.private_key_env)
        return self


def load_key(pem: bytes, variable: str) -> DkimKey:
    """The RSA or Ed25519 private key in ``pem``; the errors name ``variable``, never the value."""
    where = f"environment variable {variable} (named by dkim.private_key_env)"
    try:
        key = load_pem_private_key(pem.replace(b"\\n", b"\n").strip() + b"\n", password=None)
    except TypeError:
        raise ValueError(f"{where} holds an encrypted private key; give it unencrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(f"{where} does not hold a PEM private key") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(
                f"{where} holds a {key.key_size}-bit RSA key; DKIM needs at least {MIN_RSA_BITS}"
            )
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise ValueError(
        f"{where} holds a {type(key).__name__.removeprefix('_')} key; DKIM signs with RSA or Ed25519"
    )
