"""What check-config warns about in a configuration that loads: the default relay, placeholder
addresses, callbacks nobody can sign; and ``--strict`` refusing them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from notifier.settings import load_settings
from notifier.settings.warnings import config_warnings

CLEAN = """
[authority]
name = "Authority"
email = "takedown@kcsc.or.kr"
operations_email = ["ops@kcsc.or.kr"]
[categories]
deepfake_sexual_abuse = "Deepfake sexual abuse material"
[smtp]
host = "127.0.0.1"
port = 2525
from = "takedown@kcsc.or.kr"
envelope_from = "bounces+{notice_id}@kcsc.or.kr"
[platforms.telegram]
name = "Telegram"
channel = "email"
[platforms.telegram.email]
to = ["abuse@telegram.org"]
[platforms.videohost]
name = "VideoHost"
channel = "api"
[platforms.videohost.api]
url = "https://api.videohost.com/v1/notices"
signing_secret_env = "VIDEOHOST_SIGNING_SECRET"
"""
SECRET = {"VIDEOHOST_SIGNING_SECRET": "whsec_c2VjcmV0c2VjcmV0c2VjcmV0"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "notifier.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_configuration_with_its_relay_real_addresses_and_secrets_has_no_warning(tmp_path: Path) -> None:
    assert config_warnings(load_settings(write(tmp_path, CLEAN), SECRET)) == []


def test_no_smtp_section_placeholders_and_an_unsigned_api_platform_are_each_named(tmp_path: Path) -> None:
    text = (
        CLEAN.replace("abuse@telegram.org", "abuse@telegram.example")
        .replace('[smtp]\nhost = "127.0.0.1"\nport = 2525\nfrom = "takedown@kcsc.or.kr"\n', "")
        .replace('envelope_from = "bounces+{notice_id}@kcsc.or.kr"\n', "")
        .replace('signing_secret_env = "VIDEOHOST_SIGNING_SECRET"\n', "")
    )
    warnings = config_warnings(load_settings(write(tmp_path, text), {}))

    assert warnings[0] == "smtp: no [smtp] section: notices and alerts would go to the relay at localhost:25"
    assert "platforms.telegram.email = abuse@telegram.example" in warnings[1]
    assert "smtp.from = takedown@authority.example" in warnings[1]  # the default sender, a placeholder
    assert warnings[2].startswith("platforms.videohost.api.signing_secret_env: no secret is set")
    assert "401" in warnings[2]
    assert len(warnings) == 3


def test_check_config_prints_warnings_and_strict_refuses_them(tmp_path: Path) -> None:
    text = CLEAN.replace("abuse@telegram.org", "abuse@telegram.example")
    path = write(tmp_path, text)  # in a folder of its own, without [templates]: the packaged ones
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")} | SECRET

    def check(*flags: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "notifier", "check-config", "-c", str(path), *flags]
        return subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=60)

    lenient, strict = check(), check("--strict")
    assert lenient.returncode == 0
    assert "configuration is valid, with 1 warning(s)" in lenient.stdout
    assert "notifier: warning: placeholder addresses" in lenient.stderr
    assert strict.returncode == 2
    assert strict.stderr.splitlines()[-1] == "notifier: 1 warning(s), refused by --strict"
