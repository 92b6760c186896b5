"""A new user following only the README submits their own request file to the running daemon and
sees it in ``notifier status``.

The README's "Your own requests" section holds one ``sh`` block: exactly the commands a user types.
This test takes that block out of README.md, checks that every file and module it names exists, and
runs its commands in order, as a user would from the repository's root, in a scratch folder holding
a copy of ``config/`` and ``examples/`` (so ``var/`` lands there). What it adds, and nothing else:
the real virtualenv for the ``.venv/bin/`` prefix, free ports through the documented environment
overrides and the sandbox's port flags, waiting (with deadlines) for each background process to be
ready and for the submitted requests to be stored, and SIGTERM for the background processes at the
end, each of which must then exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from notifier.settings import Settings, load_settings
from tests.acceptance.harness import cli_env, wait_for

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
HEADING = "## Your own requests"
VENV_PREFIX = ".venv/bin/"
VENV_BIN = Path(sys.executable).parent
SHELL_SYNTAX = {"|", "||", "&&", ";", ">", ">>", "<", "2>", "2>&1"}
READY_WITHIN = 60.0
SETTLED_WITHIN = 60.0
COMMAND_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Command:
    line: str  # as written in the README
    argv: tuple[str, ...]  # as written, without a trailing "&"
    background: bool

    @property
    def is_sandbox(self) -> bool:
        return _module(self.argv) == "notifier.sandbox"

    @property
    def is_daemon(self) -> bool:
        return _program(self.argv) == "notifier" and _subcommand(self.argv) == "run"

    @property
    def is_submit(self) -> bool:
        return _program(self.argv) == "notifier" and _subcommand(self.argv) == "submit"

    @property
    def is_status(self) -> bool:
        return _program(self.argv) == "notifier" and _subcommand(self.argv) == "status"


def _program(argv: tuple[str, ...]) -> str:
    name = Path(argv[0]).name
    return "notifier" if name == "python" and _module(argv) == "notifier" else name


def _module(argv: tuple[str, ...]) -> str | None:
    return argv[argv.index("-m") + 1] if "-m" in argv[:-1] else None


def _subcommand(argv: tuple[str, ...]) -> str | None:
    start = argv.index("-m") + 2 if _module(argv) == "notifier" else 1
    return next((word for word in argv[start:] if not word.startswith("-")), None)


def _positional(argv: tuple[str, ...]) -> list[str]:
    """The words after the subcommand that are neither flags nor flag values we know of."""
    words = list(argv[argv.index(_subcommand(argv) or "") + 1 :])
    found: list[str] = []
    while words:
        word = words.pop(0)
        if word in ("-c", "--config"):
            words.pop(0)
        elif not word.startswith("-"):
            found.append(word)
    return found


def readme_commands(text: str) -> list[Command]:
    """The commands of the one ``sh`` block of the README's "Your own requests" section."""
    start = text.find(f"\n{HEADING}\n")
    assert start >= 0, f"README.md has no '{HEADING}' section"
    end = text.find("\n## ", start + len(HEADING) + 2)
    section = text[start : end if end >= 0 else len(text)]
    blocks = re.findall(r"^```sh\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)
    assert len(blocks) == 1, f"'{HEADING}' should hold exactly one ```sh block, found {len(blocks)}"
    commands: list[Command] = []
    for line in blocks[0].splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        background = words[-1] == "&"
        argv = tuple(words[:-1] if background else words)
        assert argv, f"an empty command in the README: {line!r}"
        assert not SHELL_SYNTAX.intersection(argv), f"more than a plain command in the README: {line!r}"
        commands.append(Command(line=line.strip(), argv=argv, background=background))
    return commands


def local_argv(argv: tuple[str, ...]) -> list[str]:
    """The README's ``.venv/bin/x`` is this test's interpreter's ``bin/x``."""
    program = argv[0]
    assert program.startswith(VENV_PREFIX), f"README commands run from the virtualenv: {program}"
    return [str(VENV_BIN / program.removeprefix(VENV_PREFIX)), *argv[1:]]


def named_files(command: Command) -> list[str]:
    """Relative paths a command names (the programs aside), to be found in the repository."""
    return [
        word
        for word in command.argv[1:]
        if "/" in word and not word.startswith(("-", "http://", "https://")) and "://" not in word
    ]


def request_ids_of(path: Path) -> list[str]:
    assert path.suffix == ".jsonl", f"{path}: the README submits a JSON Lines file"
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [str(json.loads(line)["request_id"]) for line in lines]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Machine:
    """The scratch folder the user works in, its ports and the processes started in it."""

    folder: Path
    smtp_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    content_port: int = field(default_factory=free_port)
    inbound_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    started: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """The documented overrides, moving the shipped configuration's ports to free ones."""
        return cli_env() | {
            "NOTIFIER_SMTP__PORT": str(self.smtp_port),
            "NOTIFIER_PLATFORMS__VIDEOHOST__API__URL": f"http://127.0.0.1:{self.api_port}/v1/notices",
            "NOTIFIER_INBOUND_SMTP__LISTEN": f"127.0.0.1:{self.inbound_port}",
            "NOTIFIER_HTTP__LISTEN": f"127.0.0.1:{self.http_port}",
        }

    def argv(self, command: Command) -> list[str]:
        argv = local_argv(command.argv)
        if command.is_sandbox:
            argv += [
                "--smtp-port",
                str(self.smtp_port),
                "--api-port",
                str(self.api_port),
                "--content-port",
                str(self.content_port),
                "--inbound",
                f"127.0.0.1:{self.inbound_port}",
            ]
        return argv

    def settings(self) -> Settings:
        return load_settings(self.folder / "config" / "notifier.toml", self.env())

    def start(self, command: Command) -> subprocess.Popen[bytes]:
        log = self.folder / f"background-{len(self.started) + 1}.log"
        with log.open("wb") as handle:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(
                self.argv(command), stdout=handle, stderr=subprocess.STDOUT, env=self.env(), cwd=self.folder
            )
        self.started.append((process, log))
        return process

    def output(self, process: subprocess.Popen[bytes]) -> str:
        log = next(path for p, path in self.started if p is process)
        return log.read_text(encoding="utf-8", errors="replace")

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            env=self.env(),
            cwd=self.folder,
            check=False,
        )

    def kill_leftovers(self) -> None:
        for process, _ in self.started:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    shutil.copytree(REPO / "config", tmp_path / "config")
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    scratch = Machine(tmp_path)
    try:
        yield scratch
    finally:
        scratch.kill_leftovers()


