"""Running notifier the way an operator does: a config file, the CLI, the daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.evidence_key import EVIDENCE_ENV
from tests.waiting import wait_for

__all__ = ["Daemons", "notifier", "start_daemon", "status_json", "stored_total", "wait_for", "write_config"]

REPO = Path(__file__).resolve().parents[2]


def write_config(
    directory: Path,
    *,
    store_url: str,
    queue_url: str,
    requests_queue: str = "takedown.requests",
    acks_queue: str = "takedown.acks",
    http_listen: str = "127.0.0.1:0",
    runtime: str = 'grace = "10s"',
    extra: str = "",
    platforms: str | None = None,
) -> Path:
    """A complete configuration; by default with the three sandbox-style platforms.

    ``runtime`` holds the lines of [runtime]; ``extra`` adds sections ([smtp], [sla], …);
    ``platforms`` replaces the platforms.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "notifier.toml"
    path.write_text(
        f"""
[authority]
name = "Test Authority"
email = "takedown@authority.example"
timezone = "Asia/Seoul"
operations_email = ["ops@authority.example"]

[categories]
deepfake_sexual_abuse = "Deepfake sexual abuse material"

[store]
url = "{store_url}"

[queue]
url = "{queue_url}"
requests = "{requests_queue}"
acks = "{acks_queue}"

[http]
listen = "{http_listen}"

[runtime]
{runtime}

{extra}

{platforms if platforms is not None else DEFAULT_PLATFORMS}
""",
        encoding="utf-8",
    )
    return path


DEFAULT_PLATFORMS = """
[platforms.telegram]
name = "Telegram"
channel = "email"
[platforms.telegram.email]
to = ["abuse@telegram.example"]

[platforms.videohost]
name = "VideoHost"
channel = "api"
[platforms.videohost.api]
url = "http://127.0.0.1:9/v1/notices"

[platforms.clipshare]
name = "ClipShare"
channel = "manual"
"""


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")} | EVIDENCE_ENV
    env["PYTHONUNBUFFERED"] = "1"
    return env


def notifier(
    *args: str, stdin: bytes | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m notifier ARGS`` and return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "notifier", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env=cli_env(),
        cwd=REPO,
        check=False,
    )


def status_json(config: Path) -> dict[str, Any]:
    result = notifier("status", "--json", "-c", str(config))
    assert result.returncode == 0, result.stderr.decode()
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def start_daemon(config: Path, log_file: Path) -> subprocess.Popen[bytes]:
    with log_file.open("ab") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "notifier", "run", "-c", str(config)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=cli_env(),
            cwd=REPO,
        )


def stored_total(document: dict[str, Any]) -> int:
    return sum(sum(states.values()) for states in document["requests"].values())


class Daemons:
    """``notifier run`` subprocesses of one test, each with its own log file; leftovers are killed."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, config: Path, name: str) -> subprocess.Popen[bytes]:
        log_file = self.directory / f"{name}.log"
        process = start_daemon(config, log_file)
        self.started.append((process, log_file))
        return process

    def log_of(self, process: subprocess.Popen[bytes]) -> Path:
        return next(log for p, log in self.started if p is process)

    def tail(self, process: subprocess.Popen[bytes], chars: int = 3000) -> str:
        return self.log_of(process).read_text(errors="replace")[-chars:]

    def events(self, event: str, process: subprocess.Popen[bytes] | None = None) -> list[dict[str, Any]]:
        """The JSON log lines with ``event``, of ``process`` or of every daemon (each record then
        names its log file under ``"log"``)."""
        logs = [self.log_of(process)] if process is not None else [log for _, log in self.started]
        found = []
        for log in logs:
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    record = json.loads(line)
                    if record.get("event") == event:
                        found.append(record | {"log": log.name})
        return found

    def assert_alive(self, *processes: subprocess.Popen[bytes]) -> None:
        for process in processes:
            assert process.poll() is None, f"daemon {process.pid} exited:\n{self.tail(process)}"

    def kill_leftovers(self) -> None:
        for process, _ in self.started:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
