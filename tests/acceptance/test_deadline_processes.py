"""Deadline profiles on the real daemon in real time (SPEC §14, §7): two ``notifier run`` processes
on one PostgreSQL store and one RabbitMQ queue, profiles of seconds, a platform that never answers.

Requests of two profiles reach the same platform at the same moment: a one-hour-like order (4 s,
urgent) and a 36-hour-like request (8 s). They leave in different notices; each notice is reminded
at its own profile's reminder point and breached just past its own bound, each decision taken once
across both processes (one row per notice and kind, ``sla.breach`` logged once), and every
reminder and escalation sent at least once, in the notice's thread.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from notifier.domain.models import RequestState
from notifier.domain.sla import PLATFORM_BREACHES, SlaKind
from notifier.sandbox.smtp import SmtpSink
from notifier.settings import load_settings
from notifier.store import create_store
from notifier.wiring import create_queue
from tests.acceptance.harness import Daemons, write_config
from tests.acceptance.test_sla_scenarios import _after_seconds, of_kind, smtp_section
from tests.waiting import wait_for

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq]

TICK = timedelta(microseconds=1)
BOUNDS = {"order": timedelta(seconds=4), "day": timedelta(seconds=8)}
REMIND_AT = 0.5

PROFILES = """
[deadlines.order]
label = "Removal order, in seconds: 4 s"
ack_within = "4s"
removal_within = "4s"
remind_at = 0.5
urgent = true

[deadlines.day]
label = "A day and a half, in seconds: 8 s"
ack_within = "8s"
removal_within = "8s"
remind_at = 0.5
"""

SILENT = """
[platforms.silent]
name = "Silent"
channel = "email"
[platforms.silent.email]
to = ["abuse@silent.example"]
[platforms.silent.escalation]
email = ["escalations@silent.example"]
[platforms.silent.batch]
max_items = 2
max_wait = "1s"
[platforms.silent.sla]
ack_within = "1h"
removal_within = "1h"
"""


def request_body(request_id: str, deadline: str) -> bytes:
    return json.dumps(
        {
            "request_id": request_id,
            "platform": "silent",
            "urls": [f"https://silent.example/v/{request_id}"],
            "category": "deepfake_sexual_abuse",
            "deadline": deadline,
            "legal_basis": "Act on the Korea Communications Commission, Art. 21(4)",
            "explanation": "Synthetic sexual imagery of an identifiable person made without consent.",
        }
    ).encode()


async def test_each_profile_is_reminded_and_breached_on_its_own_bound_decided_once_by_two_daemons(
    tmp_path: Path,
    daemons: Daemons,
    postgres_url: str,
    amqp_server: str,
    queue_name: str,
    amqp_cleanup: list[str],
) -> None:
    amqp_cleanup.extend([queue_name, f"{queue_name}.acks"])
    sink = await SmtpSink().start()
    try:
        config = write_config(
            tmp_path,
            store_url=postgres_url,
            queue_url=amqp_server,
            requests_queue=queue_name,
            acks_queue=f"{queue_name}.acks",
            http_listen="",
            runtime='grace = "5s"\nlease = "3s"\nin_call_retry_wait = "0.05s"',
            # The URLs do not resolve here: checks would only add inconclusive rows.
            extra=smtp_section(sink) + PROFILES + "\n[verify]\nenabled = false\n",
            platforms=SILENT,
        )
        wanted = {f"order-{i}": "order" for i in range(3)} | {f"day-{i}": "day" for i in range(4)}
        queue = create_queue(load_settings(config))
        await queue.connect()
        try:
            await queue.publish(queue_name, [request_body(r, d) for r, d in wanted.items()])
        finally:
            await queue.close()

        store = await create_store(postgres_url)
        try:
            pair = [daemons.start(config, f"daemon-{n}") for n in (1, 2)]

            async def delivered() -> bool:
                daemons.assert_alive(*pair)
                found = await store.get_requests(list(wanted))
                return len(found) == len(wanted) and all(r.state is RequestState.DELIVERED for r in found)

            await wait_for(delivered, within=30, what="every request delivered")
            stored = {r.request.request_id: r for r in await store.get_requests(list(wanted))}
            notices = {
                n.notice_id: n for n in await store.get_notices([r.notice_id or "" for r in stored.values()])
            }

            async def all_escalated() -> bool:
                daemons.assert_alive(*pair)
                decisions = await store.sla_decisions(list(notices))
                escalated = of_kind(sink.received, "escalation")
                return (
                    len(decisions) == 3 * len(notices)
                    and all(d.sent_at is not None for d in decisions)
                    and set(escalated) == set(notices)
                )

            await wait_for(all_escalated, within=40, what="a reminder and two breaches per notice")
            # Both monitors look again (each at least once a second): nothing more is decided.
            before = await store.sla_decisions(list(notices))
            await wait_for(_after_seconds(2.5), within=5, what="2.5 more seconds of both monitors")
            decisions = await store.sla_decisions(list(notices))
            assert decisions == before
            for process in pair:
                process.send_signal(signal.SIGTERM)
            for process in pair:
                assert await asyncio.to_thread(process.wait, 30) == 0, daemons.tail(process)
        finally:
            await store.close()
    finally:
        await sink.stop()

    # A notice holds one profile; the order (urgent) never shares a notice with the slower ones.
    profile_of = {n.notice_id: n.deadline for n in notices.values()}
    for request_id, deadline in wanted.items():
        assert profile_of[stored[request_id].notice_id or ""] == deadline, request_id
    assert all(len(n.request_ids) <= 2 for n in notices.values())  # batch.max_items
    assert set(profile_of.values()) == {"order", "day"}

    # Each decided once, due on its own profile's bound, from the notice's delivery.
    kinds = Counter((d.notice_id, d.kind) for d in decisions)
    assert kinds == Counter({(n, k): 1 for n in notices for k in (SlaKind.REMINDER, *PLATFORM_BREACHES)})
    for decision in decisions:
        notice = notices[decision.notice_id]
        assert notice.delivered_at is not None and notice.deadline is not None
        bound = BOUNDS[notice.deadline]
        expected = bound * REMIND_AT if decision.kind is SlaKind.REMINDER else bound + TICK
        assert decision.due_at - notice.delivered_at == expected, (decision.notice_id, decision.kind)
        assert decision.decided_at >= decision.due_at

    # Logged once per kind and notice across both processes; each message sent at least once,
    # at most once per process, in the notice's thread.
    breaches = Counter((e["notice_id"], e["kind"]) for e in daemons.events("sla.breach"))
    assert breaches == Counter({(n, k.value): 1 for n in notices for k in PLATFORM_BREACHES})
    assert Counter(e["notice_id"] for e in daemons.events("sla.reminder")) == Counter(
        dict.fromkeys(notices, 1)
    )
    reminders, escalations = of_kind(sink.received, "reminder"), of_kind(sink.received, "escalation")
    assert set(reminders) == set(escalations) == set(notices)
    assert max(reminders.values()) <= 2 and max(escalations.values()) <= 2