async def wait_until_ready(machine: Machine, command: Command, process: subprocess.Popen[bytes]) -> None:
    """A background command is ready: the sandbox has printed where it listens; the daemon's
    /readyz answers 200 (store and queue reachable)."""

    def alive() -> None:
        assert process.poll() is None, f"{command.line!r} exited:\n{machine.output(process)[-3000:]}"

    if command.is_sandbox:

        async def listening() -> bool:
            alive()
            return "sandbox: SMTP sink on" in machine.output(process)

        await wait_for(listening, within=READY_WITHIN, what=f"{command.line!r} to listen")
        return
    assert command.is_daemon, f"the test does not know when {command.line!r} is ready"
    url = f"http://127.0.0.1:{machine.http_port}/readyz"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

        async def ready() -> bool:
            alive()
            try:
                async with session.get(url) as response:
                    return response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                return False

        await wait_for(ready, within=READY_WITHIN, what=f"{url} to answer 200")


async def wait_until_settled(machine: Machine, request_ids: list[str]) -> dict[str, Any]:
    """Every submitted request is stored, and every urgent one is as far as the sandbox takes it
    without help: delivered (email, API) or rendered and awaiting staff (portal). Normal ones wait
    for their batch (``batch.max_wait``, 10 minutes), so they are only required to be stored."""
    settings = machine.settings()
    notifier = str(VENV_BIN / "notifier")
    found: dict[str, Any] = {}

    async def settled() -> bool:
        result = await asyncio.to_thread(machine.run, [notifier, "status", "--json", *request_ids])
        if result.returncode != 0:
            return False  # 1 while some id is still unknown
        document = json.loads(result.stdout)
        found.clear()
        found.update({request["request_id"]: request for request in document["requests"]})
        for request in found.values():
            if request["priority"] != "urgent":
                continue
            if settings.platforms[request["platform"]].channel == "manual":
                if request["notice_id"] is None:
                    return False
            elif request["delivered_at"] is None:
                return False
        return True

    await wait_for(settled, within=SETTLED_WITHIN, what=f"{', '.join(request_ids)} stored and sent")
    return found


def check_names(commands: list[Command]) -> None:
    """Everything the block names exists: programs, modules, files; and it does the four things."""
    for command in commands:
        program = Path(local_argv(command.argv)[0])
        assert program.is_file(), f"{command.line!r}: {program} does not exist"
        module = _module(command.argv)
        if module is not None:
            assert importlib.util.find_spec(module) is not None, f"{command.line!r}: no module {module}"
        for name in named_files(command):
            assert (REPO / name).exists(), f"{command.line!r}: {name} does not exist in the repository"
    assert any(c.is_sandbox and c.background for c in commands), "the block starts the sandbox platforms"
    assert any(c.is_daemon and c.background for c in commands), "the block starts the daemon"
    assert any(c.is_submit for c in commands), "the block submits a request file"
    assert any(c.is_status for c in commands), "the block shows the status"


