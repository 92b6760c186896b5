"""What a receiving mail server said about a message's DKIM signatures: ``Authentication-Results``
(RFC 8601), read for its ``dkim`` results, pure.

The authority's own mail server adds the header on top of what it receives, so the topmost header
is the one to believe: further ones came with the message and anybody may have written them
(RFC 8601 §5). :func:`dkim_results` reads the topmost header only, unless it is told which
``authserv-id``\\ s are the authority's own, and then every header from those.

The grammar is lenient where real servers are: comments in parentheses anywhere (nested, with
escapes), quoted values, no spaces around ``=``, a missing ``;`` before a property, properties of
other methods, ``none``. A header that cannot be read gives no result rather than an error.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "AuthenticationResults",
    "DkimResult",
    "MethodResult",
    "describe",
    "dkim_results",
    "parse_authentication_results",
]

MAX_HEADER: Final = 8000  # longer values are cut: a real header is a few hundred characters
_PAIR: Final = re.compile(r'([^\s=;"]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s;"]*)')
_TOKEN: Final = re.compile(r"[A-Za-z0-9._@+/:-]+")
_METHOD: Final = re.compile(r"^[A-Za-z0-9_-]+(?:/[0-9]+)?$")


@dataclass(frozen=True, slots=True, kw_only=True)
class MethodResult:
    """One ``method=result`` with its reason and ``ptype.property=value`` pairs."""

    method: str  # lower case, without its version
    result: str  # lower case: pass, fail, none, neutral, policy, temperror, permerror, …
    reason: str | None = None
    properties: tuple[tuple[str, str], ...] = ()  # ("header.d", "example.com"), names lower case

    def get(self, name: str) -> str | None:
        for key, value in self.properties:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthenticationResults:
    authserv_id: str
    results: tuple[MethodResult, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DkimResult:
    """One DKIM signature as a receiving server judged it."""

    result: str  # pass, fail, neutral, none, policy, temperror, permerror
    domain: str | None  # header.d: the signing domain
    identity: str | None  # header.i: the agent or user identifier (``@domain`` by default)
    selector: str | None
    authserv_id: str  # the server that said so

    @property
    def passed(self) -> bool:
        return self.result == "pass"


def _strip_comments(value: str) -> str:
    """``value`` with every ``( … )`` comment replaced by a space; quoted strings kept as they are."""
    out: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    for char in value:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(char)
            continue
        if char == "\\" and (quoted or depth):
            escaped = True
            if depth == 0:
                out.append(char)
            continue
        if quoted:
            out.append(char)
            if char == '"':
                quoted = False
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
            if not depth:
                out.append(" ")
        elif depth == 0:
            out.append(char)
            quoted = char == '"'
    return "".join(out)


def _split(value: str) -> list[str]:
    """``value`` cut at every ``;`` outside a quoted string."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_authentication_results(value: str) -> AuthenticationResults | None:
    """One ``Authentication-Results`` header's value; None when it names no server."""
    parts = _split(_strip_comments(value[:MAX_HEADER].replace("\r", " ").replace("\n", " ")))
    head = parts[0].split()
    if not head:
        return None
    authserv_id = _unquote(head[0]).lower()
    rest = parts[1:]
    if "=" in head[0]:
        # Exchange Online writes its results first and its name later ("spf=pass …; outlook.com;").
        authserv_id, rest = "", parts
    results: list[MethodResult] = []
    # The version after the authserv-id, and old servers' "from=…" there, are not results.
    for part in rest:
        pairs = [(name.lower(), _unquote(raw)) for name, raw in _PAIR.findall(part)]
        if not authserv_id and not pairs and _TOKEN.fullmatch(part):
            authserv_id = part.lower()
            continue
        if not pairs or not _METHOD.match(pairs[0][0]) or "." in pairs[0][0]:
            if pairs and results and "." in pairs[0][0]:
                # "dkim=pass; header.i=@example.jp": a property cut from its method by a stray ";".
                last = results[-1]
                results[-1] = MethodResult(
                    method=last.method,
                    result=last.result,
                    reason=last.reason,
                    properties=last.properties + tuple(p for p in pairs if "." in p[0]),
                )
            continue
        method, result = pairs[0]
        reason = next((v for k, v in pairs[1:] if k == "reason"), None)
        properties = tuple((k, v) for k, v in pairs[1:] if "." in k)
        results.append(
            MethodResult(
                method=method.partition("/")[0],
                result=result.lower(),
                reason=reason,
                properties=properties,
            )
        )
    return AuthenticationResults(authserv_id=authserv_id, results=tuple(results))


def dkim_results(headers: Sequence[str], *, authserv_ids: Collection[str] = ()) -> tuple[DkimResult, ...]:
    """The DKIM results of a message's ``Authentication-Results`` headers, topmost first.

    Without ``authserv_ids`` only the topmost header is read (the one the last server added);
    with them, every header whose server is one of them (compared without case), and no other.
    """
    trusted = {name.lower() for name in authserv_ids}
    found: list[DkimResult] = []
    for value in headers if trusted else headers[:1]:
        parsed = parse_authentication_results(value)
        if parsed is None or (trusted and parsed.authserv_id not in trusted):
            continue
        for result in parsed.results:
            if result.method != "dkim":
                continue
            # header.d is not guessed from header.i: the identity may be a subdomain of it.
            domain = result.get("header.d")
            found.append(
                DkimResult(
                    result=result.result,
                    domain=domain.lower() if domain else None,
                    identity=result.get("header.i"),
                    selector=result.get("header.s"),
                    authserv_id=parsed.authserv_id,
                )
            )
    return tuple(found)


def describe(results: Sequence[DkimResult]) -> str | None:
    """The results as kept with a reply: ``mx.example: dkim=pass header.d=… header.i=…``, one per
    signature, ``; ``-separated; None when the header said nothing about DKIM."""
    if not results:
        return None
    lines = []
    for result in results:
        words = [f"{result.authserv_id}: dkim={result.result}"]
        if result.domain:
            words.append(f"header.d={result.domain}")
        if result.identity:
            words.append(f"header.i={result.identity}")
        lines.append(" ".join(words))
    return "; ".join(lines)[:1000]
