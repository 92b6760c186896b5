"""Logging: JSON lines for the daemon, console lines for the CLI, and nothing secret in either (SPEC §10)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from notifier.errors import ConfigError
from notifier.logging import REDACTED, configure_logging, get_logger, mask_secrets, redact

LIBRARY_LOGGERS = ("aiormq", "aio_pika", "aiohttp.access", "aiosqlite", "aioimaplib", "mail")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Give each test a clean slate and put back the process-wide logging configuration after it."""
    config = structlog.get_config()
    processors = config["processors"]
    saved_processors = list(processors)
    root = logging.getLogger()
    saved_handlers = list(root.handlers)
    saved_level = root.level
    saved_library_levels = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()
    processors[:] = saved_processors
    structlog.configure(**config)
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
    root.setLevel(saved_level)
    for name, level in saved_library_levels.items():
        logging.getLogger(name).setLevel(level)


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def only_line(stream: io.StringIO) -> dict[str, Any]:
    lines = json_lines(stream)
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def out() -> io.StringIO:
    stream = io.StringIO()
    configure_logging(json=True, stream=stream)
    return stream


class TtyStringIO(io.StringIO):
    def isatty(self) -> bool:
        return True


# -- JSON lines -------------------------------------------------------------------------------


def test_json_line_carries_event_level_logger_and_rfc3339_utc_timestamp(out: io.StringIO) -> None:
    get_logger("notifier.services.dispatcher").info("notice.delivered", smtp_code=250)

    line = only_line(out)
    assert line["event"] == "notice.delivered"
    assert line["level"] == "info"
    assert line["logger"] == "notifier.services.dispatcher"
    assert line["smtp_code"] == 250
    assert line["timestamp"].endswith("Z")
    assert "+00:00" not in line["timestamp"]


def test_ids_bound_with_contextvars_appear_on_every_line(out: io.StringIO) -> None:
    structlog.contextvars.bind_contextvars(
        request_id="kcsc-2024-000148", notice_id="TD-telegram-20240903-000012", platform="telegram"
    )
    log = get_logger("notifier.test")
    log.info("notice.created")
    log.warning("notice.attempt_failed", outcome="transient_error")

    for line in json_lines(out):
        assert line["request_id"] == "kcsc-2024-000148"
        assert line["notice_id"] == "TD-telegram-20240903-000012"
        assert line["platform"] == "telegram"
    assert [line["event"] for line in json_lines(out)] == ["notice.created", "notice.attempt_failed"]


def test_a_value_with_newlines_stays_on_one_json_line(out: io.StringIO) -> None:
    get_logger("notifier.test").info("mail.classified", subject="Re: notice\r\nBcc: evil@example")

    assert len(out.getvalue().splitlines()) == 1
    assert only_line(out)["subject"] == "Re: notice\r\nBcc: evil@example"


def test_values_json_cannot_encode_are_written_as_text(out: io.StringIO) -> None:
    class Ticket:
        def __str__(self) -> str:
            return "TG-99812"

    get_logger("notifier.test").info("receipt.received", ticket=Ticket(), ids={"b", "a"} - {"b"})

    line = only_line(out)
    assert line["ticket"] == "TG-99812"
    assert line["ids"] == ["a"]


# -- redaction by key -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "token",
        "intake_token",
        "password",
        "smtp_password",
        "passwd",
        "secret",
        "callback_secret",
        "authorization",
        "Authorization",
        "api_key",
        "X-Api-Key",
        "apikey",
        "cookie",
        "Set-Cookie",
        "credential",
        "credentials",
        "explanation",
        "note",
        "notes",
        "body",
        "request_body",
    ],
)
def test_a_sensitive_field_is_redacted_whatever_its_value(out: io.StringIO, key: str) -> None:
    get_logger("notifier.test").info("ack.received", **{key: "victim-name-or-s3cr3t"})

    line = only_line(out)
    assert line[key] == REDACTED
    assert "victim-name-or-s3cr3t" not in out.getvalue()


