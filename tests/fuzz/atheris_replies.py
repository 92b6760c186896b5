"""Coverage-guided fuzzing of the reply classifier (SPEC §7): ``python -m tests.fuzz.atheris_replies
[libFuzzer options] [corpus dirs]``; ``make fuzz`` seeds it with tests/mail-corpus as well as
tests/fuzz/corpus/replies. The email package is instrumented too: most of the paths are in it."""

from __future__ import annotations

import sys

import atheris

if __name__ == "__main__":  # instrumented for coverage only when fuzzing, not when a test imports it
    with atheris.instrument_imports(include=["notifier", "email"]):
        from tests.fuzz import targets

from tests.fuzz import targets

RECIPIENTS = ("bounces+TD-telegram-20240903-000012@authority.example",)


def test_one_input(data: bytes) -> None:
    # The first byte says whether the mail came over SMTP with a VERP envelope recipient.
    recipients = RECIPIENTS if data[:1] == b"\x01" else ()
    targets.check_mail(data[1:] if recipients else data, recipients)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
