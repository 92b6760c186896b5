"""Which of our messages a bounce or a reply is about, and whether a bounce failed or is only delayed.

The bounces are real ones from the vendored corpus (``tests/mail-corpus/bounces``), Postfix,
Sendmail, Exchange, Office 365 and OpenSMTPD reports, with our VERP address put where the report
is addressed and our Message-ID where the returned original carries its own: exactly what these
servers send back when one of our messages fails.
"""

from __future__ import annotations

import email.policy
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from notifier.channels.email import message_id_for
from notifier.domain.notices import MessageKind
from notifier.domain.replies import ALERT, MailKind, MailVerdict, alert_token, classify, envelope_token
from notifier.sandbox.bounces import mailbox_full_bounce

NOTICE = "TD-telegram-20240903-000012"
OTHER = "TD-telegram-20240902-000011"
DOMAIN = "authority.example"
VERP = "bounces+{notice_id}@authority.example"
NOTICE_ID = message_id_for(NOTICE, MessageKind.NOTICE, DOMAIN)
REMINDER_ID = message_id_for(NOTICE, MessageKind.REMINDER, DOMAIN)
ESCALATION_ID = message_id_for(NOTICE, MessageKind.ESCALATION, DOMAIN)
SECOND_ESCALATION_ID = message_id_for(NOTICE, MessageKind.ESCALATION, DOMAIN, follow_up=2)
OTHER_ID = message_id_for(OTHER, MessageKind.NOTICE, DOMAIN)
# A reminder's headers as returned: threaded under the notice, whose id comes first.
THREADED = f"In-Reply-To: {NOTICE_ID}\nReferences: {NOTICE_ID}\nMessage-ID: {REMINDER_ID}"
ALERT_KEY = f"{NOTICE}.failed"  # as the alert service keys a failed notice's alert
ALERT_ID = f"<alert.{ALERT_KEY}@{DOMAIN}>"


def verp(tag: str) -> str:
    return VERP.replace("{notice_id}", envelope_token(NOTICE, tag))


ALERT_VERP = VERP.replace("{notice_id}", alert_token(ALERT_KEY))


@pytest.fixture(scope="module")
def bounces(mail_corpus: Path) -> Path:
    return mail_corpus / "bounces"


def from_corpus(path: Path, *, to: str | None = None, swap: dict[str, str] | None = None) -> bytes:
    """The corpus bounce at ``path`` addressed ``To:`` ``to`` (when given), every ``swap`` key
    replaced by its value: the returned original's Message-ID, Subject or threading headers."""
    data = path.read_bytes()
    if to is not None:
        data, count = re.subn(rb"(?m)^To:[^\r\n]*", f"To: {to}".encode(), data, count=1)
        assert count == 1, path.name
    for old, new in (swap or {}).items():
        assert old.encode() in data, f"{old} is not in {path.name}"
        data = data.replace(old.encode(), new.encode())
    return data


def returned_id_of(path: Path) -> str:
    """The Message-ID of the original a corpus bounce returns: the last Message-ID header in it."""
    found = re.findall(rb"(?mi)^Message-Id:[ \t]*(<[^>\r\n]+>)", path.read_bytes())
    assert len(found) >= 2, path.name
    return str(found[-1].decode())


def assert_bounce_of(result: MailVerdict, message: str | None, *, notice: str | None = NOTICE) -> None:
    assert result.kind is MailKind.BOUNCE, result.reason
    assert result.notice_ids[:1] == ((notice,) if notice else ())
    assert result.message == message
    assert not result.counts_as_acknowledgement


# -- which message bounced -----------------------------------------------------------------------


def test_a_postfix_bounce_of_the_notice_is_about_the_notice_and_hard(bounces: Path) -> None:
    path = bounces / "lhost-postfix-04.eml"
    raw = from_corpus(path, to=verp("notice"), swap={returned_id_of(path): NOTICE_ID})

    result = classify(raw, envelope_recipients=[verp("notice")])

    assert_bounce_of(result, "notice")
    assert (result.bounce_status, result.delayed) == ("5.1.1", False)


