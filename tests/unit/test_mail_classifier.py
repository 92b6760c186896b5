"""The mail classifier on messages built by hand: human replies and what they claim, auto-replies and
their tickets, bounces in the RFC 3464 shape Postfix and Exchange send, feedback reports, and
mail that is not ours or not mail at all.

The real-world shapes are pinned by ``test_mail_corpus.py``; these pin the matching and the wording.
"""

from __future__ import annotations

import email.policy
import time
from collections.abc import Callable, Sequence
from email.message import EmailMessage, Message

import pytest

from notifier.channels.email import message_id_for
from notifier.domain.notices import MessageKind
from notifier.domain.replies import MailKind, MailVerdict, classify

NOTICE = "TD-telegram-20240903-000012"
OTHER = "TD-telegram-20240902-000011"
DOMAIN = "authority.example"
NOTICE_MSG_ID = message_id_for(NOTICE, MessageKind.NOTICE, DOMAIN)
REMINDER_MSG_ID = message_id_for(NOTICE, MessageKind.REMINDER, DOMAIN)
OTHER_MSG_ID = message_id_for(OTHER, MessageKind.NOTICE, DOMAIN)
VERP = f"bounces+{NOTICE}@{DOMAIN}"
SUBJECT = f"[{NOTICE}] Takedown notice: 2 URL(s) — Telegram"


