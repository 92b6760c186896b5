"""Reading a received email: its headers unfolded and decoded, its text, the report blocks and the
original it returns, within bounds that keep a hostile message cheap. Never raises on bad input
once the email package has parsed it; :func:`parse` may raise whatever that package raises."""

from __future__ import annotations

import codecs
import email
import email.policy
import html
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from typing import Final

__all__ = ["SCAN", "Mail", "address", "header_value", "parse"]

SCAN: Final = 64 * 1024  # characters of text searched for banners, ids and wording
_MAX_RAW_BYTES: Final = 4 * 1024 * 1024  # a reply's headers and words come first
_MAX_BOUNDARY_LINES: Final = 500
_MAX_BLANK_LINES: Final = 256
_BOUNDARY_LINE: Final = re.compile(rb"\n--")
_BLANK_LINE: Final = re.compile(rb"\n(?=\r?\n)")
_MAX_PARTS: Final = 64
_MAX_PART_BYTES: Final = 256 * 1024
# Codecs a charset parameter can name that are not charsets: they raise or warn on odd input.
_NOT_CHARSETS: Final = frozenset({"unicode-escape", "raw-unicode-escape", "idna", "punycode", "undefined"})
_ENCODED_WORD: Final = re.compile(r"=\?([^?*\s]{1,40})(?:\*[^?\s]*)?\?[bq]\?", re.I)  # RFC 2047 (and 2231)
_MIME_TYPE: Final = re.compile(r"\s*([a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+)")
_MIME_PARAM: Final = re.compile(r";\s*([a-z0-9*_.-]+)\s*=\s*(\"[^\"]*\"|[^;\s]+)")
_ADDRESS: Final = re.compile(r"<([^<>]*)>\s*$|([^\s<>\"]+@[^\s<>\"]+)")


@dataclass(frozen=True, slots=True)
class Mail:
    headers: Mapping[str, tuple[str, ...]]  # lower-case names; unfolded, RFC 2047 decoded
    types: frozenset[str]  # content types of all parts, attached messages included
    report_type: str
    text: str  # readable text of the message's own parts
    returned: str  # attached messages, returned header blocks, delivery-status blocks
    dsn: tuple[Mapping[str, str], ...]  # delivery-status field blocks
    attached_headers: tuple[Mapping[str, tuple[str, ...]], ...]

    def first(self, name: str) -> str:
        values = self.headers.get(name)
        return values[0] if values else ""

    @property
    def head(self) -> str:
        return self.text[:SCAN]


def parse(raw: bytes) -> Mail:
    """The mail in ``raw``; raises what the email package raises on input it cannot parse.

    Read with the ``compat32`` policy: headers are decoded here (:func:`header_value`,
    :func:`_content_type`), and the default policy's structured parse of every part's
    Content-Type, run by the parser itself, took seconds on one long hostile header value."""
    return _read(email.message_from_bytes(_bounded(raw), policy=email.policy.compat32))


def _bounded(raw: bytes) -> bytes:
    """The head of the message, cut before the part that would make its parse slow: the email
    package spends about 0.2 ms on the headers of every MIME part, so ten thousand tiny parts would
    take seconds. Everything that classifies a message sits in its first parts.

    A part is opened at every boundary line, and inside a ``message/delivery-status`` part at every
    blank line (each field block is a message of its own to the email package): forty thousand
    newlines took five seconds. Real reports have a few dozen blank lines (82 at most in the
    corpus of real mail)."""
    data = raw[:_MAX_RAW_BYTES]
    return data[
        : min(_cut(data, _BOUNDARY_LINE, _MAX_BOUNDARY_LINES), _cut(data, _BLANK_LINE, _MAX_BLANK_LINES))
    ]


def _cut(data: bytes, pattern: re.Pattern[bytes], limit: int) -> int:
    """Where the ``limit``-th match of ``pattern`` starts, or the end of ``data``."""
    found = next(itertools.islice(pattern.finditer(data), limit - 1, None), None)
    return len(data) if found is None else found.start()


