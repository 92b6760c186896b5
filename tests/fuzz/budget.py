"""How much the fuzz tests of ``make test`` try: few enough examples to stay within seconds per test
on a slow shared machine, derandomised so that every run tries the same ones (a test that fails one
run in fifty is a failing test). ``NOTIFIER_FUZZ_SCALE=20`` multiplies the examples for a longer
run by hand (``make fuzz`` runs the coverage-guided harnesses instead)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

SCALE = float(os.environ.get("NOTIFIER_FUZZ_SCALE", "1"))


def budget(examples: int) -> settings:
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
