"""Signed callbacks (Standard Webhooks; SPEC §5.3, §7): the signature and the timestamp of a
callback checked before a byte of its body is read as an acknowledgement. Pure: the time is given.

The signature is an HMAC-SHA256 over ``<webhook-id>.<webhook-timestamp>.<body>``, keyed with the
base64 secret after its ``whsec_`` prefix, sent as ``webhook-signature: v1,<base64>`` (several
space-separated signatures may come while a secret is rotated). Whatever the headers and the body,
:meth:`CallbackVerifier.verify` returns the ``webhook-id`` or raises :class:`CallbackRejected`
naming the header at fault; it never echoes a header's value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from notifier.domain.errors import InvalidRequest

__all__ = ["TOLERANCE_S", "CallbackRejected", "CallbackVerifier", "decode_secret"]

TOLERANCE_S: Final = 5 * 60
SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the prefix Standard Webhooks secrets carry
MAX_WEBHOOK_ID: Final = 256
# Printable ASCII without the space: the id is remembered in the store and logged.
_WEBHOOK_ID: Final = re.compile(rf"[\x21-\x7e]{{1,{MAX_WEBHOOK_ID}}}")
_TIMESTAMP: Final = re.compile(r"[0-9]{1,12}")  # seconds since the epoch
_SIGNATURE_BYTES: Final = hashlib.sha256().digest_size
_MAX_SIGNATURES: Final = 16


class CallbackRejected(InvalidRequest):
    """A callback whose signature, timestamp or id does not hold; ``reason`` names the header."""


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret (``whsec_`` + base64, as the reference library
    reads it); raises ValueError saying what is wrong, never quoting the secret."""
    text = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(text + "==")  # unpadded base64 is accepted, like the library does
    except (binascii.Error, ValueError):
        raise ValueError("the signing secret is not base64 after its whsec_ prefix") from None
    if not key:
        raise ValueError("the signing secret is empty after its whsec_ prefix")
    return key


def _lower(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return {str(name).lower(): str(value) for name, value in pairs}


@dataclass(frozen=True, slots=True)
class CallbackVerifier:
    key: bytes

    @classmethod
    def from_secret(cls, secret: str) -> CallbackVerifier:
        return cls(decode_secret(secret))

    def signature(self, webhook_id: str, timestamp: int, body: bytes) -> bytes:
        signed = f"{webhook_id}.{timestamp}.".encode("ascii") + body
        return hmac.new(self.key, signed, hashlib.sha256).digest()

    def sign(self, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        """The three headers of a signed callback (what a platform, or the sandbox, sends)."""
        digest = base64.b64encode(self.signature(webhook_id, timestamp, body)).decode("ascii")
        return {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": f"v1,{digest}",
        }

    def verify(
        self, body: bytes, headers: Mapping[str, str] | Iterable[tuple[str, str]], *, now: float
    ) -> str:
        """The callback's ``webhook-id`` when its signature holds and its timestamp is within
        :data:`TOLERANCE_S` of ``now`` (seconds since the epoch); :class:`CallbackRejected` otherwise."""
        found = _lower(headers)
        webhook_id = found.get("webhook-id", "").strip()
        stamp = found.get("webhook-timestamp", "").strip()
        offered = found.get("webhook-signature", "").strip()
        missing = [
            name
            for name, value in (
                ("webhook-id", webhook_id),
                ("webhook-timestamp", stamp),
                ("webhook-signature", offered),
            )
            if not value
        ]
        if missing:
            raise CallbackRejected(f"missing header: {', '.join(missing)}")
        if not _WEBHOOK_ID.fullmatch(webhook_id):
            raise CallbackRejected(
                f"webhook-id: must be 1-{MAX_WEBHOOK_ID} printable ASCII characters without spaces"
            )
        if not _TIMESTAMP.fullmatch(stamp):
            raise CallbackRejected("webhook-timestamp: must be whole seconds since the epoch")
        timestamp = int(stamp)
        if timestamp < now - TOLERANCE_S:
            raise CallbackRejected("webhook-timestamp: older than 5 minutes")
        if timestamp > now + TOLERANCE_S:
            raise CallbackRejected("webhook-timestamp: more than 5 minutes in the future")
        expected = self.signature(webhook_id, timestamp, body)
        if not any(hmac.compare_digest(expected, candidate) for candidate in _v1_signatures(offered)):
            raise CallbackRejected("webhook-signature: no v1 signature matches the body")
        return webhook_id


def _v1_signatures(header: str) -> list[bytes]:
    """The decodable ``v1`` signatures of a header; other versions and malformed entries are skipped
    (a platform rotating its secret may send several)."""
    signatures: list[bytes] = []
    for entry in header.split()[:_MAX_SIGNATURES]:
        version, comma, encoded = entry.partition(",")
        if version != "v1" or not comma:
            continue
        try:
            decoded = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(decoded) == _SIGNATURE_BYTES:
            signatures.append(decoded)
    return signatures