def test_a_sendmail_bounce_of_a_reminder_is_about_the_reminder_and_soft(bounces: Path) -> None:
    # text/rfc822-headers; the reminder's own In-Reply-To names the notice it threads under
    path = bounces / "lhost-sendmail-10.eml"
    raw = from_corpus(path, to=verp("reminder"), swap={f"Message-ID: {returned_id_of(path)}": THREADED})

    result = classify(raw, envelope_recipients=[verp("reminder")])

    assert_bounce_of(result, "reminder")
    assert (result.bounce_status, result.delayed) == ("4.4.7", False)


def test_the_returned_message_id_names_the_reminder_even_without_a_verp_address(bounces: Path) -> None:
    path = bounces / "lhost-sendmail-10.eml"
    raw = from_corpus(path, swap={f"Message-ID: {returned_id_of(path)}": THREADED})

    result = classify(raw)

    assert_bounce_of(result, "reminder")
    assert result.matched_by == "returned-headers"


def test_an_exchange_bounce_of_an_escalation_is_about_the_escalation(bounces: Path) -> None:
    path = bounces / "lhost-exchange2007-03.eml"
    raw = from_corpus(
        path,
        to=verp("escalation"),
        swap={"<20100429233445.FF00FFEE0000@r2.example.org>": ESCALATION_ID},
    )

    result = classify(raw, our_domains=[DOMAIN])

    assert_bounce_of(result, "escalation")
    assert (result.matched_by, result.bounce_status) == ("verp", "5.2.3")


def test_an_office365_bounce_of_a_second_escalation_is_told_by_its_message_id(bounces: Path) -> None:
    # Office 365 also names the bounced message in the report's own In-Reply-To and References.
    path = bounces / "lhost-office365-11.eml"
    original = "<SLXP216MB0381A4F513CF42F0FCDA0E2FA9250@SLXP216MB0381.KORP216.PROD.OUTLOOK.COM>"
    raw = from_corpus(path, swap={original: SECOND_ESCALATION_ID})

    result = classify(raw)

    assert_bounce_of(result, "escalation-2")
    assert result.bounce_status == "5.1.1"


def test_a_bounce_of_an_operations_alert_is_an_alert_bounce_with_the_alerts_notice(bounces: Path) -> None:
    path = bounces / "lhost-postfix-31.eml"
    raw = from_corpus(path, to=ALERT_VERP, swap={returned_id_of(path): ALERT_ID})

    result = classify(raw, envelope_recipients=[ALERT_VERP], our_domains=[DOMAIN])

    assert_bounce_of(result, ALERT)
    assert result.matched_by == "verp"


def test_an_alert_bounce_is_told_by_the_returned_message_id_alone(bounces: Path) -> None:
    path = bounces / "lhost-postfix-31.eml"
    raw = from_corpus(path, swap={returned_id_of(path): ALERT_ID})

    assert_bounce_of(classify(raw), ALERT)


def test_an_alert_about_no_notice_bounces_as_an_alert_matching_no_notice(bounces: Path) -> None:
    path = bounces / "lhost-postfix-31.eml"
    address = VERP.replace("{notice_id}", alert_token("store-unavailable"))
    raw = from_corpus(path, to=address)

    result = classify(raw, envelope_recipients=[address])

    assert_bounce_of(result, ALERT, notice=None)
    assert result.matched_by == ""


def test_an_untagged_verp_address_is_the_notice(bounces: Path) -> None:
    # Nothing of ours inside: the original returned has no Message-ID and another subject.
    raw = from_corpus(bounces / "lhost-postfix-02.eml", to="kijitora@example.jp")

    result = classify(raw, envelope_recipients=[verp("notice")])

    assert verp("notice") == f"bounces+{NOTICE}@{DOMAIN}"
    assert_bounce_of(result, "notice")
    assert result.matched_by == "verp"


@pytest.mark.parametrize("tag", ["reminder", "escalation", "escalation-2"])
def test_a_tagged_verp_address_names_its_message(bounces: Path, tag: str) -> None:
    raw = from_corpus(bounces / "lhost-postfix-02.eml", to=verp(tag))

    assert_bounce_of(classify(raw), tag)


