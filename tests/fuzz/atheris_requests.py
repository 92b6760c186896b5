"""Coverage-guided fuzzing of request parsing (SPEC §5.1): ``python -m tests.fuzz.atheris_requests
[libFuzzer options] [corpus dirs]``; ``make fuzz`` runs it over tests/fuzz/corpus/requests."""

from __future__ import annotations

import sys

import atheris

if __name__ == "__main__":  # instrumented for coverage only when fuzzing, not when a test imports it
    with atheris.instrument_imports(include=["notifier"]):
        from tests.fuzz import targets

from tests.fuzz import targets


def test_one_input(data: bytes) -> None:
    targets.check_request(data)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