def _read(message: Message) -> Mail:
    plain: list[str] = []
    markup: list[str] = []
    returned: list[str] = []
    types: set[str] = set()
    dsn: list[Mapping[str, str]] = []
    attached: list[Mapping[str, tuple[str, ...]]] = []
    stack: list[tuple[Message, bool]] = [(message, False)]
    for _ in range(_MAX_PARTS):
        if not stack:
            break
        part, inside = stack.pop()
        ctype, params = _content_type(part)
        types.add(ctype)
        payload = part.get_payload()
        if isinstance(payload, list):
            children = [sub for sub in payload if isinstance(sub, Message)]
            blocks = [_headers(sub) for sub in children] if ctype.startswith("message/") else []
            returned.extend(_header_text(block) for block in blocks)
            if ctype == "message/delivery-status":
                dsn.extend({name: values[0] for name, values in block.items()} for block in blocks)
                continue
            attached.extend(blocks)
            stack.extend((sub, inside or bool(blocks)) for sub in reversed(children))
            continue
        body = _decode(part, params.get("charset", ""))
        if ctype == "message/delivery-status":
            dsn.extend(_field_blocks(body))
        if inside or ctype.startswith("message/") or "rfc822-header" in ctype:
            returned.append(body)
        elif ctype == "text/html":
            markup.append(_strip_html(body))
        elif ctype.startswith(("text/", "multipart/")):  # a multipart without parts is its text
            plain.append(body)
    return Mail(
        headers=_headers(message),
        types=frozenset(types),
        report_type=_content_type(message)[1].get("report-type", ""),
        text="\n".join(plain or markup)[: SCAN * 4],
        returned="\n".join(returned)[: SCAN * 4],
        dsn=tuple(dsn),
        attached_headers=tuple(attached),
    )


def _raw(part: Message, name: str) -> str:
    for key, value in part.raw_items():
        if str(key).strip().lower() == name:
            return re.sub(r"\s+", " ", str(value)).strip()
    return ""


def _content_type(part: Message) -> tuple[str, dict[str, str]]:
    """Type and parameters read from the raw header: cheaper than the policy's, and never raises."""
    declared = _raw(part, "content-type").lower()
    params = {name: value.strip('"') for name, value in _MIME_PARAM.findall(declared)}
    if match := _MIME_TYPE.match(declared):
        return match.group(1), params
    return ("message/rfc822" if part.get_default_type() == "message/rfc822" else "text/plain"), params


def _decode(part: Message, charset: str) -> str:
    """The part's text. ``get_payload(decode=True)`` undoes the transfer encoding and leaves the
    bytes alone; without ``decode`` it would decode 8-bit text itself, with any charset named."""
    try:
        data = part.get_payload(decode=True)
    except Exception:  # a transfer encoding the package cannot undo: searched as it came
        payload = part.get_payload()
        data = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
    return _text(data[:_MAX_PART_BYTES], charset) if isinstance(data, bytes) else ""


def _text(data: bytes, charset: str) -> str:
    """Decoded with the declared charset unless it is unknown, not a text encoding, or one of the
    codecs that raise or warn on input they dislike; then as UTF-8. Never raises, never warns."""
    try:
        if _is_charset(charset or "utf-8"):
            return data.decode(charset or "utf-8", errors="replace")
    except (LookupError, UnicodeError, ValueError):  # not a text encoding after all
        pass
    return data.decode("utf-8", errors="replace")


def _headers(message: Message) -> dict[str, tuple[str, ...]]:
    headers: dict[str, list[str]] = {}
    for name, value in list(message.raw_items())[:500]:
        headers.setdefault(str(name).strip().lower(), []).append(header_value(str(value)))
    return {name: tuple(values) for name, values in headers.items()}


def header_value(value: str) -> str:
    """A header's value on one line, RFC 2047 encoded words decoded when their charsets are real."""
    value = re.sub(r"\r?\n[ \t]*", " ", value[:4000]).replace("\r", " ").replace("\n", " ").strip()
    value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if "=?" not in value or not all(_is_charset(name) for name in _ENCODED_WORD.findall(value)):
        return value
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # a broken encoded-word is kept as it came
        return value


def _is_charset(name: str) -> bool:
    try:
        return codecs.lookup(name).name not in _NOT_CHARSETS
    except LookupError:
        return False


def _header_text(headers: Mapping[str, tuple[str, ...]]) -> str:
    return "\n".join(f"{name}: {value}" for name, values in headers.items() for value in values)


def _field_blocks(text: str) -> list[dict[str, str]]:
    return [
        {name.lower(): value for name, value in re.findall(r"^([A-Za-z-]+):[ \t]*(.*)$", block, re.M)}
        for block in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n"))
    ]


def _strip_html(markup: str) -> str:
    markup = re.sub(r"(?i)<br\s*/?>|</p\s*>|</div\s*>|</tr\s*>", "\n", markup[:_MAX_PART_BYTES])
    return html.unescape(re.sub(r"<[^<>]*>", " ", markup))


def address(value: str) -> str:
    """The address in a header value such as ``Name <a@b>``, or ``""``."""
    match = _ADDRESS.search(value[:1000])  # no address is longer; the search is quadratic
    return "" if match is None else (match.group(1) if match.group(1) is not None else match.group(2))
