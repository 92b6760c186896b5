"""Bounces by message, end to end (issue 9): real RFC 3464 reports to the daemon's inbound SMTP.

Each bounce is a Postfix report from the mail corpus, rewritten to return one message the sink took
in: sent to the VERP envelope sender that message left with, its delivery-status saying what the
platform's server answered, its ``text/rfc822-headers`` part carrying the message's own headers.

* A bounced reminder and a bounced escalation leave the notice delivered with its first
  ``delivered_at``; no second copy goes out, the breach stands in the report, operations are told.
* A recipient that rejects every message (5.1.1) fails the notice after one send, with the alert;
  with a fallback, the notice goes there after one send, and a late report about the old email
  changes nothing; a bounce of the fallback email fails it.
* One that keeps deferring (4.2.2) is retried and stops at ``deliver_within`` from creation.
* A report that the mail is only delayed changes nothing.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import aiosmtplib
import pytest

from notifier.app import Daemon
from notifier.clock import SimulatedClock
from notifier.domain.models import NoticeState, RequestState
from notifier.domain.notices import Notice
from notifier.sandbox.api import Answer, PlatformApi
from notifier.sandbox.smtp import Received, SmtpSink
from notifier.services.report import build_report, platform_bounds
from notifier.settings import load_settings
from notifier.store import SqlStore
from tests.acceptance.harness import write_config
from tests.conftest import MAIL_CORPUS
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(180)

DOMAIN = "authority.example"
OPS = "ops@authority.example"
BOUND = timedelta(hours=2)
DELIVER_WITHIN = timedelta(minutes=30)
TEMPLATE = MAIL_CORPUS / "bounces" / "lhost-postfix-43.eml"

PLATFORMS = """
[platforms.silent]
name = "Silent"
channel = "email"
[platforms.silent.email]
to = ["abuse@silent.example"]
[platforms.silent.escalation]
email = ["legal@silent.example"]
[platforms.silent.batch]
max_items = 1
[platforms.silent.sla]
ack_within = "{bound_s}s"
removal_within = "{bound_s}s"
remind_at = 0.5

[platforms.dead]
name = "Dead"
channel = "email"
[platforms.dead.email]
to = ["nobody@dead.example"]
[platforms.dead.batch]
max_items = 1

[platforms.deferring]
name = "Deferring"
channel = "email"
[platforms.deferring.email]
to = ["full@deferring.example"]
[platforms.deferring.batch]
max_items = 1

[platforms.mailfirst]
name = "MailFirst"
channel = "email"
fallback = "api"
[platforms.mailfirst.email]
to = ["gone@mailfirst.example"]
[platforms.mailfirst.api]
url = "{api_url}"
[platforms.mailfirst.batch]
max_items = 1

[platforms.apifirst]
name = "ApiFirst"
channel = "api"
fallback = "email"
[platforms.apifirst.api]
url = "{api_url}"
[platforms.apifirst.email]
to = ["gone@apifirst.example"]
[platforms.apifirst.batch]
max_items = 1
"""


class World:
    """A daemon on a simulated clock, its mail going to the sink, bounces coming back over inbound SMTP."""

    def __init__(self, tmp_path: Path, sink: SmtpSink, api: PlatformApi) -> None:
        database = tmp_path / "var" / "notifier.db"
        self.sink = sink
        self.api = api
        self.config = write_config(
            tmp_path,
            store_url=f"sqlite:///{database}",
            queue_url=f"sqlite:///{database}",
            http_listen="",
            runtime='grace = "5s"\nin_call_retry_wait = "0.01"',
            extra=f"""
[smtp]
host = "127.0.0.1"
port = {sink.port}
starttls = "off"
from = "takedown@{DOMAIN}"

[sla]
deliver_within = "{int(DELIVER_WITHIN.total_seconds())}s"

