"""Reading request records from files for ``notifier submit``: a JSON object, a JSON array, or JSON Lines.

Each record keeps its position (``file:LINE`` for JSON Lines, ``file[INDEX]`` for an array) so an
invalid one can be reported where the operator will find it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Record:
    position: str
    body: bytes | None  # None when the record could not even be read
    error: str | None = None


def _first_char(data: bytes) -> bytes:
    stripped = data.lstrip(b" \t\r\n\xef\xbb\xbf")
    return stripped[:1]


def read_records(data: bytes, name: str) -> Iterator[Record]:
    """Split a file's bytes into records without judging them (validation comes after)."""
    data = data.removeprefix(b"\xef\xbb\xbf")
    first = _first_char(data)
    if not first:
        return
    if first == b"[":
        yield from _array(data, name)
        return
    if first == b"{":
        # One object, perhaps pretty-printed over several lines; else JSON Lines.
        try:
            value = json.loads(data)
        except (ValueError, RecursionError):
            pass
        else:
            if isinstance(value, dict):
                yield Record(position=name, body=data.strip())
                return
    yield from _lines(data, name)


def _array(data: bytes, name: str) -> Iterator[Record]:
    try:
        values = json.loads(data)
    except UnicodeDecodeError as error:
        yield Record(position=name, body=None, error=f"not UTF-8 (invalid byte at offset {error.start})")
        return
    except (ValueError, RecursionError) as error:
        yield Record(position=name, body=None, error=f"not valid JSON ({error})")
        return
    for index, value in enumerate(values):
        body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        yield Record(position=f"{name}[{index}]", body=body)


def _lines(data: bytes, name: str) -> Iterator[Record]:
    for number, line in enumerate(data.split(b"\n"), start=1):
        if line.strip():
            yield Record(position=f"{name}:{number}", body=line.rstrip(b"\r"))
