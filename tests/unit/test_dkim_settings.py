"""``[dkim]``: the key is read from the environment once, checked at load time, never printed; and
``check-config`` says whether mail is signed and prints the DNS record to publish."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from notifier.channels.dkim import dns_record
from notifier.errors import ConfigError
from notifier.settings import load_settings

CONFIG = """
[authority]
name = "Authority"
email = "takedown@kcsc.or.kr"
[categories]
deepfake_sexual_abuse = "Deepfake sexual abuse material"
[smtp]
host = "127.0.0.1"
from = "takedown@kcsc.or.kr"
envelope_from = "bounces+{notice_id}@kcsc.or.kr"
[platforms.telegram]
name = "Telegram"
channel = "email"
[platforms.telegram.email]
to = ["abuse@telegram.org"]
"""
DKIM = '[dkim]\ndomain = "kcsc.or.kr"\nselector = "notices2026"\nprivate_key_env = "DKIM_KEY"\n'


def pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "notifier.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_without_a_dkim_section_mail_is_not_signed(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, CONFIG), {})
    assert settings.dkim.key is None
    assert not settings.dkim.enabled


def test_the_key_is_loaded_from_the_variable_private_key_env_names(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    settings = load_settings(write(tmp_path, CONFIG + DKIM), {"DKIM_KEY": pem(rsa_key)})
    assert isinstance(settings.dkim.key, rsa.RSAPrivateKey)
    assert settings.dkim.key.private_numbers() == rsa_key.private_numbers()
    assert settings.dkim.headers[:2] == ["From", "To"]
    assert "X-Notifier-Notice-Id" in settings.dkim.headers


def test_an_ed25519_key_is_taken_too(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path, CONFIG + DKIM), {"DKIM_KEY": pem(ed25519.Ed25519PrivateKey.generate())}
    )
    assert isinstance(settings.dkim.key, ed25519.Ed25519PrivateKey)


def test_a_missing_variable_is_an_error_naming_it_and_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, CONFIG + DKIM), {})
    assert "environment variable DKIM_KEY (named by dkim.private_key_env) is not set" in str(caught.value)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("not a key at all", "does not hold a PEM private key"),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "does not hold a PEM private key"),
    ],
)
def test_a_value_that_is_not_a_private_key_is_refused_without_echoing_it(
    tmp_path: Path, value: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, CONFIG + DKIM), {"DKIM_KEY": value})
    assert f"environment variable DKIM_KEY (named by dkim.private_key_env) {reason}" in str(caught.value)
    assert value.strip() not in str(caught.value)


def test_an_encrypted_key_is_refused_saying_so(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    encrypted = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    ).decode()
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, CONFIG + DKIM), {"DKIM_KEY": encrypted})
    assert "holds an encrypted private key; give it unencrypted" in str(caught.value)


def test_a_key_with_escaped_line_ends_from_an_environment_file_is_taken(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    escaped = pem(rsa_key).replace("\n", "\\n")
    assert "\n" not in escaped  # one line, as env files hold it
    settings = load_settings(write(tmp_path, CONFIG + DKIM), {"DKIM_KEY": escaped})
    assert isinstance(settings.dkim.key, rsa.RSAPrivateKey)


def test_a_key_of_another_kind_is_refused_naming_the_kinds_dkim_signs_with(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            write(tmp_path, CONFIG + DKIM), {"DKIM_KEY": pem(ec.generate_private_key(ec.SECP256R1()))}
        )
    assert "DKIM signs with RSA or Ed25519" in str(caught.value)
    assert "BEGIN" not in str(caught.value)


def test_a_dkim_section_without_its_domain_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            write(tmp_path, CONFIG + DKIM.replace('domain = "kcsc.or.kr"\n', "")), {"DKIM_KEY": "x"}
        )
    assert "dkim.domain missing" in str(caught.value)


def test_signed_headers_must_include_from_and_never_relay_headers(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    env = {"DKIM_KEY": pem(rsa_key)}
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, CONFIG + DKIM + 'headers = ["To", "Subject"]\n'), env)
    assert "must include From" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, CONFIG + DKIM + 'headers = ["From", "Received"]\n'), env)
    assert "Received is changed on the way by relays" in str(caught.value)


def test_the_dns_record_carries_the_public_key() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert dns_record(key) == f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"


def test_check_config_says_mail_is_signed_and_prints_the_record_to_publish(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    path = write(tmp_path, f"{CONFIG}{DKIM}")  # without [templates]: the packaged ones
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")} | {"DKIM_KEY": pem(rsa_key)}

    def check(*flags: str, environ: dict[str, str] = env) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "notifier", "check-config", "-c", str(path), *flags]
        return subprocess.run(command, check=False, capture_output=True, text=True, env=environ, timeout=60)

    summary, record = check(), check("--dkim-record")
    assert summary.returncode == 0, summary.stderr
    assert "dkim: notices2026._domainkey.kcsc.or.kr  rsa-2048  key from $DKIM_KEY" in summary.stdout
    assert record.returncode == 0, record.stderr
    assert record.stdout.strip() == dns_record(rsa_key)
    assert "notices2026._domainkey.kcsc.or.kr" in record.stderr
    for result in (summary, record):
        assert "PRIVATE KEY" not in result.stdout + result.stderr

    missing = check(environ={k: v for k, v in env.items() if k != "DKIM_KEY"})
    assert missing.returncode == 2
    assert "DKIM_KEY (named by dkim.private_key_env) is not set" in missing.stderr