def test_sensitive_fields_are_redacted_inside_nested_dicts_and_lists(out: io.StringIO) -> None:
    get_logger("notifier.test").info(
        "api.request",
        request={
            "headers": {"Authorization": "Bearer abc", "Idempotency-Key": "TD-x"},
            "items": [{"request_id": "r1", "explanation": "names the victim"}, ("note", {"note": "x1y2"})],
        },
    )

    line = only_line(out)
    assert line["request"]["headers"] == {"Authorization": REDACTED, "Idempotency-Key": "TD-x"}
    assert line["request"]["items"][0] == {"request_id": "r1", "explanation": REDACTED}
    assert line["request"]["items"][1] == ["note", {"note": REDACTED}]
    assert "names the victim" not in out.getvalue()
    assert "x1y2" not in out.getvalue()


def test_flags_and_empty_values_under_sensitive_names_are_kept(out: io.StringIO) -> None:
    get_logger("notifier.test").info("config.loaded", has_token=True, smtp_password=None, notes=[])

    line = only_line(out)
    assert line["has_token"] is True
    assert line["smtp_password"] is None
    assert line["notes"] == []


def test_ordinary_fields_pass_unchanged(out: io.StringIO) -> None:
    get_logger("notifier.test").info(
        "notice.delivered", notice_id="TD-telegram-20240903-000012", attempts=2, duration_ms=12.5
    )

    line = only_line(out)
    assert line["notice_id"] == "TD-telegram-20240903-000012"
    assert line["attempts"] == 2
    assert line["duration_ms"] == 12.5


# -- redaction by content ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        ("sent with Bearer eyJhbGciOi.J9x_y-z", "eyJhbGciOi", "sent with Bearer ***"),
        ("header bearer abc123== rejected", "abc123", "bearer ***"),
        ("Basic dXNlcjpwYXNz", "dXNlcjpwYXNz", "Basic ***"),
        ("Authorization: Token abc123 def", "abc123", "Authorization: ***"),
        ("Cookie: session=s3ss10n; other=1", "s3ss10n", "Cookie: ***"),
        ("amqp://guest:hunter2@rabbit:5672/", "hunter2", "amqp://guest:***@rabbit:5672/"),
        ("postgresql+asyncpg://app:p@ss@db/notifier", "p@ss", "postgresql+asyncpg://app:***@db/notifier"),
        ("clone https://ghp_T0k3n@github.example/x", "ghp_T0k3n", "https://***@github.example/x"),
        ("signing with whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "MfKQ9r8GKYqr", "whsec_***"),
        ("host=db user=app password=pw1 dbname=n", "pw1", "password=*** dbname=n"),
        ("GET /reset?access_token=tok9&x=1", "tok9", "access_token=***&x=1"),
        ("{'client_secret': 'two words'}", "two words", "'client_secret': ***"),
    ],
)
def test_secrets_inside_strings_are_masked(out: io.StringIO, text: str, secret: str, kept: str) -> None:
    get_logger("notifier.test").warning("transport.error", detail=text)

    detail = only_line(out)["detail"]
    assert secret not in detail
    assert kept in detail


def test_strings_are_masked_anywhere_including_the_event_and_nested_lists(out: io.StringIO) -> None:
    get_logger("notifier.test").error(
        "cannot reach amqp://u:hunter2@mq/", urls=[["https://a:hunter2@x.example/"]]
    )

    assert "hunter2" not in out.getvalue()
    line = only_line(out)
    assert line["event"] == "cannot reach amqp://u:***@mq/"
    assert line["urls"] == [["https://a:***@x.example/"]]


def test_an_object_whose_text_holds_a_secret_is_masked(out: io.StringIO) -> None:
    class Settings:
        def __str__(self) -> str:
            return "Settings(url='postgresql://app:hunter2@db/n')"

    get_logger("notifier.test").info("config.loaded", settings=Settings())

    assert "hunter2" not in out.getvalue()


