"""Properties of the mail classifier: whatever arrives, it answers with a verdict and never raises,
and a message that declares itself automatic is never a person's acknowledgement.

Examples are derandomised so that a run is reproducible, and few enough to run in seconds.
"""

from __future__ import annotations

import re
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.domain.notices import parse_notice_id
from notifier.domain.replies import MailKind, MailVerdict, classify

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None)
NOTICE = "TD-telegram-20240903-000012"
OUR_MESSAGE_ID = f"<{NOTICE}.notice@authority.example>"
MESSAGE_TAG = re.compile(r"(?:notice|reminder|escalation)(?:-[0-9]{1,3})?|alert")


def assert_well_formed(verdict: MailVerdict) -> None:
    assert isinstance(verdict.kind, MailKind)
    assert verdict.reason
    assert not [char for char in verdict.reason if unicodedata.category(char) == "Cc"]
    assert all(parse_notice_id(notice) for notice in verdict.notice_ids)
    assert bool(verdict.notice_ids) == bool(verdict.matched_by)
    if verdict.kind is MailKind.HUMAN:
        assert verdict.notice_ids
    if verdict.kind is MailKind.UNRELATED:
        assert verdict.notice_ids == ()
    if verdict.kind is not MailKind.HUMAN:
        assert not verdict.removal_claimed
        assert not verdict.counts_as_acknowledgement
    if verdict.kind is not MailKind.BOUNCE:
        assert verdict.bounce_status is None
        assert not verdict.delayed
    if verdict.kind is MailKind.UNRELATED:
        assert verdict.message is None
    assert verdict.message is None or MESSAGE_TAG.fullmatch(verdict.message)


# -- arbitrary input --------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=4000))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    assert_well_formed(classify(data, envelope_recipients=["bounces+x@authority.example"]))


awkward = st.sampled_from(
    ["\r", "\n", "\r\n", "\r\n ", "\r\n\r\n", "\x00", "=?", "?=", "<>", ";", "\\", '"', "é", "삭제"]
)
header_text = st.lists(st.text(max_size=12) | awkward, max_size=6).map("".join)
VALUES: dict[str, st.SearchStrategy[str]] = {
    "Auto-Submitted": st.sampled_from(
        ["no", "auto-replied", "auto-generated (failure)", "auto-notified", "", "NO"]
    ),
    "Precedence": st.sampled_from(["bulk", "junk", "list", "first-class", "", "BULK; x"]),
    "Return-Path": st.sampled_from(["<>", "<MAILER-DAEMON>", "<a@b.example>", "", "<", ">"]),
    "Content-Type": st.sampled_from(
        [
            "multipart/report; report-type=delivery-status; boundary=b",
            "multipart/report; report-type=feedback-report; boundary=b",
            "multipart/mixed; boundary=b",
            "multipart/mixed",
            "message/rfc822",
            "message/delivery-status",
            "text/plain; charset=x-unknown",
            "text/plain; charset=unicode_escape",
            "text/plain; charset=idna",
            "text/plain; charset=euc-kr",
            "text/html; charset=utf-8",
            "text/rfc822-headers",
            "garbage",
        ]
    ),
    "Content-Transfer-Encoding": st.sampled_from(["base64", "quoted-printable", "8bit", "x-uuencode"]),
    "Subject": st.sampled_from(
        [f"Re: [{NOTICE}] Takedown", "Undeliverable: x", "Out of Office", "Ticket #VH-1"]
    ),
    "In-Reply-To": st.sampled_from(
        [OUR_MESSAGE_ID, f"<{NOTICE}.escalation-2@authority.example>", "<other@x.example>", "<TD-", ""]
    ),
    "To": st.sampled_from(
        [
            f"bounces+{NOTICE}@authority.example",
            f"bounces+{NOTICE}.reminder@authority.example",
            f"bounces+alert.{NOTICE}.failed@authority.example",
            "bounces+alert.@x",
            "+TD-x.@",
        ]
    ),
    "From": st.sampled_from(
        ["MAILER-DAEMON", "postmaster@x.example", "no-reply@x.example", "Ann <ann@x.example>"]
    ),
    "X-Failed-Recipients": st.just("abuse@telegram.example"),
}
header = st.sampled_from(sorted(VALUES)).flatmap(
    lambda name: st.tuples(
        st.just(name), VALUES[name] | header_text | st.builds(str.__add__, VALUES[name], header_text)
    )
)
body = st.lists(
    st.sampled_from(
        [
            "--b\r\n",
            "--b--\r\n",
            "Content-Type: message/rfc822\r\n",
            "Status: 5.1.1\r\n",
            "Action: failed\r\n",
            "Action: delayed\r\n",
        ]
    )
    | st.sampled_from(
        [
            "We have removed it.\r\n",
            "삭제했습니다.\r\n",
            f"Message-ID: {OUR_MESSAGE_ID}\r\n",
            f"Message-ID: <{NOTICE}.reminder@authority.example>\r\n",
            f"Message-ID: <alert.{NOTICE}.failed@authority.example>\r\n",
            "\r\n",
        ]
    )
    | st.text(max_size=40),
    max_size=12,
).map("".join)


