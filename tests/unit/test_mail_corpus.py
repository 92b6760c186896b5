"""The mail classifier on real mail: the sisimai collection vendored in ``tests/mail-corpus`` (see
its README.md and LICENSE), each file classified as its folder says.

The rule that matters most: nothing in it — bounces, auto-replies, feedback reports, ordinary
mail — may ever count as a platform's acknowledgement, not even when it carries one of our notice
ids.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from notifier.domain.replies import MailKind, MailVerdict, classify

NOT_MAIL = {"README.md", "LICENSE", ".gitattributes"}
INJECTED_NOTICE = "TD-corpus-20240101-000001"
INJECTED_HEADER = f"In-Reply-To: <{INJECTED_NOTICE}.notice@authority.example>\n".encode()
# Filed under bounces/ by the collection, but Amazon SES says what they are: a recipient's
# complaint and a successful delivery. Neither means the notice failed to arrive.
NOT_REALLY_BOUNCES = {
    "lhost-amazonses-11.eml": MailKind.FEEDBACK_REPORT,
    "lhost-amazonses-13.eml": MailKind.DELIVERY_REPORT,
}

# The warnings in bounces/ that a message is still being tried: Action: delayed with none failed,
# or in words ("Delivery Status Notification (Delay)", "Warning: message … delayed 24 hours",
# "a temporary failure report", "Warning--Could not send mail for past 8.5 hours").
DELAY_WARNINGS = {
    "lhost-exim-38.eml",
    "lhost-gmail-09.eml",
    "lhost-opensmtpd-04.eml",
    "lhost-opensmtpd-06.eml",
    "lhost-opensmtpd-13.eml",
    "lhost-opensmtpd-15.eml",
    "lhost-sendmail-29.eml",
    "lhost-sendmail-55.eml",
    "lhost-x1-04.eml",
    "rfc3464-34.eml",
    "rhost-gsuite-06.eml",
}


@pytest.fixture(scope="module")
def corpus(mail_corpus: Path) -> Path:
    return mail_corpus


def files(root: Path, folder: str = "") -> Iterator[Path]:
    base = root / folder if folder else root
    for path in sorted(base.rglob("*")):
        if path.is_file() and path.name not in NOT_MAIL:
            yield path


@functools.cache
def classified(root: Path, folder: str) -> dict[str, MailVerdict]:
    verdicts = {path.name: classify(path.read_bytes()) for path in files(root, folder)}
    assert verdicts, f"{root / folder} holds no mail"
    return verdicts


def misses(verdicts: dict[str, MailVerdict], wanted: MailKind) -> list[str]:
    return [f"{name}: {v.kind} ({v.reason})" for name, v in verdicts.items() if v.kind is not wanted]


def test_bounces_are_bounces(corpus: Path) -> None:
    verdicts = classified(corpus, "bounces")
    missed = misses(verdicts, MailKind.BOUNCE)

    rate = 1 - len(missed) / len(verdicts)
    assert rate >= 0.95, f"{rate:.1%} of {len(verdicts)} bounces recognised; missed:\n" + "\n".join(missed)
    unexpected = [miss for miss in missed if miss.split(":")[0] not in NOT_REALLY_BOUNCES]
    assert not unexpected, "bounces not recognised:\n" + "\n".join(unexpected)


def test_amazon_ses_complaints_and_deliveries_are_not_taken_for_failures(corpus: Path) -> None:
    for name, kind in NOT_REALLY_BOUNCES.items():
        assert classify((corpus / "bounces" / name).read_bytes()).kind is kind, name


def test_bounces_carry_the_status_of_their_first_failed_recipient(corpus: Path) -> None:
    verdict = classify((corpus / "bounces" / "lhost-postfix-02.eml").read_bytes())

    assert (verdict.kind, verdict.bounce_status) == (MailKind.BOUNCE, "5.2.1")
    statuses = [v.bounce_status for v in classified(corpus, "bounces").values() if v.bounce_status]
    assert len(statuses) > 200
    assert all(re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", status) for status in statuses)


def test_delay_warnings_and_only_they_are_delayed_failures_with_4xx_statuses_included(corpus: Path) -> None:
    verdicts = classified(corpus, "bounces")
    delayed = {name for name, verdict in verdicts.items() if verdict.delayed}

    assert delayed == DELAY_WARNINGS
    soft = [
        name for name, v in verdicts.items() if not v.delayed and (v.bounce_status or "").startswith("4.")
    ]
    assert len(soft) > 20, "servers that gave up after 4.x.x answers report failed, not delayed"


def test_auto_replies_are_receipts(corpus: Path) -> None:
    missed = misses(classified(corpus, "auto-replies"), MailKind.AUTO_REPLY)

    assert not missed, "auto-replies not recognised:\n" + "\n".join(missed)


def test_feedback_reports_are_feedback_reports(corpus: Path) -> None:
    missed = misses(classified(corpus, "feedback-reports"), MailKind.FEEDBACK_REPORT)

    assert not missed, "feedback reports not recognised:\n" + "\n".join(missed)


def test_ordinary_mail_is_not_a_bounce(corpus: Path) -> None:
    verdicts = classified(corpus, "not-bounces")
    bounces = [name for name, verdict in verdicts.items() if verdict.kind is MailKind.BOUNCE]

    assert not bounces, f"ordinary mail taken for bounces: {bounces}"


def test_nothing_in_the_corpus_is_a_human_acknowledgement(corpus: Path) -> None:
    humans = [path.name for path in files(corpus) if classify(path.read_bytes()).counts_as_acknowledgement]

    assert not humans, f"taken for a platform's acknowledgement: {humans}"


@pytest.mark.parametrize("folder", ["bounces", "auto-replies", "feedback-reports"])
def test_automated_mail_in_our_thread_is_matched_but_never_a_human_acknowledgement(
    corpus: Path, folder: str
) -> None:
    wrong = []
    for path in files(corpus, folder):
        data = path.read_bytes()
        plain = classify(data)
        threaded = classify(in_our_thread(data))
        if threaded.kind is not plain.kind or INJECTED_NOTICE not in threaded.notice_ids:
            wrong.append(f"{path.name}: {plain.kind} became {threaded.kind} {threaded.notice_ids}")
        if threaded.counts_as_acknowledgement:
            wrong.append(f"{path.name}: counted as an acknowledgement")

    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("tag", ["notice", "reminder", "escalation-2"])
def test_every_bounce_to_a_verp_address_names_the_message_it_was_sent_for(corpus: Path, tag: str) -> None:
    token = INJECTED_NOTICE if tag == "notice" else f"{INJECTED_NOTICE}.{tag}"
    address = f"bounces+{token}@authority.example"
    wrong = []
    for path in files(corpus, "bounces"):
        verdict = classify(path.read_bytes(), envelope_recipients=[address])
        if verdict.kind is MailKind.BOUNCE and (verdict.notice_ids, verdict.message) != (
            (INJECTED_NOTICE,),
            tag,
        ):
            wrong.append(f"{path.name}: {verdict.notice_ids} {verdict.message}")

    assert not wrong, "\n".join(wrong)


def test_nothing_in_the_corpus_names_a_message_of_ours_unasked(corpus: Path) -> None:
    named = [
        f"{path.name}: {v.message}" for path in files(corpus) if (v := classify(path.read_bytes())).message
    ]

    assert not named, "\n".join(named)


def test_the_whole_corpus_is_classified_quickly(corpus: Path) -> None:
    messages = [path.read_bytes() for path in files(corpus)]

    started = time.perf_counter()
    for message in messages:
        classify(message)
    elapsed = time.perf_counter() - started

    # about 0.7 s on a developer machine; the bound only catches runaway regular expressions
    assert elapsed < 10, f"{len(messages)} messages took {elapsed:.1f} s"


def in_our_thread(data: bytes) -> bytes:
    """The message as if it answered our notice: our Message-ID in a first In-Reply-To header."""
    if data.startswith(b"From "):  # an mbox separator line stays first
        separator, _, rest = data.partition(b"\n")
        return separator + b"\n" + INJECTED_HEADER + rest
    return INJECTED_HEADER + data
