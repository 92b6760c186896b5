"""Structured logging: JSON lines for the daemon, readable lines for the CLI, secrets never written.

Every event is a stable name plus fields (``log.info("notice.delivered", notice_id=..., platform=...)``);
ids bound with ``structlog.contextvars.bind_contextvars`` are merged into every line, including the
lines of libraries that log through the standard :mod:`logging` module (aio-pika, aiosqlite, aiohttp,
asyncio), which are routed through the same processors.

The last processor before rendering is :func:`redact`. SPEC §10 forbids logging secrets, tokens,
passwords and authorisation headers, and also explanations and notes, which may name victims; the
redaction therefore works on two levels:

* by key: a field whose name mentions a credential or free text (``token``, ``password``, ``secret``,
  ``authorization``, ``cookie``, ``explanation``, ``note``, ``body``, ...) is replaced by
  ``[redacted]``, at any depth of nested dicts and lists;
* by content: any string anywhere (event names, exception messages, library messages) has
  ``Bearer``/``Basic`` credentials, URL passwords, ``whsec_`` signing secrets and
  ``password=...``-style assignments masked with ``***``.

Masking errs on the side of hiding: a false positive costs a little readability, a false negative
leaks a credential into log storage that many people can read.
"""

from __future__ import annotations

import functools
import io
import logging
import re
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, TextIO, cast

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from notifier.errors import ConfigError

__all__ = ["REDACTED", "configure_logging", "get_logger", "mask_secrets", "redact"]

REDACTED: Final = "[redacted]"
_MASK: Final = "***"

_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

# Libraries whose lower levels are either a line per message/request (aiormq, aio_pika,
# aiohttp.access) or a transcript of the protocol: aiosqlite logs every statement with its
# parameters (request explanations), aioimaplib the IMAP dialogue with its LOGIN password, and
# aiosmtpd ("mail.log", "mail.debug") the SMTP dialogue with notice bodies. None of that may reach
# the log, whatever level the operator asks for, so these loggers never go below WARNING.
_QUIET_LIBRARIES: Final = (
    "aiormq",
    "aio_pika",
    "aiohttp.access",
    "aiosqlite",
    "aioimaplib",
    "mail",
    # Alembic narrates each migration at info level in free text; the daemon logs its own event.
    "alembic",
)

# Substrings of field names whose values are never logged. Names are compared in lower case with
# "-" read as "_", so header names (X-Api-Key, Set-Cookie) are caught too.
_SENSITIVE_KEY: Final = re.compile(
    "token|password|passwd|secret|authorization|api_key|apikey|cookie|credential|explanation|note|body"
)

# Whole header values: "Authorization: Token abc" must lose "abc" too, not only the scheme word.
_HEADER_VALUE: Final = re.compile(
    r"(?i)\b((?:proxy-)?authorization|(?:set-)?cookie)([\"']?\s*[:=]\s*[\"']?)[^\r\n\"']+"
)
_AUTH_SCHEME: Final = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9\-._~+/]+=*")
# scheme://user:password@host -> scheme://user:***@host. The password part is greedy up to the
# last "@" of the authority, so a password that itself contains "@" is masked whole.
_URL_PASSWORD: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^\s/?#@:]*):([^\s/?#]*)@")
# scheme://token@host: a lone userinfo is how access tokens usually ride in URLs.
_URL_USER: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^\s/?#@:]+)@")
_WEBHOOK_SECRET: Final = re.compile(r"whsec_[A-Za-z0-9+/=_\-]+")
# password=..., ?token=..., "secret": "..." in DSNs, query strings and reprs. A bare "key: value"
# is left alone: that is how notifier's own error messages name a config key at fault.
_ASSIGNMENT: Final = re.compile(
    r"(?i)\b([\w.\-]*(?:token|password|passwd|secret|api[_\-]?key|credential)[\w.\-]*)"
    r"(\s*=\s*|[\"']\s*:\s*)"
    r"(\"[^\"]*\"|'[^']*'|[^\s\"'&,;]+)"
)
_MAX_DEPTH: Final = 16
# Every pattern above needs one of these substrings; one search for them lets the great majority
# of strings (ids, event names, reasons) skip the six substitutions. Keep it in step with them.
_MIGHT_HOLD_SECRET: Final = re.compile(
    r"(?i)authoriz|cookie|bearer|basic|@|whsec_|token|passw|secret|api[_\-]?key|credential"
)


# Short values come back again and again (platforms, sources, states, queue names): their masked
# form is kept rather than searched for again in every line.
_SHORT: Final = 64


def mask_secrets(text: str) -> str:
    """``text`` with credentials masked: auth headers, URL passwords, webhook secrets, assignments."""
    if len(text) <= _SHORT:
        return _mask_short(text)
    return _mask(text)


@functools.lru_cache(maxsize=4096)
def _mask_short(text: str) -> str:
    return _mask(text)


def _mask(text: str) -> str:
    if _MIGHT_HOLD_SECRET.search(text) is None:
        return text
    text = _HEADER_VALUE.sub(rf"\1\2{_MASK}", text)
    text = _AUTH_SCHEME.sub(rf"\1\2{_MASK}", text)
    text = _URL_PASSWORD.sub(rf"\1\2:{_MASK}@", text)
    text = _URL_USER.sub(rf"\1{_MASK}@", text)
    text = _WEBHOOK_SECRET.sub(f"whsec_{_MASK}", text)
    return _ASSIGNMENT.sub(rf"\1\2{_MASK}", text)


