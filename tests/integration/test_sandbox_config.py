"""``python -m notifier.sandbox -c FILE`` serves the platforms where FILE says notifier reaches them:
the SMTP sink on ``smtp.port``, the platform API on the port of the API platforms' URLs."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _first_line(config: Path) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "notifier.sandbox",
        "-c",
        str(config),
        "--content-port",
        str(free_port()),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        return line.decode()
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        await process.communicate()


async def test_the_sandbox_listens_on_the_ports_its_config_names(tmp_path: Path) -> None:
    smtp_port, api_port = free_port(), free_port()
    text = (REPO / "config" / "notifier.toml").read_text(encoding="utf-8")
    text = re.sub(r"(?m)^port = 2526$", f"port = {smtp_port}", text)
    text = text.replace("127.0.0.1:8091/v1/notices", f"127.0.0.1:{api_port}/v1/notices")
    config = tmp_path / "notifier.toml"
    config.write_text(text, encoding="utf-8")

    line = await _first_line(config)
    assert f"SMTP sink on 127.0.0.1:{smtp_port}," in line, line
    assert f"platform API on http://127.0.0.1:{api_port}/v1/notices" in line, line


async def test_api_platforms_on_two_ports_are_refused_naming_the_key(tmp_path: Path) -> None:
    text = (REPO / "config" / "notifier.toml").read_text(encoding="utf-8")
    text = text.replace('channel = "manual"', 'channel = "api"', 1)
    text += '\n[platforms.clipshare.api]\nurl = "http://127.0.0.1:1/v1/notices"\n'
    config = tmp_path / "notifier.toml"
    config.write_text(text, encoding="utf-8")
    result = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "notifier.sandbox",
        "-c",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(result.communicate(), timeout=30)
    assert result.returncode == 2
    assert "platforms.*.api.url" in err.decode(), err.decode()