def test_config_error_messages_naming_a_key_stay_readable() -> None:
    message = "platforms.videohost.api.token_env: environment variable VIDEOHOST_TOKEN is not set"
    assert mask_secrets(message) == message


def test_urls_without_credentials_are_not_touched() -> None:
    text = "delivered to https://api.videohost.example:8443/v1/notices?ticket=TG-1 and [::1]:25"
    assert mask_secrets(text) == text


def test_redact_processor_bounds_depth_and_stringifies_keys() -> None:
    deep: dict[str, Any] = {"leaf": "amqp://u:pw9@h/"}
    for _ in range(40):
        deep = {"next": deep}
    result = redact(None, "info", {"event": "x", "deep": deep, "map": {1: "one"}})

    assert result["map"] == {"1": "one"}
    assert "pw9" not in json.dumps(result)


# -- exceptions -------------------------------------------------------------------------------


def _fail_connecting() -> None:
    raise ConnectionError("cannot connect to amqp://notifier:hunter2@rabbit.internal:5672/")


def test_an_exception_is_a_dict_traceback_with_its_message_masked(out: io.StringIO) -> None:
    log = get_logger("notifier.intake")
    amqp_password = "hunter2"  # a local variable: frame locals must not be rendered
    try:
        _fail_connecting()
    except ConnectionError:
        log.exception("queue.connect_failed", attempt=amqp_password == "x")

    assert "hunter2" not in out.getvalue()
    line = only_line(out)
    assert line["level"] == "error"
    (exception,) = line["exception"]
    assert exception["exc_type"] == "ConnectionError"
    assert exception["exc_value"] == "cannot connect to amqp://notifier:***@rabbit.internal:5672/"
    assert [frame["name"] for frame in exception["frames"]][-1] == "_fail_connecting"
    assert all("locals" not in frame for frame in exception["frames"])


def test_a_chained_exception_is_masked_at_every_link(out: io.StringIO) -> None:
    try:
        try:
            _fail_connecting()
        except ConnectionError as error:
            raise RuntimeError("intake stopped; last error from postgresql://a:hunter2@db/") from error
    except RuntimeError:
        get_logger("notifier.intake").exception("intake.stopped")

    assert "hunter2" not in out.getvalue()
    assert [e["exc_type"] for e in only_line(out)["exception"]] == ["RuntimeError", "ConnectionError"]


# -- the standard library's logging -----------------------------------------------------------


def test_library_lines_are_json_with_context_and_masked(out: io.StringIO) -> None:
    structlog.contextvars.bind_contextvars(notice_id="TD-videohost-20240903-000001")
    logging.getLogger("aiohttp.client").warning(
        "retrying https://svc:hunter2@api.example/ with %s", "Bearer t0k"
    )

    line = only_line(out)
    assert line["logger"] == "aiohttp.client"
    assert line["level"] == "warning"
    assert line["notice_id"] == "TD-videohost-20240903-000001"
    assert line["event"] == "retrying https://svc:***@api.example/ with Bearer ***"
    assert line["timestamp"].endswith("Z")


def test_library_exceptions_are_dict_tracebacks_and_masked(out: io.StringIO) -> None:
    try:
        _fail_connecting()
    except ConnectionError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")

    assert "hunter2" not in out.getvalue()
    line = only_line(out)
    assert line["logger"] == "asyncio"
    assert line["exception"][0]["exc_value"].startswith("cannot connect to amqp://notifier:***@")


@pytest.mark.parametrize("name", ["aiormq", "aio_pika", "aiohttp.access", "aiormq.connection"])
def test_noisy_libraries_log_warnings_only(out: io.StringIO, name: str) -> None:
    library = logging.getLogger(name)
    library.info("connection established")
    library.warning("connection lost")

    assert [line["event"] for line in json_lines(out)] == ["connection lost"]


