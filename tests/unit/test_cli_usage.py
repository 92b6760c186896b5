"""The command line's own options and usage: ``-c/--config`` before or after the command (SPEC §3),
help, and unknown commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config" / "notifier.toml"


def notifier(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NOTIFIER_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "notifier", *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.mark.parametrize(
    "args",
    [
        ("-c", str(CONFIG), "check-config"),
        ("--config", str(CONFIG), "check-config"),
        (f"--config={CONFIG}", "check-config"),
        ("check-config", "-c", str(CONFIG)),
    ],
)
def test_the_configuration_is_taken_before_or_after_the_command(args: tuple[str, ...]) -> None:
    result = notifier(*args)
    assert result.returncode == 0, result.stderr
    assert "configuration is valid" in result.stdout


def test_a_missing_configuration_given_first_is_named_and_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    result = notifier("-c", str(missing), "check-config")
    assert result.returncode == 2
    assert str(missing) in result.stderr and "no such configuration file" in result.stderr


def test_the_option_after_the_command_wins_over_the_one_before(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    result = notifier("-c", str(missing), "check-config", "-c", str(CONFIG))
    assert result.returncode == 0, result.stderr


def test_notifier_alone_prints_its_help_and_no_error() -> None:
    result = notifier()
    assert result.returncode == 0
    assert "Usage: python -m notifier [OPTIONS] COMMAND" in result.stdout
    assert result.stderr == ""


def test_an_unknown_command_is_one_line_on_stderr_exit_2() -> None:
    result = notifier("nosuch")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "python -m notifier: No such command 'nosuch'. (see python -m notifier --help)"
    )
