"""DKIM signatures over the exact bytes handed to the relay (RFC 6376; Ed25519 per RFC 8463).

dkimpy canonicalizes and hashes the headers and body and folds the ``DKIM-Signature`` field; the
private key operation is done by ``cryptography`` (OpenSSL) with a key loaded once at start-up.
dkimpy's own signing parses the PEM key on every message and computes RSA in pure Python, about
6 ms a message with a 2048-bit key, which would cap one dispatcher at some 150 notices a second;
with OpenSSL it is well under a millisecond (``bench/dkim_sign.py``). Ed25519 needs no PyNaCl this
way either.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Sequence
from typing import Final

import dkim
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from dkim.canonicalization import CanonicalizationPolicy

from notifier.settings import DkimKey, DkimSettings

__all__ = ["DkimSigner", "dns_record", "signer_from"]

# Relaxed headers (relays refold them), simple body: notifier's bodies are CRLF lines of 7-bit text,
# quoted-printable or base64 that relays pass on as they are, and dkimpy's relaxed body rules are
# regular expressions over every byte (three quarters of the cost of signing a 200 kB notice).
_CANONICALIZE: Final = CanonicalizationPolicy.from_c_value(b"relaxed/simple")
_PLACEHOLDER: Final = b"0" * 60  # b= while hashing; dkimpy's fold keeps it on a line of its own


class DkimSigner:
    """Signs a flattened message for ``domain`` with ``selector``'s key.

    ``headers`` are the fields to sign; each one present in a message is signed as often as it occurs,
    and ``From`` once more (an added second From would break the signature: RFC 6376 §8.15).
    """

    def __init__(self, *, domain: str, selector: str, key: DkimKey, headers: Sequence[str]) -> None:
        self._domain = domain.encode("ascii")
        self._selector = selector.encode("ascii")
        self._key = key
        self._wanted = tuple(dict.fromkeys(h.lower().encode("ascii") for h in headers))
        self._algorithm = b"ed25519-sha256" if isinstance(key, ed25519.Ed25519PrivateKey) else b"rsa-sha256"

    @property
    def domain(self) -> str:
        return self._domain.decode()

    def sign(self, message: bytes, *, now: float | None = None) -> bytes:
        """``message`` with a ``DKIM-Signature`` header field put first (CRLF line ends, as sent).

        ``t=`` is the machine's time, not the business clock's: verifiers may refuse a signature
        dated in the future, and a simulated clock (the demo) runs ahead."""
        return self.signature(message, now=now) + message

    def signature(self, message: bytes, *, now: float | None = None) -> bytes:
        """The ``DKIM-Signature: …\\r\\n`` header field of ``message``."""
        head, separator, body = message.partition(b"\r\n\r\n")
        # dkimpy parses the headers only: splitting a large body into lines costs as much again.
        d = dkim.DKIM(head + b"\r\n\r\n", signature_algorithm=self._algorithm)
        present = [name.lower() for name, _ in d.headers]
        include = [name for name in self._wanted for _ in range(present.count(name))]
        if b"from" not in include:
            raise ValueError("a DKIM-signed message needs a From header")
        include.append(b"from")
        body_hash = base64.b64encode(_simple_body_hash(body if separator else b""))
        fields = [
            (b"v", b"1"),
            (b"a", self._algorithm),
            (b"c", _CANONICALIZE.to_c_value()),
            (b"d", self._domain),
            (b"s", self._selector),
            (b"t", str(int(now if now is not None else time.time())).encode("ascii")),
            (b"h", b" : ".join(include)),
            (b"bh", body_hash),
            (b"b", _PLACEHOLDER),
        ]
        name = b"DKIM-Signature"
        value = dkim.fold(b"; ".join(b"=".join(f) for f in fields), namelen=len(name), linesep=b"\r\n")
        value = dkim.RE_BTAG.sub(b"\\1", value)
        hasher = dkim.HashThrough(dkim.HASH_ALGORITHMS[self._algorithm]())
        dkim.hash_headers(
            hasher,
            _CANONICALIZE,
            _CANONICALIZE.canonicalize_headers(d.headers),
            include,
            (name, b" " + value),
            dict(fields),
        )
        fields[-1] = (b"b", base64.b64encode(self._raw_signature(hasher.digest())))
        value = dkim.fold(
            b"; ".join(b"=".join(f) for f in fields) + b"\r\n", namelen=len(name), linesep=b"\r\n"
        )
        signed: bytes = name + b": " + value
        return signed

    def _raw_signature(self, digest: bytes) -> bytes:
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.sign(digest)  # RFC 8463 §3: Ed25519 over the SHA-256 of the headers
        return self._key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))


def _simple_body_hash(body: bytes) -> bytes:
    """SHA-256 of the body under "simple" canonicalization (RFC 6376 §3.4.3): every trailing empty
    line dropped and the body ended with one CRLF, hashed without copying it."""
    end = len(body)
    while end >= 2 and body[end - 2 : end] == b"\r\n":
        end -= 2
    digest = hashlib.sha256(memoryview(body)[:end])
    digest.update(b"\r\n")
    return digest.digest()


def dns_record(key: DkimKey) -> str:
    """The TXT record to publish at ``<selector>._domainkey.<domain>`` for ``key``."""
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        der = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode('ascii')}"


def signer_from(settings: DkimSettings) -> DkimSigner | None:
    """The signer of ``[dkim]``, or None when DKIM is off."""
    key = settings.key
    if key is None:
        return None
    return DkimSigner(domain=settings.domain, selector=settings.selector, key=key, headers=settings.headers)
