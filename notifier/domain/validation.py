"""Validation of takedown requests (SPEC §5.1): every rejection names the field at fault.

This is the edge where untrusted bytes become a :class:`TakedownRequest`; pydantic does the
structural work in strict JSON mode, and the rules of §5.1 are written out below. Whatever the
input, :func:`parse_request` either returns a request or raises :class:`InvalidRequest`.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from notifier.domain.deadlines import resolve_deadline
from notifier.domain.errors import InvalidRequest
from notifier.domain.models import Evidence, Priority, TakedownRequest

MAX_BODY_BYTES = 256 * 1024
MAX_URLS = 100
MAX_URL_LENGTH = 2048

REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
PLATFORM_ID_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,31}")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_COUNTRY = re.compile(r"[A-Z]{2}")
# C0 controls, DEL and C1 controls; a URL or a one-line field may carry none of them.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Multi-line text keeps newlines (LF or CRLF, as web forms send them) and tabs, nothing else below space.
_CONTROL_EXCEPT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Unicode separators and invisible format characters (bidi overrides, zero-width spaces): a URL
# carrying one can read differently to staff and platforms than it resolves.
_INVISIBLE_CATEGORIES = {"Zs", "Zl", "Zp", "Cf"}
_ALLOWED_SCHEMES = {"http", "https"}


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """What the configuration accepts: platform ids, category ids and deadline profiles, and the
    profile each category implies (SPEC §14)."""

    platforms: Collection[str]
    categories: Collection[str]
    deadlines: Collection[str] = ()
    category_deadlines: Mapping[str, str] = field(default_factory=dict)


def _err(kind: str, message: str, **ctx: Any) -> PydanticCustomError:
    return PydanticCustomError(kind, message, ctx or None)


def _one_line(value: str) -> str:
    if _CONTROL.search(value):
        raise _err("control_character", "contains a control character (CR, LF, NUL or similar)")
    return value


def _has_invisible(text: str) -> bool:
    # ASCII holds no separator or format character but the space, which is checked on its own.
    return not text.isascii() and any(unicodedata.category(c) in _INVISIBLE_CATEGORIES for c in text)


def check_url(url: str) -> str:
    """One URL of a request: absolute http/https, no credentials, no control characters."""
    if len(url) > MAX_URL_LENGTH:
        raise _err(
            "url_too_long",
            "is {length} characters long; the limit is {limit}",
            length=len(url),
            limit=MAX_URL_LENGTH,
        )
    if _CONTROL.search(url) or " " in url or _has_invisible(url):
        raise _err(
            "url_control", "contains whitespace, a control character or an invisible formatting character"
        )
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as error:
        # urllib's message quotes the part it could not read (a port of 2,000 letters): cut it.
        raise _err("url_parse", "is not a valid URL ({error})", error=_shorten(str(error), 80)) from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise _err("url_relative", "is not an absolute URL (no scheme)")
    if scheme not in _ALLOWED_SCHEMES:
        raise _err("url_scheme", "scheme '{scheme}' is not allowed", scheme=scheme[:20])
    if not host:
        raise _err("url_host", "has no host")
    if parts.username is not None or parts.password is not None:
        raise _err("url_credentials", "contains credentials (user:password@); remove them")
    return url


class EvidenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    sha256: str | None = None
    pdq: str | None = None

    @field_validator("sha256", "pdq")
    @classmethod
    def _hex64(cls, value: str | None) -> str | None:
        if value is not None and not _HEX64.fullmatch(value):
            raise _err("hash_format", "must be 64 hexadecimal characters")
        return value.lower() if value is not None else None


class RequestIn(BaseModel):
    """The wire shape of §5.1. Unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: str
    platform: str
    urls: Annotated[list[str], Field(min_length=1, max_length=MAX_URLS)]
    category: str
    priority: Literal["normal", "urgent"] = "normal"
    legal_basis: Annotated[str, Field(max_length=2000)] | None = None
    explanation: Annotated[str, Field(max_length=20000)] | None = None
    decided_at: datetime | None = None
    evidence: Annotated[list[EvidenceIn], Field(max_length=MAX_URLS)] = []
    case_ref: Annotated[str, Field(max_length=128)] | None = None
    territorial_scope: Annotated[list[str], Field(max_length=300)] = []
    deadline: str | None = None

    @field_validator("request_id")
    @classmethod
    def _request_id(cls, value: str) -> str:
        if not REQUEST_ID_PATTERN.fullmatch(value):
            raise _err("request_id_format", "must be 1-128 characters of A-Za-z0-9._:-")
        return value

    @field_validator("platform")
    @classmethod
    def _platform(cls, value: str, info: ValidationInfo) -> str:
        if value not in _vocabulary(info).platforms:
            raise _err("unknown_platform", "'{value}' is not a configured platform", value=_shorten(value))
        return value

    @field_validator("category")
    @classmethod
    def _category(cls, value: str, info: ValidationInfo) -> str:
        if value not in _vocabulary(info).categories:
            raise _err("unknown_category", "'{value}' is not a configured category", value=_shorten(value))
        return value

    @field_validator("deadline")
    @classmethod
    def _deadline(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and value not in _vocabulary(info).deadlines:
            raise _err(
                "unknown_deadline",
                "'{value}' is not a configured deadline profile",
                value=_shorten(value),
            )
        return value

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for index, url in enumerate(value):
            try:
                check_url(url)
            except PydanticCustomError as error:
                raise _err("url", "urls[{index}]: {reason}", index=index, reason=error.message()) from None
        return value

    @field_validator("legal_basis", "case_ref")
    @classmethod
    def _single_line(cls, value: str | None) -> str | None:
        return _one_line(value) if value is not None else None

    @field_validator("explanation")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        if value is not None and _CONTROL_EXCEPT_LINES.search(value):
            raise _err("control_character", "contains a control character other than newline or tab")
        return value

    @field_validator("decided_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise _err("naive_datetime", "needs a time zone offset (e.g. +09:00 or Z)")
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise _err("datetime_range", "is outside the range of representable times") from None

    @field_validator("evidence")
    @classmethod
    def _evidence(cls, value: list[EvidenceIn]) -> list[EvidenceIn]:
        for index, item in enumerate(value):
            if item.sha256 is None and item.pdq is None:
                raise _err("evidence_empty", "evidence[{index}]: names no hash (sha256 or pdq)", index=index)
        return value

    @field_validator("territorial_scope")
    @classmethod
    def _countries(cls, value: list[str]) -> list[str]:
        for index, code in enumerate(value):
            if not _COUNTRY.fullmatch(code):
                raise _err(
                    "country",
                    "territorial_scope[{index}]: '{code}' is not an ISO 3166 alpha-2 code",
                    index=index,
                    code=_shorten(code),
                )
        return value


def _vocabulary(info: ValidationInfo) -> Vocabulary:
    context = info.context or {}
    vocabulary = context.get("vocabulary")
    if not isinstance(vocabulary, Vocabulary):
        raise TypeError("RequestIn must be validated through parse_request(), which supplies the vocabulary")
    return vocabulary


def _shorten(value: str, limit: int = 40) -> str:
    """Echo a bad value safely: no control characters, bounded length."""
    cleaned = _CONTROL.sub("?", value)
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "…"


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _reason(error: ValidationError) -> str:
    """The first problems of a pydantic error, each prefixed with the field it concerns."""
    reasons: list[str] = []
    for detail in error.errors(include_url=False, include_input=False)[:3]:
        kind = detail["type"]
        loc = _location(detail["loc"])
        message = detail["msg"]
        if kind == "json_invalid":
            reasons.append(f"body is not valid JSON ({detail.get('ctx', {}).get('error', message)})")
            continue
        if kind == "extra_forbidden":
            reasons.append(f"{_shorten(loc, 60)}: unknown field")
            continue
        if kind == "missing":
            reasons.append(f"{loc}: required field is missing")
            continue
        if kind == "model_type" and not loc:
            reasons.append("body must be a JSON object")
            continue
        if kind in ("url", "evidence_empty", "country"):
            # The message already names the element (urls[3], evidence[0], ...).
            reasons.append(message)
            continue
        reasons.append(f"{loc}: {message}" if loc else message)
    return "; ".join(reasons)


def parse_request(body: bytes | str, vocabulary: Vocabulary) -> TakedownRequest:
    """Parse and validate one request body; raise :class:`InvalidRequest` naming the fault."""
    if isinstance(body, str):
        try:
            raw = body.encode()
        except UnicodeEncodeError as error:
            raise InvalidRequest(
                f"body is not UTF-8 (unencodable character at offset {error.start})"
            ) from None
    else:
        raw = body
    raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark, as some editors write
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidRequest(f"body is {len(raw)} bytes, over the {MAX_BODY_BYTES}-byte limit")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidRequest(f"body is not UTF-8 (invalid byte at offset {error.start})") from None
    try:
        model = RequestIn.model_validate_json(raw, context={"vocabulary": vocabulary})
    except ValidationError as error:
        raise InvalidRequest(_reason(error)) from None
    except (ValueError, OverflowError, RecursionError) as error:  # defensive: pydantic-core edge cases
        raise InvalidRequest(f"body could not be parsed ({type(error).__name__})") from None
    return to_request(model, vocabulary)


def to_request(model: RequestIn, vocabulary: Vocabulary | None = None) -> TakedownRequest:
    """The request a valid model describes, with its deadline profile resolved (its own, else its
    category's): the profile is a default applied by validation, so it belongs to the content."""
    category_deadlines = vocabulary.category_deadlines if vocabulary is not None else {}
    return TakedownRequest(
        request_id=model.request_id,
        platform=model.platform,
        urls=tuple(model.urls),
        category=model.category,
        priority=Priority(model.priority),
        legal_basis=model.legal_basis,
        explanation=model.explanation,
        decided_at=model.decided_at,
        evidence=tuple(Evidence(sha256=e.sha256, pdq=e.pdq) for e in model.evidence),
        case_ref=model.case_ref,
        territorial_scope=tuple(model.territorial_scope),
        deadline=resolve_deadline(model.deadline, model.category, category_deadlines),
    )


def request_id_hint(body: bytes) -> str | None:
    """The request id of a rejected body, when one can be read safely (for dead letters)."""
    try:
        data = json.loads(body[:MAX_BODY_BYTES])
    except (ValueError, RecursionError):
        return None
    if isinstance(data, dict):
        value = data.get("request_id")
        if isinstance(value, str) and REQUEST_ID_PATTERN.fullmatch(value):
            return value
    return None
