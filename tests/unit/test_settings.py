"""Configuration: TOML, NOTIFIER_ overrides at every level, *_env secrets, paths, errors naming the key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from notifier.channels.smtp import starttls_required
from notifier.errors import ConfigError
from notifier.settings import load_settings, mask_url

REPO = Path(__file__).resolve().parents[2]
MINIMAL = """
[authority]
name = "Authority"
email = "takedown@authority.example"

[categories]
deepfake_sexual_abuse = "Deepfake sexual abuse material"

[platforms.telegram]
name = "Telegram"
channel = "email"
[platforms.telegram.email]
to = ["abuse@telegram.example"]
"""


def write(tmp_path: Path, text: str = MINIMAL) -> Path:
    folder = tmp_path / "etc"
    folder.mkdir(exist_ok=True)
    path = folder / "notifier.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ or {})
    return str(info.value)


def test_the_shipped_configuration_is_valid() -> None:
    settings = load_settings(REPO / "config" / "notifier.toml", {})
    assert set(settings.platforms) == {"telegram", "videohost", "clipshare", "streamly"}
    assert settings.sla.ack_within == timedelta(hours=36)
    assert settings.templates.dir == REPO / "notifier" / "templates"  # unset: the packaged ones


def test_portal_notices_must_be_filed_within_two_hours_unless_a_platform_says_otherwise(
    tmp_path: Path,
) -> None:
    settings = load_settings(write(tmp_path), {"NOTIFIER_PLATFORMS__TELEGRAM__SLA__FILE_WITHIN": "30m"})
    assert settings.sla.file_within == timedelta(hours=2)
    assert settings.platforms["telegram"].sla.file_within == timedelta(minutes=30)


def test_defaults_and_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '\n[store]\nurl = "sqlite:///data/n.db"\n')
    settings = load_settings(path, {})
    folder = path.parent.resolve()
    assert settings.store.resolved_url == f"sqlite:///{folder / 'data' / 'n.db'}"
    assert settings.queue.resolved_url == f"sqlite:///{folder / 'var' / 'notifier.db'}"
    assert settings.manual.outbox == folder / "var" / "outbox"
    assert settings.templates.dir == REPO / "notifier" / "templates"
    assert settings.platforms["telegram"].batch.max_items == 50
    assert settings.runtime.grace == timedelta(seconds=20)


def test_environment_overrides_reach_every_level(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path),
        {
            "NOTIFIER_PLATFORMS__TELEGRAM__BATCH__MAX_ITEMS": "20",
            "NOTIFIER_PLATFORMS__TELEGRAM__BATCH__MAX_WAIT": "90s",
            "NOTIFIER_SLA__ACK_WITHIN": "7d",
            "NOTIFIER_AUTHORITY__OPERATIONS_EMAIL": "a@x.example, b@x.example",
            "NOTIFIER_PLATFORMS__TELEGRAM__ESCALATION__EMAIL": '["legal@t.example"]',
            "NOTIFIER_CONFIG": "ignored: not a key override",
        },
    )
    telegram = settings.platforms["telegram"]
    assert telegram.batch.max_items == 20
    assert telegram.batch.max_wait == timedelta(seconds=90)
    assert settings.sla.ack_within == timedelta(days=7)
    assert settings.authority.operations_email == ["a@x.example", "b@x.example"]
    assert telegram.escalation.email == ["legal@t.example"]


def test_secrets_come_from_the_variables_the_env_keys_name(tmp_path: Path) -> None:
    text = MINIMAL.replace('channel = "email"', 'channel = "api"\nfallback = "email"') + (
        '[platforms.telegram.api]\nurl = "https://api.example/v1"\ntoken_env = "TG_TOKEN"\n'
        'signing_secret_env = "TG_SECRET"\n[store]\nurl_env = "STORE_URL"\n'
    )
    environ = {
        "TG_TOKEN": "tok-123",
        "TG_SECRET": "whsec_c2VjcmV0c2VjcmV0c2VjcmV0",
        "STORE_URL": "postgresql://notifier:pw@db.example/notifier",
    }
    settings = load_settings(write(tmp_path, text), environ)
    api = settings.platforms["telegram"].api
    assert api is not None and api.token is not None and api.signing_secret is not None
    assert api.token.get_secret_value() == "tok-123"
    assert "tok-123" not in repr(settings)
    assert settings.store.resolved_url == environ["STORE_URL"]
    assert mask_url(settings.store.resolved_url) == "postgresql://notifier:***@db.example/notifier"

    message = error_of(write(tmp_path, text), {k: v for k, v in environ.items() if k != "TG_TOKEN"})
    assert "TG_TOKEN" in message and "platforms.telegram.api" in message


def test_without_an_alerts_host_alerts_use_the_smtp_relay(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path), {})
    assert settings.alerts.host == ""
    assert settings.alerts.from_ is None
    assert settings.alerts.password is None


def test_an_alerts_relay_is_configured_like_smtp_with_its_own_secret(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        'email = "takedown@authority.example"',
        'email = "takedown@authority.example"\noperations_email = ["ops@authority.example"]',
    ) + (
        '\n[alerts]\nhost = "alerts.authority.example"\nport = 587\nstarttls = "required"\n'
        'username = "notifier"\npassword_env = "ALERTS_PW"\nfrom = "notifier-alerts@authority.example"\n'
        'timeout = "10s"\n'
    )
    settings = load_settings(write(tmp_path, text), {"ALERTS_PW": "alerts-secret"})
    alerts = settings.alerts
    assert (alerts.host, alerts.port, alerts.starttls) == ("alerts.authority.example", 587, "required")
    assert alerts.from_ == "notifier-alerts@authority.example"
    assert alerts.timeout == timedelta(seconds=10)
    assert alerts.password is not None and alerts.password.get_secret_value() == "alerts-secret"
    assert "alerts-secret" not in repr(settings)
    assert settings.smtp.host == "localhost"  # the notice relay is untouched


def test_an_alerts_relay_off_loopback_must_use_starttls_as_smtp_does(tmp_path: Path) -> None:
    environ = {
        "NOTIFIER_AUTHORITY__OPERATIONS_EMAIL": "ops@authority.example",
        "NOTIFIER_ALERTS__HOST": "alerts.authority.example",
    }
    assert starttls_required(load_settings(write(tmp_path), environ).alerts)
    environ["NOTIFIER_ALERTS__HOST"] = "127.0.0.1"
    assert not starttls_required(load_settings(write(tmp_path), environ).alerts)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {"NOTIFIER_PLATFORMS__TELEGRAM__BATCH__MAX_ITEMS": "many"},
            "platforms.telegram.batch.max_items: Input should be a valid integer, unable to parse string "
            "as an integer (from NOTIFIER_PLATFORMS__TELEGRAM__BATCH__MAX_ITEMS)",
        ),
        ({"NOTIFIER_SMTP__HOTS": "mail"}, "smtp.hots: unknown key (from NOTIFIER_SMTP__HOTS)"),
        ({"NOTIFIER_SLA__ACK_WITHIN": "5x"}, "sla.ack_within: '5x' is not a duration"),
        ({"NOTIFIER_SLA__FILE_WITHIN": "0"}, "sla.file_within: must be more than zero"),
        (
            {"NOTIFIER_PLATFORMS__TELEGRAM__SLA__FILE_WITHIN": "soon"},
            "platforms.telegram.sla.file_within: 'soon' is not a duration",
        ),
        (
            {"NOTIFIER_HTTP__LISTEN": "0.0.0.0:8080"},
            "http.intake_token_env is required when http.listen (0.0.0.0:8080) is not a loopback address",
        ),
        (
            {"NOTIFIER_AUTHORITY__TIMEZONE": "Mars/Olympus"},
            "authority.timezone: 'Mars/Olympus' is not a known",
        ),
        ({"NOTIFIER_PLATFORMS__TELEGRAM__CHANNEL": "fax"}, "platforms.telegram.channel: Input should be"),
        ({"NOTIFIER_SMTP__ENVELOPE_FROM": "bounces@a.example"}, "must contain {notice_id}"),
        (
            {"NOTIFIER_IMAP__HOST": "imap.example", "NOTIFIER_IMAP__TLS": "false", "IMAP_PW": "pw"},
            "imap.tls is false but imap.host (imap.example) is not a loopback address",
        ),
        (
            {"NOTIFIER_ALERTS__USERNAME": "ops", "NOTIFIER_ALERTS__PORT": "587"},
            "alerts.port, alerts.username without alerts.host: alerts would still use the [smtp] relay",
        ),
        (
            {"NOTIFIER_ALERTS__HOST": "alerts.example"},
            "alerts.host is set but authority.operations_email is empty: no alert would use it",
        ),
        (
            {
                "NOTIFIER_AUTHORITY__OPERATIONS_EMAIL": "ops@authority.example",
                "NOTIFIER_ALERTS__HOST": "alerts.example",
                "NOTIFIER_ALERTS__USERNAME": "ops",
                "NOTIFIER_ALERTS__PASSWORD_ENV": "ALERTS_PW",
            },
            "environment variable ALERTS_PW (named by alerts.password_env) is not set",
        ),
        (
            {"NOTIFIER_ALERTS__HOST": "alerts.example", "NOTIFIER_ALERTS__STARTTLS": "sometimes"},
            "alerts.starttls: Input should be 'auto', 'required' or 'off' (from NOTIFIER_ALERTS__STARTTLS)",
        ),
        ({"NOTIFIER_ALERTS__FROM": "nobody"}, "alerts.from: 'nobody' is not an email address"),
    ],
)
def test_every_error_is_one_line_naming_the_file_and_key(
    tmp_path: Path, environ: dict[str, str], expected: str
) -> None:
    path = write(tmp_path)
    message = error_of(path, environ)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[authority\nname = 1", "not valid TOML"),
        (
            MINIMAL.replace("[platforms.telegram]", "[platforms.Tele-Gram]").replace(
                "platforms.telegram.email", "platforms.Tele-Gram.email"
            ),
            "platform id 'Tele-Gram' must match",
        ),
        (MINIMAL.replace('channel = "email"', 'channel = "api"'), "[api] section with 'url' is missing"),
        (
            MINIMAL.replace('email = "takedown@authority.example"', 'email = "nobody"'),
            "'nobody' is not an email",
        ),
        (MINIMAL + "\n[platforms.telegram.batch]\nmax_items = 0\n", "platforms.telegram.batch.max_items"),
        (
            MINIMAL.replace("[categories]\ndeepfake_sexual_abuse", "[categories]\nBad-Id"),
            "category id 'Bad-Id'",
        ),
    ],
)
def test_bad_files_name_what_is_wrong(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(write(tmp_path, text))


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    assert error_of(tmp_path / "absent.toml") == f"{tmp_path / 'absent.toml'}: no such configuration file"
