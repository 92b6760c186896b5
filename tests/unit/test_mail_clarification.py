"""A platform's email asking the authority about a notice (SPEC §14): read as
``clarification_requested`` from the reply's own words, in English and Korean; auto-replies,
receipts, offers of help and removals are not questions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from structlog.testing import capture_logs

from notifier.clock import SimulatedClock
from notifier.domain.models import NoticeState
from notifier.domain.replies import MailKind
from notifier.domain.sla import SlaFacts, removal_clock
from notifier.store import SqlStore
from tests.stores import delivered_notice
from tests.unit.test_ack_service_mail import RecordingAlerts, _service
from tests.unit.test_mail_classifier import NOTICE_MSG_ID, build, verdict

QUESTIONS = [
    "Hello,\n\nThank you for your notice. Could you clarify which of the listed URLs contain the "
    "reported image? Two of them point to the same channel.\n\nBest regards,\nTrust & Safety",
    "Hi,\n\nWe need more information before we can act on this report: the notice does not say "
    "which account posted the video.\n\nKind regards,\nLegal Operations",
    "Dear Sir or Madam,\n\nPlease provide the court order or the provision you rely on for the "
    "third URL.\n\nSincerely,\nContent Policy Team",
    "Which content in this channel do you consider unlawful? The channel has over 2,000 posts.",
    "We reviewed the reported links but we are unable to determine which post you are referring to.",
    "Can you please specify the timestamps in the video that the notice refers to?",
    "We would need additional details about the person depicted before we can proceed.",
    "안녕하세요.\n\n신고하신 게시물에 대해 추가 정보가 필요합니다. 해당 URL의 어떤 부분이 문제인지 "
    "알려 주시기 바랍니다.\n\n감사합니다.",
    "요청하신 삭제 대상의 범위를 명확히 해 주시기 바랍니다.",
    "삭제 요청 대상 게시물에 대해 확인이 필요합니다. 원본 게시물의 URL을 보내 주시겠습니까?",
    "어떤 게시물을 말씀하시는지 알려 주세요.",
]

NOT_QUESTIONS = [
    "Thank you, we have received your report and are reviewing it.",
    "We received your report. If we need more information, we will contact you.",
    "Thanks for reaching out. If you need more information, please do not hesitate to contact us.",
    "Your report has been logged. Please quote your case number 88231 in any further correspondence.",
    "Please provide your ticket number TKT-4411 in any reply so we can find your report.",
    "We have removed the content.",
    "The two videos have been removed. Could you let us know if you find further copies?",
    "신고가 접수되었습니다. 추가 정보가 필요한 경우 연락드리겠습니다.",
    "게시물을 삭제했습니다.",
    "내부 확인이 필요하여 처리에 시간이 소요될 수 있습니다.",
    "Thanks, received.\n\nOn Tue, 3 Sep 2024 at 10:00, Authority <takedown@authority.example> wrote:\n"
    "> Could you please clarify which posts you removed?\n> We need more information on the timeline.\n",
]


@pytest.mark.parametrize("body", QUESTIONS)
def test_a_question_about_the_notice_is_a_request_for_clarification(body: str) -> None:
    result = verdict(build(body, In_Reply_To=NOTICE_MSG_ID))

    assert result.kind is MailKind.HUMAN
    assert result.clarification_requested, body
    assert not result.removal_claimed


@pytest.mark.parametrize("body", NOT_QUESTIONS)
def test_receipts_offers_removals_and_quoted_questions_are_not_requests_for_clarification(body: str) -> None:
    result = verdict(build(body, In_Reply_To=NOTICE_MSG_ID))

    assert result.kind is MailKind.HUMAN
    assert not result.clarification_requested, body


def test_a_removal_and_a_question_in_one_reply_read_as_the_removal() -> None:
    body = "The two videos have been removed. Could you let us know if you find further copies?"
    result = verdict(build(body, In_Reply_To=NOTICE_MSG_ID))

    assert (result.removal_claimed, result.clarification_requested) == (True, False)


def test_an_auto_reply_asking_for_more_information_is_a_receipt_not_a_question() -> None:
    body = (
        "This is an automated response. We have received your report (case #12345).\n"
        "Could you clarify which content you are reporting? Reply to this message with the URLs.\n"
    )
    message = build(body, In_Reply_To=NOTICE_MSG_ID, Auto_Submitted="auto-replied")

    result = verdict(message)

    assert result.kind is MailKind.AUTO_REPLY
    assert not result.clarification_requested
    assert not result.counts_as_acknowledgement


async def test_an_emailed_question_stops_the_removal_clock_like_the_callback(store: SqlStore) -> None:
    clock, alerts = SimulatedClock(), RecordingAlerts()
    notice = await delivered_notice(store, clock)
    await clock.advance(timedelta(minutes=40))
    reply = build(
        "Could you clarify which of the listed URLs contain the reported image?",
        In_Reply_To=f"<{notice.notice_id}.notice@authority.example>",
        subject=f"Re: [{notice.notice_id}] Takedown notice",
    )

    with capture_logs() as logs:
        await _service(store, clock, alerts).handle_mail(bytes(reply), source="email:smtp")

    [after] = await store.get_notices([notice.notice_id])
    assert after.state is NoticeState.ACKNOWLEDGED
    assert after.clarification_requested_at == clock.now()
    facts = SlaFacts(
        delivered_at=after.delivered_at,
        acknowledged_at=after.acknowledged_at,
        open_requests=1,
        clarification_requested_at=after.clarification_requested_at,
        clarified_at=after.clarified_at,
    )
    assert removal_clock(facts) is None  # stopped until the authority answers
    [received] = [e for e in logs if e["event"] == "ack.received"]
    assert received["notice_state"] == NoticeState.ACKNOWLEDGED.value
