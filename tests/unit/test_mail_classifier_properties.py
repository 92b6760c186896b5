"""Properties of the mail classifier: whatever arrives, it answers with a verdict and never raises,
and a message that declares itself automatic is never a person's acknowledgement.

Examples are derandomised so that a run is reproducible, and few enough to run in seconds.
"""

from __future__ import annotations

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.acks.classify import MailKind, MailVerdict, classify
from notifier.domain.notices import parse_notice_id

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None)
NOTICE = "TD-telegram-20240903-000012"
OUR_MESSAGE_ID = f"<{NOTICE}.notice@authority.example>"


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
    "In-Reply-To": st.sampled_from([OUR_MESSAGE_ID, "<other@x.example>", "<TD-", ""]),
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
        ]
    )
    | st.sampled_from(
        ["We have removed it.\r\n", "삭제했습니다.\r\n", f"Message-ID: {OUR_MESSAGE_ID}\r\n", "\r\n"]
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