def render(headers: list[tuple[str, str]], text: str) -> bytes:
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return (lines + "\r\n" + text).encode("utf-8", "surrogatepass")


@FUZZ
@given(st.lists(header, max_size=10), body)
def test_generated_header_sets_never_raise(headers: list[tuple[str, str]], text: str) -> None:
    assert_well_formed(classify(render(headers, text), known_ticket=lambda ticket: NOTICE))


@FUZZ
@given(st.lists(header, max_size=10), body)
def test_a_message_declaring_itself_auto_replied_is_never_human(
    headers: list[tuple[str, str]], text: str
) -> None:
    declared = [("Auto-Submitted", "auto-replied"), ("In-Reply-To", OUR_MESSAGE_ID), *headers]

    verdict = classify(render(declared, text), known_ticket=lambda ticket: NOTICE)

    assert_well_formed(verdict)
    assert verdict.kind is not MailKind.HUMAN
    assert not verdict.counts_as_acknowledgement


# -- which message -------------------------------------------------------------------------------

tags = st.sampled_from(["notice", "reminder", "escalation"]) | st.integers(2, 999).map(
    lambda n: f"escalation-{n}"
)


def bounce_of(tag: str, *, to: str, returned_as: str) -> bytes:
    """A Postfix-shaped report returning our message with ``tag``: its headers, or all of it."""
    threading = (
        "" if tag == "notice" else f"In-Reply-To: {OUR_MESSAGE_ID}\r\nReferences: {OUR_MESSAGE_ID}\r\n"
    )
    original = (
        f"From: takedown@authority.example\r\nTo: abuse@telegram.example\r\n{threading}"
        f"Message-ID: <{NOTICE}.{tag}@authority.example>\r\nSubject: [{NOTICE}] x\r\n"
    )
    return (
        "From: MAILER-DAEMON@mx.telegram.example (Mail Delivery System)\r\n"
        f"To: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host mx.\r\n\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
        "Final-Recipient: rfc822; abuse@telegram.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        f"--b\r\nContent-Type: {returned_as}\r\n\r\n{original}\r\nbody\r\n--b--\r\n"
    ).encode()


@FUZZ
@given(
    tags,
    st.sampled_from(["tagged", "untagged", "none"]),
    st.sampled_from(["text/rfc822-headers", "message/rfc822"]),
)
def test_a_bounce_names_the_message_it_returns(tag: str, verp: str, returned_as: str) -> None:
    token = {"tagged": NOTICE if tag == "notice" else f"{NOTICE}.{tag}", "untagged": NOTICE}.get(verp)
    to = f"bounces+{token}@authority.example" if token else "someone@authority.example"

    verdict = classify(bounce_of(tag, to=to, returned_as=returned_as))

    assert_well_formed(verdict)
    assert (verdict.kind, verdict.notice_ids, verdict.message) == (MailKind.BOUNCE, (NOTICE,), tag)
    assert not verdict.delayed
