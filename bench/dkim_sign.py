"""The cost of DKIM-signing a notice (SPEC §15), per message, beside building it unsigned.

A notice of 50 requests (the largest batch) is built and flattened as the email channel does; the
figures are the time to build and flatten it (the bare peer, what every send already pays), to sign
those bytes with notifier's signer (dkimpy's canonicalization, OpenSSL's key operation, the key
loaded once) with a 2048-bit RSA key and with an Ed25519 key, and to sign them with dkimpy's own
``dkim.sign`` (which parses the PEM key and computes RSA in pure Python on every message).

Usage: .venv/bin/python bench/dkim_sign.py [--messages 300] [--requests 50]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from notifier.channels.dkim import DkimSigner
from notifier.channels.email import build_notice_email, flatten
from notifier.channels.rendering import Renderer, default_templates_dir
from notifier.domain.models import TakedownRequest
from notifier.domain.notices import Authority, NoticeContent
from notifier.settings import DEFAULT_SIGNED_HEADERS

CREATED = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
AUTHORITY = Authority(name="Authority", email="takedown@authority.example", reply_to=None, timezone="UTC")


def notice(requests: int) -> NoticeContent:
    return NoticeContent(
        notice_id="TD-telegram-20260302-000001",
        platform="telegram",
        platform_name="Telegram",
        language="en",
        created_at=CREATED,
        ack_by=CREATED + timedelta(hours=36),
        remove_by=CREATED + timedelta(hours=36),
        authority=AUTHORITY,
        requests=tuple(
            TakedownRequest(
                request_id=f"r-{i:06d}",
                platform="telegram",
                urls=(f"https://t.me/channel/{i}", f"https://t.me/channel/{i}/2"),
                category="deepfake_sexual_abuse",
                explanation="Synthetic imagery of an identifiable person made without consent. " * 3,
            )
            for i in range(requests)
        ),
        category_labels={"deepfake_sexual_abuse": "Deepfake sexual abuse material"},
    )


def per_message(action: Callable[[], object], messages: int) -> float:
    action()  # warm-up
    started = time.perf_counter()
    for _ in range(messages):
        action()
    return (time.perf_counter() - started) / messages * 1000


def main(messages: int, requests: int) -> None:
    renderer = Renderer(default_templates_dir())
    content = notice(requests)

    def build() -> bytes:
        message = build_notice_email(
            content,
            renderer=renderer,
            from_addr=AUTHORITY.email,
            reply_to=None,
            to=["abuse@telegram.example"],
            cc=[],
            message_id="<TD-telegram-20260302-000001.notice@authority.example>",
            in_reply_to=None,
        )
        return flatten(message)

    data = build()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    signers = {
        "rsa-2048": DkimSigner(
            domain="authority.example", selector="s", key=rsa_key, headers=DEFAULT_SIGNED_HEADERS
        ),
        "ed25519": DkimSigner(
            domain="authority.example",
            selector="s",
            key=ed25519.Ed25519PrivateKey.generate(),
            headers=DEFAULT_SIGNED_HEADERS,
        ),
    }
    print(f"notice of {requests} requests: {len(data):,} bytes; {messages} messages each")
    bare = per_message(build, messages)
    print(f"  build + flatten (bare peer)          {bare:7.3f} ms/message")
    for name, signer in signers.items():
        cost = per_message(lambda s=signer: s.sign(data), messages)  # type: ignore[misc]
        print(f"  notifier signer, {name:<9}           {cost:7.3f} ms/message  ({cost / bare:5.1%} of build)")
    headers = [
        h.encode() for h in DEFAULT_SIGNED_HEADERS if h in ("From", "To", "Subject", "Date", "Message-ID")
    ]
    own = per_message(
        lambda: dkim.sign(data, b"s", b"authority.example", pem, include_headers=headers), messages
    )
    print(f"  dkimpy dkim.sign, rsa-2048           {own:7.3f} ms/message  ({own / bare:5.1%} of build)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    print(f"$ {' '.join([sys.executable, *sys.argv])}")
    main(args.messages, args.requests)