def build(
    body: str = "Thank you, we have received your notice and are reviewing it.",
    *,
    subject: str = f"Re: {SUBJECT}",
    sender: str = "Trust & Safety <legal@telegram.example>",
    to: str = f"Authority <takedown@{DOMAIN}>",
    **headers: str,
) -> EmailMessage:
    """A reply as a platform's mail client would send it; ``headers`` use ``_`` for ``-``."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = "Tue, 03 Sep 2024 10:00:00 +0000"
    message["Message-ID"] = "<reply-1@mail.telegram.example>"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


def raw(message: Message) -> bytes:
    return message.as_bytes(policy=email.policy.SMTP)


def verdict(
    message: Message,
    *,
    envelope_recipients: Sequence[str] = (),
    known_ticket: Callable[[str], str | None] | None = None,
    our_domains: Sequence[str] = (),
) -> MailVerdict:
    return classify(
        raw(message),
        envelope_recipients=envelope_recipients,
        known_ticket=known_ticket,
        our_domains=our_domains,
    )


# -- human replies -------------------------------------------------------------------------------


def test_a_reply_in_our_thread_is_a_human_acknowledgement_matched_by_in_reply_to() -> None:
    result = verdict(build(In_Reply_To=NOTICE_MSG_ID, References=NOTICE_MSG_ID))

    assert result.kind is MailKind.HUMAN
    assert result.notice_ids == (NOTICE,)
    assert result.matched_by == "in-reply-to"
    assert result.counts_as_acknowledgement
    assert not result.removal_claimed
    assert result.bounce_status is None


def test_references_are_read_parent_first_when_in_reply_to_is_missing() -> None:
    result = verdict(build(subject="Re: your notice", References=f"{OTHER_MSG_ID} {REMINDER_MSG_ID}"))

    assert result.kind is MailKind.HUMAN
    assert result.notice_ids == (NOTICE, OTHER)
    assert result.matched_by == "references"


def test_a_reply_to_a_second_escalation_is_matched_by_its_own_message_id() -> None:
    second = message_id_for(NOTICE, MessageKind.ESCALATION, DOMAIN, follow_up=2)
    assert second == f"<{NOTICE}.escalation-2@{DOMAIN}>"
    result = verdict(build(subject="Re: escalation", In_Reply_To=second))

    assert (result.kind, result.notice_ids, result.matched_by) == (MailKind.HUMAN, (NOTICE,), "in-reply-to")


def test_a_reply_that_lost_its_headers_is_matched_by_the_subject_token() -> None:
    result = verdict(build(subject=f"RE: [{NOTICE}] Takedown notice"))

    assert (result.kind, result.notice_ids, result.matched_by) == (MailKind.HUMAN, (NOTICE,), "subject")


def test_message_ids_of_other_domains_are_not_ours_when_our_domains_are_given() -> None:
    foreign = f"<{NOTICE}.notice@elsewhere.example>"

    assert verdict(build(subject="Re: hello", In_Reply_To=foreign)).kind is MailKind.HUMAN
    result = verdict(build(subject="Re: hello", In_Reply_To=foreign), our_domains=[DOMAIN])
    assert result.kind is MailKind.UNRELATED
    assert result.notice_ids == ()


def test_a_korean_reply_is_matched_and_its_removal_wording_read() -> None:
    message = build(
        "안녕하세요.\n요청하신 게시물 2건을 모두 삭제했습니다.\n감사합니다.",
        subject=f"회신: [{NOTICE}] 삭제 요청 통지",
        In_Reply_To=NOTICE_MSG_ID,
    )

    result = verdict(message)

    assert result.kind is MailKind.HUMAN
    assert result.notice_ids == (NOTICE,)
    assert result.removal_claimed


@pytest.mark.parametrize("charset", ["utf-8", "euc-kr"])
def test_a_korean_reply_sent_as_raw_8bit_text_is_read_in_its_charset(charset: str) -> None:
    data = (
        f"From: legal@telegram.example\r\nSubject: 회신: [{NOTICE}]\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        "해당 게시물은 삭제되었습니다.\r\n"
    )
    head, body = data.split("\r\n\r\n")
    result = classify(head.encode("utf-8") + b"\r\n\r\n" + body.encode(charset))

    assert (result.kind, result.matched_by, result.removal_claimed) == (MailKind.HUMAN, "subject", True)


@pytest.mark.parametrize(
    "body",
    [
        "We have removed the content.",
        "Hello,\n\nThe video has been removed. Regards",
        "The content was taken down yesterday.",
        "We've taken the two videos down.",
        "After review, the reported material has been permanently deleted.",
        "Please be advised that we have removed the URLs listed in your notice.",
        "게시물을 삭제했습니다.",
        "해당 정보는 삭제되었습니다.",
        "요청하신 URL은 삭제 처리되었습니다.",
    ],
)
def test_removal_is_claimed_when_the_wording_certainly_says_removed(body: str) -> None:
    assert verdict(build(body, In_Reply_To=NOTICE_MSG_ID)).removal_claimed


@pytest.mark.parametrize(
    "body",
    [
        "The content has not been removed.",
        "The content hasn't been removed yet.",
        "The content will be removed within 24 hours.",
        "If removed, we will let you know.",
        "We will let you know once it has been removed.",
        "We are unable to remove this content.",
        "The content could not be removed.",
        "Has the content been removed?",
        "We have removed some of the URLs, but not all of them.",
        "The video was marked to be removed.",
        "Thank you, we have received your notice and are reviewing it.",
        "게시물은 아직 삭제되지 않았습니다.",
        "검토 후 삭제할 예정입니다.",
        "삭제되었다면 알려 드리겠습니다.",
        "일부 게시물만 삭제했습니다.",
    ],
)
def test_removal_is_not_claimed_when_negated_conditional_future_partial_or_asked(body: str) -> None:
    result = verdict(build(body, In_Reply_To=NOTICE_MSG_ID))

    assert result.kind is MailKind.HUMAN
    assert not result.removal_claimed


def test_an_html_only_reply_is_read_for_its_wording() -> None:
    message = build(In_Reply_To=NOTICE_MSG_ID)
    message.set_content(
        "<html><body><p>Hello,</p><p>We have removed the content.</p></body></html>", subtype="html"
    )

    result = verdict(message)

    assert (result.kind, result.removal_claimed) == (MailKind.HUMAN, True)


def test_removal_wording_in_the_quoted_original_does_not_count() -> None:
    body = (
        "Thanks, received.\n\n"
        "On Tue, 3 Sep 2024 at 10:00, Authority <takedown@authority.example> wrote:\n"
        "> Please confirm when the content has been removed.\n"
        "> We have removed nothing ourselves.\n"
    )
    assert not verdict(build(body, In_Reply_To=NOTICE_MSG_ID)).removal_claimed


def test_our_own_case_references_in_a_quoted_notice_are_not_taken_for_a_ticket() -> None:
    body = (
        "Received, thank you.\n\n-----Original Message-----\nFrom: Authority\n"
        f"TAKEDOWN NOTICE {NOTICE}\n1. Request req-0001\n   Case reference:     CASE-2024-17\n"
        "   사건 번호:   CASE-2024-17\n"
    )
    result = verdict(build(body, In_Reply_To=NOTICE_MSG_ID))

    assert result.kind is MailKind.HUMAN
    assert result.ticket is None


def test_a_ticket_the_platform_gave_earlier_matches_a_reply_with_nothing_else() -> None:
    message = build("We have removed the video.", subject="Re: your report (Case ID: ABC-991)")
    tickets = {"ABC-991": NOTICE}

    result = verdict(message, known_ticket=tickets.get)

    assert result.kind is MailKind.HUMAN
    assert (result.notice_ids, result.matched_by, result.ticket) == ((NOTICE,), "ticket", "ABC-991")
    assert result.removal_claimed
    assert verdict(message).kind is MailKind.UNRELATED  # without the ticket it is nobody's


def test_a_ticket_lookup_that_returns_no_notice_id_matches_nothing() -> None:
    message = build(subject="Re: your report (Case ID: ABC-991)")

    assert verdict(message, known_ticket=lambda ticket: "not-a-notice").kind is MailKind.UNRELATED
    assert verdict(message, known_ticket=lambda ticket: None).kind is MailKind.UNRELATED


# -- auto-replies --------------------------------------------------------------------------------


def test_an_auto_reply_with_a_ticket_is_a_receipt_and_keeps_the_ticket() -> None:
    message = build(
        "Your request has been received. Ticket #VH-4411\nOur team will review it.",
        subject=f"Re: {SUBJECT}",
        sender="VideoHost Support <support@videohost.example>",
        In_Reply_To=NOTICE_MSG_ID,
        Auto_Submitted="auto-replied",
    )

    result = verdict(message)

    assert result.kind is MailKind.AUTO_REPLY
    assert (result.notice_ids, result.matched_by, result.ticket) == ((NOTICE,), "in-reply-to", "VH-4411")
    assert not result.counts_as_acknowledgement
    assert not result.removal_claimed


def test_an_auto_reply_without_a_ticket_has_none() -> None:
    message = build(
        "I am out of the office until Monday.",
        subject=f"Automatic reply: {SUBJECT}",
        Return_Path="<>",
    )

    result = verdict(message)

    assert (result.kind, result.ticket, result.matched_by) == (MailKind.AUTO_REPLY, None, "subject")


@pytest.mark.parametrize(
    ("subject", "body", "ticket"),
    [
        (f"[VH-123] Re: {SUBJECT}", "Thanks for contacting us.", "VH-123"),
        (f"Re: {SUBJECT}", "Case ID: ABC-991\nWe will get back to you.", "ABC-991"),
        (f"Re: {SUBJECT}", "신고가 접수되었습니다. 티켓 번호: 20240903-77\n", "20240903-77"),
        (f"Re: {SUBJECT}", "Your request #88123 was received.", "88123"),
    ],
)
def test_tickets_are_found_in_the_subject_or_the_body(subject: str, body: str, ticket: str) -> None:
    message = build(body, subject=subject, In_Reply_To=NOTICE_MSG_ID, Auto_Submitted="auto-generated")

    assert verdict(message).ticket == ticket


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Auto-Submitted", "auto-replied"),
        ("Auto-Submitted", "auto-generated"),
        ("Auto-Submitted", "auto-notified; owner-email=x@telegram.example"),
        ("Precedence", "bulk"),
        ("Precedence", "junk"),
        ("Precedence", "list"),
        ("X-Autoreply", "yes"),
        ("X-Autorespond", "Thanks"),
        ("Return-Path", "<>"),
        ("Subject", f"Out of Office: {SUBJECT}"),
        ("Subject", f"자동 응답: {SUBJECT}"),
        ("From", "Telegram <no-reply@telegram.example>"),
    ],
)
def test_automatic_answers_in_our_thread_are_receipts_never_acknowledgements(header: str, value: str) -> None:
    message = build("We have removed the content.", In_Reply_To=NOTICE_MSG_ID)
    del message[header]
    message[header] = value

    result = verdict(message)

    assert result.kind is MailKind.AUTO_REPLY
    assert result.notice_ids == (NOTICE,)
    assert not result.counts_as_acknowledgement
    assert not result.removal_claimed


def test_auto_submitted_no_is_a_person() -> None:
    assert verdict(build(In_Reply_To=NOTICE_MSG_ID, Auto_Submitted="no")).kind is MailKind.HUMAN


# -- bounces -------------------------------------------------------------------------------------


def notice_as_sent() -> EmailMessage:
    original = EmailMessage()
    original["From"] = f"Authority <takedown@{DOMAIN}>"
    original["To"] = "abuse@telegram.example"
    original["Subject"] = SUBJECT
    original["Message-ID"] = NOTICE_MSG_ID
    original["X-Notifier-Notice-Id"] = NOTICE
    original.set_content("TAKEDOWN NOTICE\n")
    return original


def delivery_report(
    text: str,
    *,
    action: str = "failed",
    status: str = "5.1.1",
    returned: EmailMessage | None = None,
    **headers: str,
) -> EmailMessage:
    """A ``multipart/report; report-type=delivery-status`` as RFC 3464 lays it out."""
    report = build(text, **headers)
    report.make_mixed()
    report.set_type("multipart/report")
    report.set_param("report-type", "delivery-status")
    per_message, per_recipient = Message(), Message()
    per_message["Reporting-MTA"] = "dns; mx.telegram.example"
    per_recipient["Final-Recipient"] = "rfc822; abuse@telegram.example"
    per_recipient["Action"] = action
    per_recipient["Status"] = status
    status_part = EmailMessage()
    status_part["Content-Type"] = "message/delivery-status"
    status_part.set_payload([per_message, per_recipient])
    report.attach(status_part)
    if returned is not None:
        report.attach(returned)
    return report


def rfc822_headers(message: Message) -> EmailMessage:
    part = EmailMessage()
    part.set_content(
        message.as_string(policy=email.policy.SMTP).split("\r\n\r\n")[0] + "\r\n", subtype="rfc822-headers"
    )
    return part


def test_a_postfix_bounce_is_matched_by_the_returned_headers() -> None:
    report = delivery_report(
        "This is the mail system at host mx.telegram.example.\n\nI'm sorry to have to inform you "
        "that your message could not be delivered to one or more recipients.\n",
        subject="Undelivered Mail Returned to Sender",
        sender="MAILER-DAEMON@mx.telegram.example (Mail Delivery System)",
        returned=rfc822_headers(notice_as_sent()),
        Auto_Submitted="auto-replied",
    )

    result = verdict(report)

    assert result.kind is MailKind.BOUNCE
    assert (result.notice_ids, result.matched_by, result.bounce_status) == (
        (NOTICE,),
        "returned-headers",
        "5.1.1",
    )
    assert result.ticket is None
    assert not result.counts_as_acknowledgement


def test_an_exchange_bounce_carrying_the_original_message_is_matched_by_it() -> None:
    returned = EmailMessage()
    returned.set_content(notice_as_sent())  # message/rfc822
    report = delivery_report(
        "Delivery has failed to these recipients or groups:\n\nabuse@telegram.example\n",
        status="5.1.10",
        subject="Undeliverable: Takedown notice",
        sender="Microsoft Outlook <postmaster@telegram.onmicrosoft.example>",
        returned=returned,
        X_MS_Exchange_Message_Is_Ndr="",
    )

    result = verdict(report)

    assert result.kind is MailKind.BOUNCE
    assert (result.notice_ids, result.matched_by, result.bounce_status) == (
        (NOTICE,),
        "returned-headers",
        "5.1.10",
    )


def test_a_delay_notice_is_a_delayed_bounce_with_a_transient_status() -> None:
    result = verdict(delivery_report("Delayed.", action="delayed", status="4.4.7", to=VERP))

    assert (result.kind, result.bounce_status, result.matched_by) == (MailKind.BOUNCE, "4.4.7", "verp")
    assert result.delayed


def test_a_failure_with_a_transient_status_is_a_soft_bounce_not_a_delay() -> None:
    result = verdict(delivery_report("Mailbox full.", action="failed", status="4.2.2", to=VERP))

    assert (result.kind, result.bounce_status, result.delayed) == (MailKind.BOUNCE, "4.2.2", False)
    assert result.message == "notice"


def test_a_report_of_successful_relay_is_not_a_bounce() -> None:
    result = verdict(delivery_report("Relayed.", action="relayed", status="2.0.0", to=VERP))

    assert result.kind is MailKind.DELIVERY_REPORT
    assert result.notice_ids == (NOTICE,)


QMAIL_BOUNCE = (
    "Hi. This is the qmail-send program at mx.telegram.example.\n"
    "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
    "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
    "<abuse@telegram.example>:\nSorry, no mailbox here by that name. (#5.1.1)\n"
)


def test_a_bounce_with_nothing_of_ours_inside_is_matched_by_the_verp_envelope_recipient() -> None:
    message = build(
        QMAIL_BOUNCE,
        subject="failure notice",
        sender="MAILER-DAEMON@mx.telegram.example",
        to="someone@x.example",
    )

    result = verdict(message, envelope_recipients=[VERP])

    assert (result.kind, result.notice_ids, result.matched_by) == (MailKind.BOUNCE, (NOTICE,), "verp")
    assert verdict(message).notice_ids == ()


def test_the_verp_address_is_also_read_from_delivered_to() -> None:
    message = build(QMAIL_BOUNCE, subject="failure notice", sender="MAILER-DAEMON@mx.telegram.example")
    message["Delivered-To"] = VERP

    assert verdict(message).matched_by == "verp"


def test_an_abuse_feedback_report_about_our_notice_is_never_an_acknowledgement() -> None:
    report = build("This is an email abuse report.", subject="Abuse report", sender="abuse@telegram.example")
    report.make_mixed()
    report.set_type("multipart/report")
    report.set_param("report-type", "feedback-report")
    feedback = EmailMessage()
    feedback["Content-Type"] = "message/feedback-report"
    feedback.set_payload("Feedback-Type: abuse\nUser-Agent: Telegram-FBL/1.0\nVersion: 1\n")
    report.attach(feedback)
    report.attach(rfc822_headers(notice_as_sent()))

    result = verdict(report)

    assert (result.kind, result.notice_ids, result.matched_by) == (
        MailKind.FEEDBACK_REPORT,
        (NOTICE,),
        "returned-headers",
    )
    assert not result.counts_as_acknowledgement


# -- neither ours nor mail -----------------------------------------------------------------------


def test_mail_matching_none_of_our_notices_is_unrelated() -> None:
    message = build(
        f"Hi, about {NOTICE}: we have removed the content.",  # an id in the body is not a match
        subject="Lunch on Friday?",
        In_Reply_To="<CAF=abc@mail.example>",
    )

    result = verdict(message)

    assert result == MailVerdict(kind=MailKind.UNRELATED, reason=result.reason)
    assert result.reason


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\xff\xfe garbage \r\n\r\n\x80",
        b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n--\r\n",
        b"Subject: =?utf-8?b?!!!?= =?x-unknown?q?=FF?=\r\nIn-Reply-To: <TD-\r\n\r\nbody",
        b"From: \r\nReturn-Path: <\r\nContent-Type: text/plain; charset=no-such-charset\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64",
        b"Content-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\r\n" * 50,
        b"Content-Type: message/delivery-status\r\n\r\nStatus: 9.9.9\r\n",
        b"Subject: " + b"A" * 100_000 + b"\r\n\r\n" + b"x" * 100_000,
        # charsets that name codecs which raise or warn (and warnings are errors in this suite)
        b"Subject: =?unicode_escape?q?\\q?=\r\n"
        b"Content-Type: text/plain; charset=unicode_escape\r\n\r\n\\q \\N{",
        b"Content-Type: text/plain; charset=idna\r\n\r\nxn--",
        b"Content-Type: text/plain; charset=unicode_escape\r\n\r\n\xff\\q \\N{",
        b"Content-Type: text/plain; charset=zlib_codec\r\nContent-Transfer-Encoding: base64\r\n\r\n!!",
    ],
)
def test_malformed_mail_never_raises(data: bytes) -> None:
    result = classify(data)

    assert isinstance(result.kind, MailKind)
    assert result.kind is not MailKind.HUMAN
    assert result.reason


def test_what_is_not_bytes_at_all_is_unparseable_not_an_exception() -> None:
    result = classify(object())  # type: ignore[arg-type]  # a caller's mistake must not crash the reader

    assert result.kind is MailKind.UNRELATED
    assert result.reason.startswith("unparseable")


def test_our_own_notice_coming_back_is_no_ones_answer() -> None:
    copy = notice_as_sent()
    reminder = build("Reminder.", sender=f"Authority <takedown@{DOMAIN}>", In_Reply_To=NOTICE_MSG_ID)
    reminder.replace_header("Message-ID", REMINDER_MSG_ID)

    assert verdict(copy).kind is MailKind.UNRELATED
    assert verdict(reminder).kind is MailKind.UNRELATED
    assert verdict(reminder, our_domains=["elsewhere.example"]).kind is MailKind.HUMAN


SUBJECT_LINE = f"Subject: Re: [{NOTICE}] x\r\nIn-Reply-To: {NOTICE_MSG_ID}\r\n".encode()


@pytest.mark.parametrize(
    "data",
    [
        SUBJECT_LINE + b"\r\nticket" + b" " * 50_000 + b"!",
        SUBJECT_LINE + b"\r\n" + ("티켓 번호" + " " * 5000 + "!\n삭제" + " " * 5000 + "!\n").encode() * 10,
        SUBJECT_LINE + b"\r\n" + (b"we" + b" " * 5000 + b"x\nhas been " + b"a" * 5000 + b"\n") * 10,
        SUBJECT_LINE + b"Content-Type: text/html\r\n\r\n" + b"<script>" * 30_000 + b"<" * 200_000,
        b"From: "
        + b"a" * 3990
        + b"\r\nSubject: Undeliverable\r\n\r\n"
        + (b"Final-Recipient: a\n" + b"x" * 999) * 60,
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        + b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" * 20_000,
        b"Content-Type: message/rfc822\r\n\r\n" * 3000,
    ],
    ids=[
        "ticket-spaces",
        "korean-spaces",
        "removal-spaces",
        "html",
        "dsn-lines",
        "many-parts",
        "deep-nesting",
    ],
)
def test_hostile_input_is_classified_in_bounded_time(data: bytes) -> None:
    started = time.perf_counter()
    result = classify(data)

    assert time.perf_counter() - started < 5  # about 0.1 s; backtracking would take minutes
    assert result.reason
