"""Coverage-guided fuzzing of the signed-callback verifier (Standard Webhooks; SPEC §5.3):
``python -m tests.fuzz.atheris_callbacks [libFuzzer options] [corpus dirs]``.

The first byte chooses between arbitrary headers (any names, any values, lone surrogates included,
as aiohttp hands over undecodable header bytes) and a correctly signed callback, maybe tampered with.
"""

from __future__ import annotations

import sys

import atheris

if __name__ == "__main__":  # instrumented for coverage only when fuzzing, not when a test imports it
    with atheris.instrument_imports(include=["notifier"]):
        from tests.fuzz import targets

from tests.fuzz import targets

NAMES = (*targets.CALLBACK_HEADERS, "Webhook-Id", "WEBHOOK-SIGNATURE", "content-type")


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeBool():
        webhook_id = "".join(chr(33 + b % 94) for b in fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 40)))
        skew = fdp.ConsumeIntInRange(-400, 400)
        tamper = targets.TAMPERINGS[fdp.ConsumeIntInRange(0, len(targets.TAMPERINGS) - 1)]
        at = fdp.ConsumeIntInRange(0, 1 << 16)
        targets.check_signed_callback(
            fdp.ConsumeBytes(fdp.remaining_bytes()), webhook_id or "x", skew, tamper, at
        )
        return
    headers = []
    for _ in range(fdp.ConsumeIntInRange(0, 5)):
        name = NAMES[fdp.ConsumeIntInRange(0, len(NAMES) - 1)]
        headers.append((name, fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 64))))
    now = targets.NOW + fdp.ConsumeIntInRange(-1000, 1000)
    targets.check_callback(fdp.ConsumeBytes(fdp.remaining_bytes()), headers, now)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
