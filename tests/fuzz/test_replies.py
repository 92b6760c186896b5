"""The reply classifier (SPEC §7) fed real mail from ``tests/mail-corpus`` and synthetic replies,
mutated: bytes flipped, inserted, cut; headers dropped, repeated, swapped between messages or
replaced by awkward ones; heads and bodies of two messages spliced. The classifier is total (a
verdict, never an exception), its verdict well-formed, and it is deterministic: the same bytes, the
same verdict. ``tests/unit/test_mail_classifier_properties.py`` holds its properties on generated
mail; these start from real mail."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from notifier.domain.replies import MailKind
from notifier.domain.replies.reading import parse
from tests.fuzz import targets
from tests.fuzz.budget import budget
from tests.fuzz.strategies import mutated

REPO = Path(__file__).resolve().parents[2]
CORPUS = sorted(
    [
        *(REPO / "tests" / "mail-corpus").rglob("*.eml"),
        *(REPO / "tests" / "fuzz" / "corpus" / "replies").glob("*"),
    ]
)
AWKWARD_HEADERS = [
    b"Auto-Submitted: auto-replied",
    b"Auto-Submitted: no",
    b"Precedence: bulk",
    b"Return-Path: <>",
    b'Content-Type: multipart/report; report-type=delivery-status; boundary="x"',
    b"Content-Type: message/rfc822",
    b"Content-Type: text/plain; charset=unicode-escape",
    b"Content-Type: text/plain; charset=idna",
    b"Content-Type: text/plain; charset=utf-7",
    b"Content-Type: multipart/mixed; boundary=",
    b"Content-Transfer-Encoding: base64",
    b"Content-Transfer-Encoding: x-uuencode",
    b"In-Reply-To: <TD-telegram-20240903-000012.notice@authority.example>",
    b"References: <TD-telegram-20240903-000012.escalation-999@authority.example>",
    b"Subject: =?utf-8?b?broken?= [TD-telegram-20240903-000012]",
    b"Subject: =?x-unknown?q?a?=",
    b"From: MAILER-DAEMON",
    b"X-Failed-Recipients: abuse@t.example",
    b"Message-ID: <TD-telegram-20240903-000012.notice@authority.example>",
    b"Message-ID: <alert.TD-telegram-20240903-000012.failed@authority.example>",
]
RECIPIENTS = st.sampled_from(
    [(), ("bounces+TD-telegram-20240903-000012@authority.example",), ("bounces+alert.@authority.example",)]
)


@cache
def read(path: Path) -> bytes:
    return path.read_bytes()


def split(raw: bytes) -> tuple[list[bytes], bytes]:
    """Header lines (folded lines kept with theirs) and the body of a message."""
    head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    lines: list[bytes] = []
    for line in head.split(b"\n"):
        if lines and line[:1] in (b" ", b"\t"):
            lines[-1] += b"\n" + line
        else:
            lines.append(line)
    return lines, body


def join(lines: list[bytes], body: bytes, crlf: bool) -> bytes:
    raw = b"\n".join(lines) + b"\n\n" + body
    return raw.replace(b"\n", b"\r\n") if crlf else raw


@st.composite
def corpus_mail(draw: st.DrawFn) -> bytes:
    lines, body = split(read(draw(st.sampled_from(CORPUS))))
    for _ in range(draw(st.integers(0, 4))):
        operation = draw(st.sampled_from(["drop", "repeat", "awkward", "swap", "splice", "truncate"]))
        position = draw(st.integers(0, max(0, len(lines) - 1)))
        if operation == "drop" and lines:
            del lines[position]
        elif operation == "repeat" and lines:
            lines.insert(position, lines[position])
        elif operation == "awkward":
            lines.insert(position, draw(st.sampled_from(AWKWARD_HEADERS)))
        elif operation == "swap":
            other, _ = split(read(draw(st.sampled_from(CORPUS))))
            if other:
                lines.insert(position, other[draw(st.integers(0, len(other) - 1))])
        elif operation == "splice":
            _, body = split(read(draw(st.sampled_from(CORPUS))))
        else:
            body = body[: draw(st.integers(0, len(body)))]
    return join(lines, body, crlf=draw(st.booleans()))


@budget(80)
@given(raw=corpus_mail(), recipients=RECIPIENTS)
def test_real_mail_reshaped_is_classified_totally_and_deterministically(
    raw: bytes, recipients: tuple[str, ...]
) -> None:
    targets.check_mail(raw, recipients)


@budget(80)
@given(
    raw=st.sampled_from(CORPUS).map(read).flatmap(lambda seed: mutated(seed, max_mutations=6)),
    recipients=RECIPIENTS,
)
def test_real_mail_with_bytes_mutated_is_classified_totally_and_deterministically(
    raw: bytes, recipients: tuple[str, ...]
) -> None:
    targets.check_mail(raw, recipients)


@budget(60)
@given(raw=corpus_mail())
def test_a_mail_that_declares_itself_auto_replied_is_never_an_acknowledgement(raw: bytes) -> None:
    lines, body = split(raw)
    declared = [
        b"Auto-Submitted: auto-replied",
        *[line for line in lines if not line.lower().startswith(b"auto-submitted")],
    ]
    verdict = targets.check_mail(join(declared, body, crlf=True))
    assert verdict.kind is not MailKind.HUMAN
    assert not verdict.counts_as_acknowledgement


# -- regressions ----------------------------------------------------------------------------------


def test_a_delivery_status_part_of_two_million_blank_lines_is_read_only_up_to_its_256th() -> None:
    """Each blank line of a delivery-status part is a message of its own to the email package: 40 KB
    of newlines took 5 s to parse, 4 MB would have taken minutes. The head is read, the rest cut."""
    raw = (
        b"Content-Type: message/delivery-status\r\n\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        + b"\r\n" * 2_000_000
    )

    mail = parse(raw)
    verdict = targets.check_mail(raw)

    assert len(mail.dsn) <= 256
    assert mail.dsn[0] == {"action": "failed", "status": "5.1.1"}
    assert verdict.kind is MailKind.BOUNCE


def test_a_report_with_fewer_blank_lines_than_the_limit_is_read_whole() -> None:
    blocks = b"".join(
        b"Final-Recipient: rfc822; r%d@t.example\r\nAction: failed\r\n\r\n" % i for i in range(200)
    )
    raw = b"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n" + blocks

    assert sum(1 for block in parse(raw).dsn if block.get("action") == "failed") == 200


def test_a_part_header_of_repeated_content_types_is_read_without_the_policys_structured_parse() -> None:
    """The default policy parsed each part's Content-Type value structurally, inside the parser:
    100 KB of ``Content-Type: `` repeated took 6 s. Headers are decoded by the classifier's own code."""
    raw = b"Content-Type: message/delivery-status\r\n\r\n" + b"Content-Type: " * 300_000

    mail = parse(raw)

    assert isinstance(mail.first("content-type"), str)
    assert "message/delivery-status" in mail.types
    assert targets.check_mail(raw).kind is MailKind.BOUNCE