[inbound_smtp]
listen = "127.0.0.1:0"
""",
            platforms=PLATFORMS.format(api_url=api.url, bound_s=int(BOUND.total_seconds())),
        )
        self.settings = load_settings(self.config)
        self.clock = SimulatedClock()
        self.daemon = Daemon(self.settings, clock=self.clock)

    async def submit(self, request_id: str, platform: str) -> str:
        """Submit one request and return the id of the notice it was put in (once it is sent)."""
        assert self.daemon.queue is not None and self.daemon.store is not None
        store = self.daemon.store
        body = {
            "request_id": request_id,
            "platform": platform,
            "urls": [f"https://{platform}.example/p/{request_id}"],
            "category": "deepfake_sexual_abuse",
        }
        await self.daemon.queue.publish("takedown.requests", [json.dumps(body).encode()])

        async def in_notice() -> bool:
            found = await store.get_requests([request_id])
            return bool(found) and found[0].notice_id is not None

        await wait_for(in_notice, within=30, what=f"{request_id} in a notice")
        (stored,) = await store.get_requests([request_id])
        assert stored.notice_id is not None
        return stored.notice_id

    async def delivered(self, request_id: str, platform: str) -> Notice:
        notice_id = await self.submit(request_id, platform)

        async def sent() -> bool:
            return (await self.notice(notice_id)).state is NoticeState.DELIVERED

        await wait_for(sent, within=30, what=f"notice {notice_id} delivered")
        return await self.notice(notice_id)

    async def notice(self, notice_id: str) -> Notice:
        assert self.daemon.store is not None
        (notice,) = await self.daemon.store.get_notices([notice_id])
        return notice

    async def request_states(self, notice: Notice) -> set[RequestState]:
        assert self.daemon.store is not None
        return {r.state for r in await self.daemon.store.get_requests(list(notice.request_ids))}

    async def bounce(self, returned: Received, *, status: str, action: str = "failed") -> None:
        """Send the report about ``returned`` to its VERP sender; the listener answers once the
        daemon has taken it in (and acted on it)."""
        assert self.daemon.inbound_smtp is not None
        report = postfix_report(returned, status=status, action=action)
        async with aiosmtplib.SMTP(
            hostname="127.0.0.1", port=self.daemon.inbound_smtp.port, start_tls=False
        ) as client:
            await client.sendmail("", [returned.sender], report)  # a bounce's null sender

    async def advance_to(self, at: datetime) -> None:
        if at > self.clock.now():
            await self.clock.advance(at - self.clock.now())

    def bounced(self, platform: str, message: str, step: str) -> float:
        value = self.daemon.metrics.registry.get_sample_value(
            "notifier_bounces_total", {"platform": platform, "message": message, "step": step}
        )
        return value or 0.0

    # -- what the sink took in --------------------------------------------------------------------

    def with_message_id(self, message_id: str) -> list[Received]:
        return [r for r in self.sink.received if str(r.message()["Message-ID"]).strip() == message_id]

    def copies_of_notice(self, notice: Notice) -> list[Received]:
        assert notice.message_id is not None
        return self.with_message_id(notice.message_id)

    def alerts(self) -> list[Received]:
        return [r for r in self.sink.received if r.recipients == (OPS,)]

    async def one(self, message_id: str, what: str) -> Received:
        async def arrived() -> bool:
            return len(self.with_message_id(message_id)) >= 1

        await wait_for(arrived, within=30, what=what)
        (found,) = self.with_message_id(message_id)
        return found


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    sink = await SmtpSink().start()
    api = await PlatformApi().start()
    w = World(tmp_path, sink, api)
    await w.daemon.start()
    try:
        yield w
    finally:
        w.daemon.stop()
        assert await w.daemon.wait() == 0
        await api.stop()
        await sink.stop()


def postfix_report(returned: Received, *, status: str, action: str) -> bytes:
    """A real Postfix RFC 3464 report (multipart/report; report-type=delivery-status), rewritten to
    return ``returned``: to its envelope sender, about its first recipient, with its headers."""
    recipient = returned.recipients[0]
    head = returned.data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode()
    code = "550" if status.startswith("5.") else "452"
    if action == "delayed":
        subject, summary = "Delayed Mail (still being retried)", "delivery temporarily suspended"
    else:
        subject, summary = "Undelivered Mail Returned to Sender", "Recipient address rejected"
    diagnostic = f"smtp; {code} {status} <{recipient}>: {summary}"
    text = TEMPLATE.read_text(encoding="utf-8")
    original_head = text[text.index("Return-Path: <nekonyaan@") : text.index("\n\nNyaan\n")]
    for old, new in (
        ("Envelope-to: nekonyaan@p.example.com", f"Envelope-to: {returned.sender}"),
        ("for nekonyaan@p.example.com;", f"for {returned.sender};"),
        ("To: nekonyaan@p.example.com", f"To: {returned.sender}"),
        ("X-Postfix-Sender: rfc822; nekonyaan@p.example.com", f"X-Postfix-Sender: rfc822; {returned.sender}"),
        ("Subject: Undelivered Mail Returned to Sender", f"Subject: {subject}"),
        ("<kijitora@example.net>: temporary failure", f"<{recipient}>: {summary}"),
        ("Final-Recipient: rfc822; kijitora@example.net", f"Final-Recipient: rfc822; {recipient}"),
        ("Action: failed", f"Action: {action}"),
        ("Status: 4.3.0", f"Status: {status}"),
        ("Diagnostic-Code: x-unix; temporary failure", f"Diagnostic-Code: {diagnostic}"),
        (original_head, head),
        ("\n\nNyaan\n", "\n"),
    ):
        assert old in text, old
        text = text.replace(old, new, 1)
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def message_id(notice_id: str, tag: str) -> str:
    return f"<{notice_id}.{tag}@{DOMAIN}>"


# -- a bounced reminder, a bounced escalation -----------------------------------------------------


async def test_a_bounced_reminder_and_escalation_leave_the_notice_delivered_and_tell_operations(
    world: World,
) -> None:
    notice = await world.delivered("quiet-1", "silent")
    first_delivery = notice.delivered_at
    assert first_delivery is not None
    assert len(world.copies_of_notice(notice)) == 1

    # Half the bound: the reminder, with a VERP sender of its own.
    await world.advance_to(first_delivery + BOUND / 2)
    reminder = await world.one(message_id(notice.notice_id, "reminder"), "the reminder sent")
    assert reminder.sender == f"bounces+{notice.notice_id}.reminder@{DOMAIN}"
    await world.bounce(reminder, status="5.1.1")

    after = await world.notice(notice.notice_id)
    assert after.state is NoticeState.DELIVERED
    assert after.delivered_at == first_delivery
    assert after.attempts == notice.attempts
    assert await world.request_states(after) == {RequestState.DELIVERED}
    assert world.bounced("silent", "reminder", "contact_bounced") == 1
    (alert,) = world.alerts()
    assert "reminder" in str(alert.message()["Subject"])
    assert notice.notice_id in str(alert.message()["Subject"])
    alert_id = f"<alert.{notice.notice_id}.reminder.bounced@{DOMAIN}>"
    assert str(alert.message()["Message-ID"]).strip() == alert_id

    # The bound passes: the escalation goes to the legal contacts; it bounces too.
    await world.advance_to(first_delivery + BOUND + timedelta(seconds=1))
    escalation = await world.one(message_id(notice.notice_id, "escalation"), "the escalation sent")
    assert escalation.sender == f"bounces+{notice.notice_id}.escalation@{DOMAIN}"
    assert "legal@silent.example" in escalation.recipients
    await world.bounce(escalation, status="5.1.1")

    after = await world.notice(notice.notice_id)
    assert after.state is NoticeState.DELIVERED
    assert after.delivered_at == first_delivery
    assert after.attempts == notice.attempts
    assert world.bounced("silent", "escalation", "contact_bounced") == 1
    assert len(world.alerts()) == 2
    escalation_alert = world.alerts()[-1].message()
    assert "escalation" in str(escalation_alert["Subject"])
    assert notice.notice_id in str(escalation_alert["Subject"])

    # Nothing went out again: time moves on, the dispatcher looks, still the one copy of the notice.
    await world.clock.advance(timedelta(hours=1))
    world.daemon.dispatcher.kick()
    assert (await world.notice(notice.notice_id)).state is NoticeState.DELIVERED
    assert len(world.copies_of_notice(notice)) == 1

    # The breach stands: measured from the first delivery, neither bound was met.
    assert isinstance(world.daemon.store, SqlStore)
    report = await build_report(
        world.daemon.store,
        platform_bounds(world.settings, ["silent"]),
        now=world.clock.now(),
    )
    (silent,) = report["platforms"]
    assert (silent["requests"], silent["delivered"], silent["failed"]) == (1, 1, 0)
    assert (silent["ack_breaches"], silent["removal_breaches"]) == (1, 1)


# -- a recipient that rejects every message -------------------------------------------------------


async def test_a_hard_bounce_of_the_notice_fails_it_after_one_send_with_an_alert(world: World) -> None:
    notice = await world.delivered("dead-1", "dead")
    (copy,) = world.copies_of_notice(notice)
    assert copy.sender == f"bounces+{notice.notice_id}@{DOMAIN}"
    await world.clock.advance(timedelta(minutes=3))
    await world.bounce(copy, status="5.1.1")

    failed = await world.notice(notice.notice_id)
    assert failed.state is NoticeState.FAILED
    assert await world.request_states(failed) == {RequestState.FAILED}
    assert world.bounced("dead", "notice", "fail") == 1

    async def alerted() -> bool:
        return any(notice.notice_id in str(a.message()["Subject"]) for a in world.alerts())

    await wait_for(alerted, within=30, what="the operations alert about the failed notice")
    (alert,) = world.alerts()
    subject = str(alert.message()["Subject"])
    assert f"notice {notice.notice_id}" in subject and "failed" in subject

    # Long after: never sent again.
    await world.clock.advance(DELIVER_WITHIN * 2)
    world.daemon.dispatcher.kick()
    assert (await world.notice(notice.notice_id)).state is NoticeState.FAILED
    assert len(world.copies_of_notice(notice)) == 1


async def test_a_hard_bounce_of_the_notice_sends_it_by_the_fallback_and_a_late_copy_is_ignored(
    world: World,
) -> None:
    notice = await world.delivered("gone-1", "mailfirst")
    (copy,) = world.copies_of_notice(notice)
    await world.clock.advance(timedelta(minutes=3))
    await world.bounce(copy, status="5.1.1")

    async def on_the_api() -> bool:
        current = await world.notice(notice.notice_id)
        return current.state is NoticeState.DELIVERED and current.channel == "api"

    await wait_for(on_the_api, within=30, what="the notice delivered by the fallback API")
    fallen_back = await world.notice(notice.notice_id)
    assert fallen_back.fallback_used
    assert fallen_back.delivered_at == world.clock.now()
    assert [r.payload["notice_id"] for r in world.api.received] == [notice.notice_id]
    assert world.bounced("mailfirst", "notice", "fallback") == 1

    # Another mail server's report about the same email arrives late: the notice is on the API now.
    await world.clock.advance(timedelta(minutes=3))
    await world.bounce(copy, status="5.1.1")
    after = await world.notice(notice.notice_id)
    assert (after.state, after.channel, after.delivered_at) == (
        NoticeState.DELIVERED,
        "api",
        fallen_back.delivered_at,
    )
    assert after.attempts == fallen_back.attempts
    assert world.bounced("mailfirst", "notice", "ignore") == 1
    assert len(world.copies_of_notice(notice)) == 1
    assert len(world.api.received) == 1
    assert world.alerts() == []


async def test_a_hard_bounce_of_the_fallback_email_fails_the_notice(world: World) -> None:
    world.api.script = [Answer(400, body={"error": "bad notice"})]
    notice = await world.delivered("gone-2", "apifirst")
    assert notice.channel == "email" and notice.fallback_used
    (copy,) = world.copies_of_notice(notice)
    await world.bounce(copy, status="5.1.1")

    failed = await world.notice(notice.notice_id)
    assert failed.state is NoticeState.FAILED
    assert await world.request_states(failed) == {RequestState.FAILED}

    async def alerted() -> bool:
        return any(notice.notice_id in str(a.message()["Subject"]) for a in world.alerts())

    await wait_for(alerted, within=30, what="the operations alert about the failed notice")
    assert len(world.copies_of_notice(notice)) == 1
    assert world.api.requests == 1


# -- a recipient that keeps deferring --------------------------------------------------------------


async def test_soft_bounces_retry_the_notice_until_deliver_within_from_creation(world: World) -> None:
    notice_id = await world.submit("full-1", "deferring")
    created = await world.notice(notice_id)
    deliver_by = created.created_at + DELIVER_WITHIN
    assert created.deliver_by == deliver_by
    sends: list[datetime] = []  # the simulated time at which each copy was bounced

    async def given_up() -> bool:
        current = await world.notice(notice_id)
        if current.state is NoticeState.FAILED:
            return True
        copies = world.copies_of_notice(current) if current.message_id else []
        if current.state is NoticeState.DELIVERED and len(copies) > len(sends):
            sends.append(world.clock.now())
            await world.bounce(copies[-1], status="4.2.2")
        elif current.state is NoticeState.RETRYING and current.next_attempt_at is not None:
            await world.advance_to(current.next_attempt_at)
            world.daemon.dispatcher.kick()
        return False

    await wait_for(given_up, within=60, what="the deferred notice given up", interval=0.02)
    failed = await world.notice(notice_id)
    assert failed.deliver_by == deliver_by  # never reset by a bounce
    assert await world.request_states(failed) == {RequestState.FAILED}
    failed_at = failed.attempts[-1].at
    steps = [later - earlier for earlier, later in itertools.pairwise(sends)]
    assert len(sends) >= 3, "retried"
    assert len(sends) <= 10, f"sent {len(sends)} times in {DELIVER_WITHIN}"
    assert len(world.copies_of_notice(failed)) == len(sends)
    assert deliver_by <= failed_at <= deliver_by + max(steps)
    assert all(at <= deliver_by for at in sends)
    assert world.bounced("deferring", "notice", "retry") == len(sends) - 1
    assert world.bounced("deferring", "notice", "fail") == 1


# -- a delay warning ------------------------------------------------------------------------------


async def test_a_report_that_the_mail_is_only_delayed_changes_nothing(world: World) -> None:
    notice = await world.delivered("slow-1", "silent")
    (copy,) = world.copies_of_notice(notice)
    await world.clock.advance(timedelta(minutes=20))
    await world.bounce(copy, status="4.4.7", action="delayed")

    after = await world.notice(notice.notice_id)
    assert after.state is NoticeState.DELIVERED
    assert after.delivered_at == notice.delivered_at
    assert after.attempts == notice.attempts
    assert after.next_attempt_at == notice.next_attempt_at
    assert await world.request_states(after) == {RequestState.DELIVERED}
    assert world.bounced("silent", "notice", "retry") == 0
    await world.clock.advance(timedelta(minutes=5))
    world.daemon.dispatcher.kick()
    assert len(world.copies_of_notice(notice)) == 1
    assert world.alerts() == []