@pytest.mark.parametrize("name", ["aiosqlite", "aioimaplib.aioimaplib", "mail.log", "mail.debug"])
def test_protocol_transcripts_stay_out_even_at_debug(name: str) -> None:
    stream = io.StringIO()
    configure_logging(json=True, level="debug", stream=stream)
    logging.getLogger(name).debug("executing INSERT ... ('names the victim',)")
    get_logger("notifier.test").debug("notice.rendered")

    assert [line["event"] for line in json_lines(stream)] == ["notice.rendered"]


# -- levels, reconfiguration, tests ---------------------------------------------------------


def test_the_level_filters_notifier_and_library_lines() -> None:
    stream = io.StringIO()
    configure_logging(json=True, level="WARNING", stream=stream)
    log = get_logger("notifier.test")
    log.info("request.accepted")
    log.warning("sla.breach")
    logging.getLogger("alembic").info("Running upgrade")
    logging.getLogger("alembic").error("migration failed")

    assert [line["event"] for line in json_lines(stream)] == ["sla.breach", "migration failed"]


def test_an_unknown_level_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="'verbose'"):
        configure_logging(json=True, level="verbose", stream=io.StringIO())


def test_configuring_twice_writes_each_line_once_to_the_latest_stream() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(json=True, stream=first)
    configure_logging(json=True, stream=second)
    get_logger("notifier.test").info("request.accepted")
    logging.getLogger("aiosqlite").warning("database is locked")

    assert first.getvalue() == ""
    assert [line["event"] for line in json_lines(second)] == ["request.accepted", "database is locked"]


def test_a_logger_bound_before_configuration_is_redacted_too(capsys: pytest.CaptureFixture[str]) -> None:
    early = structlog.get_logger().bind(component="early")
    stream = io.StringIO()
    configure_logging(json=True, stream=stream)
    early.info("store.connected", url="postgresql://app:hunter2@db/n", password="hunter2")

    captured = capsys.readouterr()
    assert "hunter2" not in captured.out + captured.err + stream.getvalue()
    assert "store.connected" in captured.out + captured.err + stream.getvalue()


def test_default_stream_is_the_current_standard_error(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=True)
    get_logger("notifier.test").info("daemon.started")

    captured = capsys.readouterr()
    assert captured.out == ""
    assert json.loads(captured.err)["event"] == "daemon.started"


def test_capture_logs_still_sees_events_after_configuration(out: io.StringIO) -> None:
    structlog.contextvars.bind_contextvars(platform="telegram")
    log = get_logger("notifier.test")
    with capture_logs() as entries:
        log.info("request.duplicate", request_id="kcsc-1")
    log.info("request.accepted", request_id="kcsc-2")

    assert entries == [{"event": "request.duplicate", "request_id": "kcsc-1", "log_level": "info"}]
    assert [line["event"] for line in json_lines(out)] == ["request.accepted"]


# -- console ----------------------------------------------------------------------------------


def test_console_lines_are_readable_and_plain_when_not_a_terminal() -> None:
    stream = io.StringIO()
    configure_logging(json=False, stream=stream)
    structlog.contextvars.bind_contextvars(request_id="kcsc-2024-000148")
    get_logger("notifier.cli").info("request.accepted", platform="telegram", token="abc123")

    text = stream.getvalue()
    assert "\x1b[" not in text
    assert "request.accepted" in text
    assert "platform=telegram" in text
    assert "request_id=kcsc-2024-000148" in text
    assert f"token={REDACTED}" in text
    assert "abc123" not in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_console_lines_are_coloured_on_a_terminal() -> None:
    stream = TtyStringIO()
    configure_logging(json=False, stream=stream)
    get_logger("notifier.cli").warning("sla.breach")

    assert "\x1b[" in stream.getvalue()


def test_console_tracebacks_are_masked() -> None:
    stream = io.StringIO()
    configure_logging(json=False, stream=stream)
    try:
        _fail_connecting()
    except ConnectionError:
        get_logger("notifier.cli").exception("submit.failed")

    text = stream.getvalue()
    assert "Traceback (most recent call last)" in text
    assert "ConnectionError: cannot connect to amqp://notifier:***@rabbit.internal:5672/" in text
    assert "hunter2" not in text
