"""The DKIM signer against dkimpy's verifier: bodies with and without trailing empty lines, headers
signed as often as they occur, and Ed25519 keys (RFC 8463)."""

from __future__ import annotations

from typing import Any

import dkim
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from notifier.channels.dkim import DkimSigner, dns_record
from notifier.settings import DEFAULT_SIGNED_HEADERS

HEAD = b"From: Authority <takedown@authority.example>\r\nTo: abuse@platform.example\r\nSubject: notice\r\n"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def signer(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> DkimSigner:
    return DkimSigner(domain="authority.example", selector="s1", key=key, headers=DEFAULT_SIGNED_HEADERS)


def dns(key: rsa.RSAPrivateKey) -> Any:
    record = dns_record(key).encode()
    return lambda name, timeout=5: record if name == b"s1._domainkey.authority.example." else None


@pytest.mark.parametrize(
    "body", [b"", b"\r\n", b"one line\r\n", b"trailing empty lines\r\n\r\n\r\n", b"no final line end"]
)
def test_any_body_verifies_and_one_added_line_of_text_does_not(key: rsa.RSAPrivateKey, body: bytes) -> None:
    signed = signer(key).sign(HEAD + b"\r\n" + body)
    assert dkim.verify(signed, dnsfunc=dns(key))
    assert not dkim.verify(signed + b"\r\nP.S. pay here\r\n", dnsfunc=dns(key))


def test_a_header_added_on_the_way_breaks_the_signature(key: rsa.RSAPrivateKey) -> None:
    signed = signer(key).sign(HEAD + b"\r\nbody\r\n")
    assert dkim.verify(signed, dnsfunc=dns(key))
    # A second From or To (phishing the platform with the authority's name) is not covered.
    assert not dkim.verify(
        signed.replace(b"\r\n\r\n", b"\r\nFrom: someone@else.example\r\n\r\n", 1), dnsfunc=dns(key)
    )
    assert not dkim.verify(
        signed.replace(b"\r\n\r\n", b"\r\nTo: attacker@else.example\r\n\r\n", 1), dnsfunc=dns(key)
    )
    # A header nobody signs (a relay's Received) changes nothing.
    assert dkim.verify(b"Received: from relay.example\r\n" + signed, dnsfunc=dns(key))


def test_a_message_without_from_cannot_be_signed(key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError, match="From"):
        signer(key).sign(b"To: a@b.example\r\n\r\nbody\r\n")


def test_an_ed25519_signature_verifies_with_the_published_public_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """dkimpy verifies Ed25519 through PyNaCl, which notifier does not need; the public key it would
    load from DNS is given here as cryptography's, and each of dkimpy's checks with it is recorded
    (dkimpy's own failure path names PyNaCl's exception, so a failed check is recorded, not raised)."""
    private = ed25519.Ed25519PrivateKey.generate()
    checks: list[bool] = []

    class PublicKey:
        def __init__(self, public: ed25519.Ed25519PublicKey) -> None:
            self.public = public

        def verify(self, data: bytes, signature: bytes) -> None:
            try:
                self.public.verify(signature, data)
            except InvalidSignature:
                checks.append(False)
            else:
                checks.append(True)

    def load(name: bytes, dnsfunc: Any, timeout: int = 5) -> tuple[Any, int, bytes, bool]:
        assert name == b"s1._domainkey.authority.example."
        return PublicKey(private.public_key()), 256, b"ed25519", False

    monkeypatch.setattr(dkim, "load_pk_from_dns", load)
    signed = signer(private).sign(HEAD + b"\r\nbody\r\n")
    assert b"a=ed25519-sha256" in signed
    dkim.verify(signed)
    dkim.verify(signed.replace(b"Subject: notice", b"Subject: notices", 1))
    assert checks == [True, False]
