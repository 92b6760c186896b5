"""The chaos verifier's own rules, on made-up runs: a duplicate is excused only by an interruption
that came after the platform took the copy, and a decision at a bound is due only when the answer
came after it (either way when it came too close to tell)."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace

from notifier.sandbox.smtp import Received
from tests.chaos.driver import Disturbance, Record
from tests.chaos.plan import Bodies, Plan
from tests.chaos.services import Services
from tests.chaos.verify import _duplicates, _expected, _interrupted

NOTICE = "TD-mail_a-20261207-000001"
MESSAGE_ID = f"<{NOTICE}.notice@authority.example>"


def _email(message_id: str) -> Received:
    mail = EmailMessage()
    mail["Message-ID"] = message_id
    mail["Subject"] = f"Takedown notice [{NOTICE}]"
    mail.set_content("notice")
    return Received(sender="b@authority.example", recipients=("abuse@mail-a.example",), data=mail.as_bytes())


def _record(copies: list[tuple[float, str]], disturbances: list[Disturbance]) -> Record:
    record = Record(Plan(), Services(database="d", vhost="v"), Path("."), Bodies())
    record.emails = [(at, _email(message_id)) for at, message_id in copies]
    record.disturbances = disturbances
    return record


def test_a_copy_taken_just_before_a_kill_is_excused_one_long_before_is_not() -> None:
    kill = Disturbance("kill -9", at=100.0)
    assert _interrupted(98.0, 106.0, [kill]) == "kill -9"
    assert _interrupted(80.0, 106.0, [kill]) is None  # accepted 20 s before: recorded long since
    assert _interrupted(101.0, 106.0, [kill]) is None  # taken after the kill: by another process


def test_an_outage_excuses_copies_taken_while_it_lasted() -> None:
    down = Disturbance("SMTP sink down", at=100.0, until=115.0)
    assert _interrupted(110.0, 130.0, [down]) == "SMTP sink down"
    assert _interrupted(116.0, 130.0, [down]) is None


def test_duplicates_hold_only_with_an_interruption_and_the_same_message_id() -> None:
    stored = {NOTICE: SimpleNamespace(message_id=MESSAGE_ID)}
    excused = _duplicates(
        _record([(99.0, MESSAGE_ID), (106.0, MESSAGE_ID)], [Disturbance("kill -9", 100.0)]), stored
    )
    assert excused.holds, excused.detail
    assert "1 duplicate deliveries (1 after a kill -9)" in excused.detail
    unexcused = _duplicates(_record([(99.0, MESSAGE_ID), (106.0, MESSAGE_ID)], []), stored)
    assert not unexcused.holds
    other_id = f"<{NOTICE}.notice@elsewhere.example>"
    changed = _duplicates(
        _record([(99.0, MESSAGE_ID), (106.0, other_id)], [Disturbance("kill -9", 100.0)]), stored
    )
    assert not changed.holds


def test_a_decision_is_due_when_the_answer_came_after_the_bound() -> None:
    assert _expected(0.0, None, None, 20.0) is True
    assert _expected(0.0, 25.0, None, 20.0) is True
    assert _expected(0.0, 5.0, None, 20.0) is False
    assert _expected(0.0, 20.5, None, 20.0) is None  # too close to tell