def test_a_reminder_sent_with_the_notices_verp_address_is_still_told_by_its_message_id(
    bounces: Path,
) -> None:
    # What a reminder sent before every message had its own VERP address brings back.
    path = bounces / "lhost-postfix-04.eml"
    raw = from_corpus(path, to=verp("notice"), swap={returned_id_of(path): REMINDER_ID})

    assert_bounce_of(classify(raw, envelope_recipients=[verp("notice")]), "reminder")


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        (f"[{NOTICE}] Takedown notice: 2 URL(s) — Telegram", "notice"),
        (f"[{NOTICE}] Reminder: takedown notice, 2 URL(s) — Telegram", "reminder"),
        (f"[{NOTICE}] Escalation: takedown notice past its deadline — Telegram", "escalation"),
        (f"[{NOTICE}] 기한 경과 통지: 처리되지 않은 삭제 요청 — Telegram", "escalation"),
        (f"[{NOTICE}] something we never wrote", None),
    ],
)
def test_a_bounce_matched_only_by_the_returned_subject_is_told_by_its_wording(
    bounces: Path, subject: str, message: str | None
) -> None:
    raw = from_corpus(bounces / "lhost-postfix-02.eml", swap={"Subject: test": f"Subject: {subject}"})

    result = classify(raw)

    assert result.kind is MailKind.BOUNCE
    assert result.matched_by in ("returned-headers", "")
    assert result.message == message


def test_a_korean_returned_subject_in_encoded_words_is_read(bounces: Path) -> None:
    # as the channel writes it: the token stays plain, the Korean words are encoded and folded
    header = EmailMessage(policy=email.policy.SMTP)
    header["Subject"] = f"[{NOTICE}] 재통지: 삭제 요청 통지 URL 2건 — Telegram"
    encoded = bytes(header).decode("ascii").strip().removeprefix("Subject: ").replace("\r\n", "\n")
    assert "재통지" not in encoded
    raw = from_corpus(bounces / "lhost-sendmail-10.eml", swap={"Subject: Nyaaaaaaan": f"Subject: {encoded}"})

    result = classify(raw)

    assert (result.kind, result.notice_ids, result.message) == (MailKind.BOUNCE, (NOTICE,), "reminder")


def test_the_bounces_own_subject_is_read_when_it_quotes_the_original(bounces: Path) -> None:
    raw = from_corpus(
        bounces / "lhost-postfix-02.eml",
        swap={
            "Subject: Undelivered Mail Returned to Sender": (
                f"Subject: Undeliverable: [{NOTICE}] Escalation: takedown notice past its deadline"
            )
        },
    )

    result = classify(raw)

    assert (result.notice_ids, result.matched_by, result.message) == ((NOTICE,), "subject", "escalation")


def test_the_message_is_about_the_best_matched_notice_only(bounces: Path) -> None:
    # The report names OTHER's notice in its In-Reply-To; the VERP's reminder is NOTICE's.
    path = bounces / "lhost-postfix-02.eml"
    raw = f"In-Reply-To: {OTHER_ID}\n".encode() + from_corpus(path, to=verp("reminder"))

    result = classify(raw)

    assert result.notice_ids == (OTHER, NOTICE)
    assert result.message == "notice"


# -- failed, soft or hard, or only delayed --------------------------------------------------------


def test_a_delay_warning_is_delayed_and_names_its_message(bounces: Path) -> None:
    path = bounces / "lhost-opensmtpd-13.eml"
    raw = from_corpus(path, to=verp("escalation"), swap={returned_id_of(path): ESCALATION_ID})

    result = classify(raw)

    assert_bounce_of(result, "escalation")
    assert (result.delayed, result.bounce_status) == (True, "4.0.0")


@pytest.mark.parametrize(
    "name",
    [
        "lhost-exim-38.eml",  # Exim: "Warning: message … delayed 24 hours", no report part
        "lhost-gmail-09.eml",  # Gmail: "Delivery Status Notification (Delay)"
        "lhost-opensmtpd-04.eml",  # OpenSMTPD: "a temporary failure report"
        "lhost-sendmail-29.eml",  # Sendmail: "Warning: could not send message for past 4 hours"
        "rhost-gsuite-06.eml",
        "rfc3464-34.eml",  # "Delayed Mail (still being retried)"
    ],
)
def test_mail_servers_delay_warnings_are_delayed_not_failed(bounces: Path, name: str) -> None:
    result = classify((bounces / name).read_bytes())

    assert (result.kind, result.delayed) == (MailKind.BOUNCE, True)


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("lhost-sendmail-10.eml", "4.4.7"),  # gave up after 12 hours of 450s
        ("lhost-postfix-49.eml", "4.0.0"),
        ("rfc3464-36.eml", "4.0.0"),  # "Cannot send message for 5 days"
        ("lhost-qmail-06.eml", "4.2.2"),
        ("lhost-postfix-04.eml", "5.1.1"),
        ("lhost-postfix-02.eml", "5.2.1"),
    ],
)
def test_a_failure_is_not_delayed_whatever_its_status(bounces: Path, name: str, status: str) -> None:
    result = classify((bounces / name).read_bytes())

    assert (result.kind, result.delayed, result.bounce_status) == (MailKind.BOUNCE, False, status)


