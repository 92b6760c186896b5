"""Coverage-guided fuzzing of acknowledgement parsing and planning (SPEC §5.2, §7):
``python -m tests.fuzz.atheris_acks [libFuzzer options] [corpus dirs]``."""

from __future__ import annotations

import sys

import atheris

if __name__ == "__main__":  # instrumented for coverage only when fuzzing, not when a test imports it
    with atheris.instrument_imports(include=["notifier"]):
        from notifier.domain.models import RequestState
        from tests.fuzz import targets

from notifier.domain.models import RequestState
from tests.fuzz import targets

STATES = tuple(RequestState)


def test_one_input(data: bytes) -> None:
    # The last bytes choose the states of the notice's requests; the rest is the message.
    states = tuple(STATES[byte % len(STATES)] for byte in data[-4:]) if len(data) > 4 else ()
    targets.check_ack(data[:-4] if states else data, states)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
