"""What the acknowledgement service does with mail about a delivered notice, on a SQLite store."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from email.message import EmailMessage

import pytest
from structlog.testing import capture_logs

from notifier.clock import SimulatedClock
from notifier.domain.models import NoticeState
from notifier.metrics import Metrics
from notifier.services.acks import AckService, FallbackRule
from notifier.store import SqlStore
from tests.stores import delivered_notice


class RecordingAlerts:
    def __init__(self) -> None:
        self.keys: list[str] = []

    async def alert(self, *, subject: str, text: str, key: str) -> str:
        self.keys.append(key)
        return key


def _service(store: SqlStore, clock: SimulatedClock, alerts: RecordingAlerts) -> AckService:
    return AckService(
        store=store,
        clock=clock,
        metrics=Metrics(),
        fallbacks={"telegram": FallbackRule(primary="email", fallback=None)},
        deliver_within=timedelta(hours=6),
        our_domains=["authority.example"],
        alerts=alerts,
    )


async def test_a_reply_to_an_operations_alert_is_never_a_platforms_acknowledgement(store: SqlStore) -> None:
    clock, alerts = SimulatedClock(), RecordingAlerts()
    notice = await delivered_notice(store, clock)
    reply = EmailMessage()
    reply["From"] = "ops-colleague@authority.example"
    reply["To"] = "takedown@authority.example"
    reply["Subject"] = f"Re: notifier: notice {notice.notice_id} to telegram failed"
    reply["In-Reply-To"] = f"<alert.{notice.notice_id}.failed@authority.example>"
    reply.set_content("Looked into it, the address is fixed now. Thanks.")

    with capture_logs() as logs:
        await _service(store, clock, alerts).handle_mail(bytes(reply), source="email:smtp")

    [after] = await store.get_notices([notice.notice_id])
    assert (after.state, after.acknowledged_at) == (NoticeState.DELIVERED, None)
    assert not [e for e in logs if e["event"] == "ack.received"]


async def test_a_bounced_reminder_leaves_the_notice_delivered_and_alerts_operations(store: SqlStore) -> None:
    clock, alerts = SimulatedClock(), RecordingAlerts()
    notice = await delivered_notice(store, clock)
    service = _service(store, clock, alerts)
    await clock.advance(timedelta(hours=20))

    with capture_logs() as logs:
        decision = await service.bounce(
            notice.notice_id, message="reminder", status="5.1.1", source="email:smtp"
        )

    assert decision is not None and not decision.changes_anything
    [after] = await store.get_notices([notice.notice_id])
    assert (after.state, after.delivered_at, after.attempts) == (
        NoticeState.DELIVERED,
        notice.delivered_at,
        notice.attempts,
    )
    assert alerts.keys == [f"{notice.notice_id}.reminder.bounced"]
    assert [e["event"] for e in logs] == ["reminder.bounced"]


async def test_a_hard_bounce_of_the_notice_without_a_fallback_fails_it(store: SqlStore) -> None:
    clock, alerts = SimulatedClock(), RecordingAlerts()
    notice = await delivered_notice(store, clock)

    await _service(store, clock, alerts).bounce(
        notice.notice_id, message=None, status="5.1.1", source="email:smtp"
    )

    [after] = await store.get_notices([notice.notice_id])
    assert (after.state, after.delivered_at) == (NoticeState.FAILED, None)
    assert [n.notice_id for n in await store.unalerted_failures(limit=5)] == [notice.notice_id]


async def test_a_platforms_reply_keeps_what_the_receiving_server_said_of_its_dkim_signature(
    store: SqlStore,
) -> None:
    clock, alerts = SimulatedClock(), RecordingAlerts()
    notice = await delivered_notice(store, clock)
    reply = EmailMessage()
    # The topmost header is the authority's own server's; the one below came with the message.
    reply["Authentication-Results"] = (
        "mx.authority.example (Postfix); dkim=pass (2048-bit key; unprotected) header.d=telegram.org "
        'header.i=@telegram.org header.s=mail header.b="Ab3dEf"; spf=pass smtp.mailfrom=abuse@telegram.org'
    )
    reply["Authentication-Results"] = "mx.authority.example; dkim=fail header.d=forged.example"
    reply["From"] = "abuse@telegram.org"
    reply["To"] = "takedown@authority.example"
    reply["Subject"] = f"Re: Takedown notice {notice.notice_id}"
    reply["In-Reply-To"] = f"<{notice.notice_id}.notice@authority.example>"
    reply.set_content("Thank you, we have received your report and are reviewing it.")

    await _service(store, clock, alerts).handle_mail(bytes(reply), source="email:imap")

    [ack] = await store.ack_history(notice.notice_id, limit=5)
    assert (ack.source, ack.by, ack.entered_at) == ("email:imap", None, None)
    assert ack.dkim == "mx.authority.example: dkim=pass header.d=telegram.org header.i=@telegram.org"


def _reply(subject: str, body: str = "Thanks, we are looking into it.") -> bytes:
    reply = EmailMessage()
    reply["From"] = "abuse@t.example"
    reply["To"] = "takedown@authority.example"
    reply["Subject"] = subject
    reply.set_content(body)
    return bytes(reply)


async def test_unmatched_mail_over_smtp_is_kept_as_a_dead_letter_with_the_reason(store: SqlStore) -> None:
    clock, alerts = SimulatedClock(), RecordingAlerts()
    raw = _reply("A question about something else")

    await _service(store, clock, alerts).handle_mail(raw, source="email:smtp")
    await _service(store, clock, alerts).handle_mail(raw, source="email:smtp")  # its 250 was lost

    [letter] = await store.dead_letters()
    assert (letter.source, letter.body) == ("email:smtp", raw)
    assert letter.reason.startswith("unmatched mail (unrelated): ")


async def test_mail_over_smtp_about_a_notice_that_is_not_ours_is_kept_as_a_dead_letter(
    store: SqlStore,
) -> None:
    clock, alerts = SimulatedClock(), RecordingAlerts()
    raw = _reply("Re: [TD-telegram-20991231-000001] Takedown notice")

    await _service(store, clock, alerts).handle_mail(raw, source="email:smtp")

    [letter] = await store.dead_letters()
    assert letter.reason == (
        "unmatched mail (human): about TD-telegram-20991231-000001, which is no notice of ours"
    )


async def test_unmatched_mail_read_over_imap_stays_in_its_mailbox_and_is_not_dead_lettered(
    store: SqlStore,
) -> None:
    clock, alerts = SimulatedClock(), RecordingAlerts()

    await _service(store, clock, alerts).handle_mail(_reply("Something else"), source="email:imap")

    assert await store.dead_letters() == []


async def test_a_mail_whose_handling_fails_is_kept_with_the_reason_instead_of_refused_forever(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock, alerts = SimulatedClock(), RecordingAlerts()

    def broken(raw: bytes, **_: object) -> None:
        raise KeyError("a victim's name that must not be logged")

    monkeypatch.setattr("notifier.services.acks.classify", broken)
    raw = _reply("Re: anything")
    with capture_logs() as logs:
        await _service(store, clock, alerts).handle_mail(raw, source="email:imap")

    [letter] = await store.dead_letters()
    assert letter.body == raw
    assert letter.reason.startswith("mail could not be handled (KeyError at test_ack_service_mail.py:")
    assert "victim" not in repr(logs)


async def test_a_reply_enters_the_evidence_record_under_the_notice_it_answers(store: SqlStore) -> None:
    clock, alerts = SimulatedClock(), RecordingAlerts()
    notice = await delivered_notice(store, clock)
    reply = EmailMessage()
    reply["From"] = "abuse@telegram.org"
    reply["To"] = "takedown@authority.example"
    reply["Subject"] = f"Re: Takedown notice {notice.notice_id}"
    reply["In-Reply-To"] = f"<{notice.notice_id}.notice@authority.example>"
    reply.set_content("Thank you, we have received your report and are reviewing it.")
    raw = bytes(reply)

    await _service(store, clock, alerts).handle_mail(raw, source="email:imap")

    received = [e for e in await store.ledger_for_notice(notice.notice_id) if e.kind == "mail.received"]
    assert [e.payload_sha256 for e in received] == [hashlib.sha256(raw).hexdigest()]
    assert [e.kind for e in await store.ledger_for_notice(notice.notice_id)].count("ack") == 1