def test_the_sandboxs_full_mailbox_is_a_soft_bounce_of_the_message_it_returns() -> None:
    original = EmailMessage()
    original["From"] = f"takedown@{DOMAIN}"
    original["To"] = "abuse@telegram.example"
    original["Subject"] = f"[{NOTICE}] Reminder: takedown notice, 2 URL(s) — Telegram"
    original["Message-ID"] = REMINDER_ID
    original["In-Reply-To"] = NOTICE_ID
    original.set_content("REMINDER\n")
    raw = mailbox_full_bounce(
        original=original,
        verp=verp("reminder"),
        recipient="abuse@telegram.example",
        host="mx.telegram.example",
        at=datetime(2024, 9, 3, 2, tzinfo=UTC),
    )

    result = classify(raw, envelope_recipients=[verp("reminder")])

    assert_bounce_of(result, "reminder")
    assert (result.bounce_status, result.delayed) == ("4.2.2", False)


# -- replies and receipts ------------------------------------------------------------------------


def reply(**headers: str) -> bytes:
    message = EmailMessage()
    message["From"] = "legal@telegram.example"
    message["To"] = f"takedown@{DOMAIN}"
    message["Subject"] = headers.pop("Subject", "Re: our case")
    message["Message-ID"] = "<r1@telegram.example>"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content("Thank you, we have received your notice.")
    return message.as_bytes()


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"In_Reply_To": REMINDER_ID, "References": f"{NOTICE_ID} {REMINDER_ID}"}, "reminder"),
        ({"In_Reply_To": SECOND_ESCALATION_ID}, "escalation-2"),
        ({"References": f"{NOTICE_ID} {ESCALATION_ID}"}, "escalation"),
        ({"In_Reply_To": NOTICE_ID}, "notice"),
        ({"Subject": f"Re: [{NOTICE}] Reminder: takedown notice, 2 URL(s) — Telegram"}, "reminder"),
        ({"Subject": f"Re: [{NOTICE}] done"}, None),
    ],
)
def test_a_reply_says_which_message_it_answers(headers: dict[str, str], message: str | None) -> None:
    result = classify(reply(**headers))

    assert (result.kind, result.notice_ids, result.message) == (MailKind.HUMAN, (NOTICE,), message)
    assert not result.delayed


def test_an_auto_reply_to_a_reminders_verp_address_is_a_receipt_about_the_reminder() -> None:
    raw = reply(In_Reply_To=NOTICE_ID, Auto_Submitted="auto-replied")

    result = classify(raw, envelope_recipients=[verp("reminder")])

    assert (result.kind, result.message) == (MailKind.AUTO_REPLY, "reminder")


def test_our_own_operations_alert_coming_back_is_no_ones_answer() -> None:
    raw = reply(Subject=f"notice {NOTICE} failed", Auto_Submitted="auto-generated")
    looped = raw.replace(b"<r1@telegram.example>", ALERT_ID.encode())

    assert classify(looped, our_domains=[DOMAIN]).kind is MailKind.UNRELATED
    assert classify(looped).kind is MailKind.UNRELATED  # it names a notice: ours whatever the domain
    elsewhere = raw.replace(b"<r1@telegram.example>", b"<alert.1234@telegram.example>")
    assert classify(elsewhere, our_domains=[DOMAIN]).kind is MailKind.AUTO_REPLY


def test_unrelated_mail_names_no_message() -> None:
    result = classify(reply(Subject="Hello"))

    assert (result.kind, result.message, result.delayed) == (MailKind.UNRELATED, None, False)