def check_status(command: Command, stdout: str, *, request_ids: list[str], platforms: list[str]) -> None:
    """What ``notifier status`` printed: the overview names every platform; a JSON lookup lists
    every request of the file; a lookup in lines names the ids asked for."""
    wanted = _positional(command.argv)
    if not wanted:
        for word in ("Requests", "Notices", *platforms):
            assert word in stdout, f"{word!r} missing from {command.line!r}:\n{stdout}"
    elif "--json" in command.argv:
        document = json.loads(stdout)
        assert document["unknown"] == []
        listed = [request["request_id"] for request in document["requests"]]
        assert sorted(listed) == sorted(request_ids), f"{command.line!r} should list every request"
    else:
        for request_id in wanted:
            assert request_id in stdout, stdout


async def check_sandbox_received(
    machine: Machine, sandbox: subprocess.Popen[bytes], stored: dict[str, Any], settings: Settings
) -> None:
    """Urgent notices reached the sandbox (a printed ``smtp``/``api`` line) or the portal outbox;
    normal requests still wait for their batch."""
    for request in stored.values():
        channel = settings.platforms[request["platform"]].channel
        notice_id = request["notice_id"]
        if request["priority"] != "urgent":
            assert request["state"] == "pending", request
            continue
        if channel == "manual":
            assert request["state"] == "batched", request
            readme = machine.folder / "var" / "outbox" / notice_id / "README.txt"
            assert readme.is_file(), f"{readme}: the portal notice is not in the outbox"
            continue
        prefix = "smtp " if channel == "email" else "api "

        async def printed(prefix: str = prefix, notice_id: str = notice_id) -> bool:
            lines = machine.output(sandbox).splitlines()
            return any(line.startswith(prefix) and notice_id in line for line in lines)

        await wait_for(printed, within=READY_WITHIN, what=f"the sandbox to print {prefix}{notice_id}")


async def stop(machine: Machine, background: list[tuple[Command, subprocess.Popen[bytes]]]) -> None:
    """SIGTERM, last started first: each drains and exits 0."""
    for command, process in reversed(background):
        assert process.poll() is None, f"{command.line!r} exited early:\n{machine.output(process)[-3000:]}"
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(process.wait, 60)
        tail = machine.output(process)[-3000:]
        assert process.returncode == 0, f"{command.line!r} exited {process.returncode}:\n{tail}"


async def test_the_readme_commands_submit_the_example_requests_and_status_shows_them(
    machine: Machine,
) -> None:
    commands = readme_commands(README.read_text(encoding="utf-8"))
    check_names(commands)
    submitted = [name for c in commands if c.is_submit for name in _positional(c.argv)]
    request_ids = [rid for name in submitted for rid in request_ids_of(REPO / name)]
    assert 3 <= len(request_ids) == len(set(request_ids)), request_ids
    settings = machine.settings()

    background: list[tuple[Command, subprocess.Popen[bytes]]] = []
    stored: dict[str, Any] = {}
    for command in commands:
        if command.background:
            process = machine.start(command)
            background.append((command, process))
            await wait_until_ready(machine, command, process)
            continue
        result = await asyncio.to_thread(machine.run, machine.argv(command))
        assert result.returncode == 0, f"{command.line!r} exited {result.returncode}:\n{result.stderr}"
        if command.is_submit:
            assert f"published {len(request_ids)} request(s)" in result.stdout, result.stdout
            assert "invalid" not in result.stderr, result.stderr
            stored = await wait_until_settled(machine, request_ids)
        elif command.is_status:
            assert stored, f"{command.line!r} comes before the requests are submitted"
            check_status(command, result.stdout, request_ids=request_ids, platforms=list(settings.platforms))

    (sandbox,) = [process for command, process in background if command.is_sandbox]
    await check_sandbox_received(machine, sandbox, stored, settings)
    await stop(machine, background)
    daemon_log = next(machine.output(p) for c, p in background if c.is_daemon)
    records = [json.loads(line) for line in daemon_log.splitlines() if line.startswith("{")]
    accepted = {r.get("request_id") for r in records if r.get("event") == "request.accepted"}
    assert accepted == set(request_ids), "the daemon logged request.accepted for each request"
