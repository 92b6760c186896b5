"""The intake scenario of 1,000 queue messages, generated from a seed (no fixture files on disk).

925 distinct valid requests, 20 exact copies of some of them (keys reordered: still the same
content), 5 conflicting versions (same request_id, different URLs), and 50 invalid messages of
varied kinds. Every body is free of newlines so the same messages serve as JSON Lines.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass

PLATFORMS = ("telegram", "videohost", "clipshare")
CATEGORY = "deepfake_sexual_abuse"


@dataclass(frozen=True)
class Message:
    body: bytes
    kind: str  # "valid", "duplicate", "conflict", or the invalid kind
    request_id: str | None


def valid_request(rng: random.Random, index: int) -> dict[str, object]:
    platform = PLATFORMS[index % len(PLATFORMS)]
    return {
        "request_id": f"kcsc-2024-{index:06d}",
        "platform": platform,
        "urls": [f"https://{platform}.example/c/{rng.randrange(10**9)}/{k}" for k in range(1 + index % 3)],
        "category": CATEGORY,
        "priority": "urgent" if index % 97 == 0 else "normal",
        "legal_basis": "Act on the Korea Communications Commission, Art. 21(4)",
        "explanation": "Synthetic sexual imagery of an identifiable person made without consent.",
        "decided_at": "2024-09-03T10:00:00+09:00",
        "evidence": [{"sha256": f"{rng.getrandbits(256):064x}", "pdq": f"{rng.getrandbits(256):064x}"}],
        "case_ref": f"2024-DF-{index:04d}",
        "territorial_scope": ["KR"],
    }


def _dump(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def _invalid(rng: random.Random, base: dict[str, object], n: int) -> list[Message]:
    """``n`` invalid messages cycling through the kinds an intake must survive."""

    def variant(**changes: object) -> dict[str, object]:
        copy = dict(base)
        copy["request_id"] = f"bad-{rng.randrange(10**9)}"
        copy.update(changes)
        return copy

    def fuzz() -> bytes:
        return bytes(rng.choice([b for b in range(256) if b != 0x0A]) for _ in range(rng.randrange(1, 400)))

    makers: list[tuple[str, Callable[[], bytes]]] = [
        ("bad_json", lambda: b'{"request_id": "x", "platform": '),
        ("bad_json_trailing", lambda: b'{"request_id": "x"} trailing'),
        ("wrong_type_urls", lambda: _dump(variant(urls="https://t.me/x"))),
        ("wrong_type_request_id", lambda: _dump(variant(request_id=12345))),
        ("crlf_request_id", lambda: _dump(variant(request_id="abc\r\nX-Injected: 1"))),
        ("crlf_url", lambda: _dump(variant(urls=["https://t.me/x\r\nBcc: victim@example.org"]))),
        ("javascript_url", lambda: _dump(variant(urls=["javascript:alert(document.cookie)"]))),
        ("unknown_platform", lambda: _dump(variant(platform="myspace"))),
        ("unknown_category", lambda: _dump(variant(category="spam"))),
        ("unknown_field", lambda: _dump(variant(victim_name="should never be accepted"))),
        ("missing_urls", lambda: _dump({k: v for k, v in variant().items() if k != "urls"})),
        ("credentials_url", lambda: _dump(variant(urls=["https://admin:hunter2@t.me/x"]))),
        ("too_many_urls", lambda: _dump(variant(urls=[f"https://t.me/x/{i}" for i in range(101)]))),
        ("not_an_object", lambda: b'["https://t.me/x"]'),
        ("one_megabyte", lambda: _dump(variant(explanation="x" * (1024 * 1024)))),
        ("fuzzed_bytes", fuzz),
        ("not_utf8", lambda: b'{"request_id": "\xff\xfe", "platform": "telegram"}'),
        ("naive_decided_at", lambda: _dump(variant(decided_at="2024-09-03T10:00:00"))),
        ("bad_evidence", lambda: _dump(variant(evidence=[{"sha256": "not-a-hash"}]))),
        ("empty_object", lambda: b"{}"),
    ]
    messages = []
    for i in range(n):
        kind, make = makers[i % len(makers)]
        messages.append(Message(body=make(), kind=kind, request_id=None))
    return messages


def scenario(seed: int = 2024) -> list[Message]:
    rng = random.Random(seed)
    originals = [valid_request(rng, i) for i in range(925)]
    messages = [Message(body=_dump(r), kind="valid", request_id=str(r["request_id"])) for r in originals]
    for r in rng.sample(originals, 20):
        reordered = dict(reversed(list(r.items())))
        messages.append(Message(body=_dump(reordered), kind="duplicate", request_id=str(r["request_id"])))
    for r in rng.sample(originals, 5):
        changed = dict(r, urls=["https://example.org/a-different-url"])
        messages.append(Message(body=_dump(changed), kind="conflict", request_id=str(r["request_id"])))
    messages.extend(_invalid(rng, originals[0], 50))
    # Originals first, so "the first stored version" is known; the rest shuffled after.
    tail = messages[925:]
    rng.shuffle(tail)
    return messages[:925] + tail


EXPECTED_STORED = 925
EXPECTED_DEAD = 50
EXPECTED_CONFLICTS = 5
EXPECTED_DUPLICATES = 20
