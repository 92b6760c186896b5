"""Each atheris harness run for a fixed number of inputs with a fixed seed, in a subprocess, over
the seeds and crashers kept in the repository: the harnesses stay runnable, every kept crasher stays
fixed, and the first mutations around the seeds are tried at every ``make test``. ``make fuzz``
runs the same harnesses for minutes each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.run import REPO, TARGETS

RUNS = {"requests": 3000, "acks": 3000, "callbacks": 3000, "replies": 150}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_a_short_fixed_run_of_the_harness_finds_nothing(target: str, tmp_path: Path) -> None:
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz.run",
            target,
            "--runs",
            str(RUNS[target]),
            "--work",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output[-4000:]
    assert "Done" in output, output[-4000:]
    assert not list(tmp_path.glob("crash-*")), output[-4000:]
