"""A port another process holds stops the daemon with one line naming the key, exit 2."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.evidence_key import EVIDENCE_ENV

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize("key", ["http.listen", "inbound_smtp.listen"])
def test_a_taken_port_is_one_line_naming_its_key(tmp_path: Path, taken_port: int, key: str) -> None:
    shutil.copytree(REPO / "config", tmp_path / "config")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")} | EVIDENCE_ENV
    env["NOTIFIER_HTTP__LISTEN"] = "127.0.0.1:0"
    section = key.partition(".")[0].upper()
    env[f"NOTIFIER_{section}__LISTEN"] = f"127.0.0.1:{taken_port}"
    result = subprocess.run(
        [sys.executable, "-m", "notifier", "-c", str(tmp_path / "config" / "notifier.toml"), "run"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2
    [line] = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert line == (
        f'notifier: {key} = "127.0.0.1:{taken_port}": cannot listen there: '
        "the address is already in use (another process listens there)"
    )
    assert "Traceback" not in result.stderr