@functools.lru_cache(maxsize=2048)
def _is_sensitive_key(key: str) -> bool:
    return _SENSITIVE_KEY.search(key.lower().replace("-", "_")) is not None


def _says_nothing(value: Any) -> bool:
    """None, booleans and empty values tell whether something is set, never what it is."""
    if value is None or isinstance(value, bool):
        return True
    return isinstance(value, str | list | tuple | dict) and not value


def _redact_field(key: str, value: Any, depth: int) -> Any:
    if _is_sensitive_key(key) and not _says_nothing(value):
        return REDACTED
    return _redact_value(value, depth)


def _redact_value(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return mask_secrets(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth >= _MAX_DEPTH:
        return "[too deep]"
    if isinstance(value, Mapping):
        return {str(k): _redact_field(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(item, depth + 1) for item in value]
    # Anything else would be repr()'d by the renderer after this processor has run, out of reach of
    # the masking; it becomes masked text here instead.
    return mask_secrets(_as_text(value))


def _as_text(value: object) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.isoformat()
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    return str(value)


# Fields the logging itself fills in, never from input: the logger's name, the level and the time
# (the event is not among them: a library's line is free text).
_OWN_FIELDS: Final = frozenset({"logger", "level", "timestamp"})


def redact(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secrets and free text in every field, at any depth."""
    return {
        str(key): value
        if key in _OWN_FIELDS and isinstance(value, str)
        else _redact_field(str(key), value, 0)
        for key, value in event_dict.items()
    }


class _CurrentStderr(io.TextIOBase):
    """Writes to whatever ``sys.stderr`` is when a line is written, not when logging was configured.

    The CLI configures logging once per command; test runners and ``CliRunner`` swap and close
    ``sys.stderr`` around it. Holding on to the object seen at configuration time would make a later
    log call write to a closed stream.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


_STDERR: Final = _CurrentStderr()


class _NamedWriteLogger(structlog.WriteLogger):
    """A structlog output that knows the name it was asked for with :func:`get_logger`."""

    def __init__(self, file: TextIO, name: str | None) -> None:
        super().__init__(file)
        self.name = name


class _NamedWriteLoggerFactory:
    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _NamedWriteLogger:
        name = args[0] if args and isinstance(args[0], str) else None
        return _NamedWriteLogger(self._file, name)


def _add_logger_name(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    name = getattr(logger, "name", None)
    if name:
        event_dict.setdefault("logger", name)
    return event_dict


class _NotifierHandler(logging.StreamHandler[TextIO]):
    """The root handler installed by :func:`configure_logging`; recognised and replaced on reconfigure."""


def _renderer(json: bool, stream: TextIO) -> tuple[Processor, Processor]:
    """The exception formatter and the final renderer of one output mode."""
    if json:
        # dict_tracebacks, without frame locals: a local variable may hold a token or an explanation
        # in a form no key or pattern recognises.
        transformer = structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        return structlog.processors.ExceptionRenderer(transformer), structlog.processors.JSONRenderer()
    # The console renderer would format exc_info itself, after redaction; render the traceback to a
    # string first so that its messages are masked like everything else.
    return structlog.processors.format_exc_info, structlog.dev.ConsoleRenderer(
        colors=stream.isatty(), exception_formatter=structlog.dev.plain_traceback
    )


def configure_logging(
    *, json: bool, level: str = "info", stream: TextIO | None = None, extra: Sequence[Processor] = ()
) -> None:
    """Configure structlog and the standard library's logging; safe to call more than once.

    ``json=True`` writes one JSON object per line (the daemon); ``json=False`` writes readable lines,
    coloured only on a terminal (the CLI). ``stream`` defaults to the current standard error, so that
    standard output stays free for what commands print. ``extra`` processors run after the
    timestamp is added (the demo adds its simulated time and counts events there).
    """
    level_number = _LEVELS.get(level.lower())
    if level_number is None:
        raise ConfigError(f"log level {level!r} is not one of {', '.join(_LEVELS)}")
    out = stream if stream is not None else cast(TextIO, _STDERR)
    format_exceptions, render = _renderer(json, out)
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)

    chain: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        _add_logger_name,
        structlog.processors.add_log_level,
        timestamper,
        *extra,
        structlog.processors.StackInfoRenderer(),
        format_exceptions,
        redact,
        render,
    ]
    # Loggers bound before this call keep a reference to the processor list; updating that list in
    # place (as structlog.testing.capture_logs does) gives them redaction and the new renderer too.
    current = structlog.get_config()["processors"]
    processors = current if isinstance(current, list) else []
    processors[:] = chain
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level_number),
        logger_factory=_NamedWriteLoggerFactory(out),
        context_class=dict,
        # Not cached: capture_logs() in tests and a later reconfiguration must reach every logger.
        cache_logger_on_first_use=False,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.stdlib.add_logger_name,
            timestamper,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            format_exceptions,
            redact,
            render,
        ],
    )
    handler = _NotifierHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _NotifierHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_number)
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(level_number, logging.WARNING))


def get_logger(name: str) -> FilteringBoundLogger:
    """A logger whose lines carry ``logger=name``; use a stable dotted event name for each event."""
    # The name travels as a logger-factory argument rather than as a bound value, so that tests'
    # capture_logs() entries hold only what the call site logged.
    return cast(FilteringBoundLogger, structlog.get_logger(name))
