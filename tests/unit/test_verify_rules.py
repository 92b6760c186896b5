"""The verification rules (SPEC §13): what one fetch's observation means, and their settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.domain.models import RequestState
from notifier.domain.verification import (
    CheckOutcome,
    InconclusiveReason,
    Observation,
    VerifyFacts,
    VerifyRules,
    VerifySchedule,
    decide,
    next_check,
)
from notifier.settings import load_settings
from tests.unit.test_settings import MINIMAL, error_of, write

RULES = VerifyRules.build(removed_markers=["unavailable"], removed_redirect=[r"/gone\b"])


@pytest.mark.parametrize(
    ("seen", "outcome", "reason", "rule"),
    [
        (Observation(http_status=404), "removed", "", "status:404"),
        (Observation(http_status=410), "removed", "", "status:410"),
        (Observation(http_status=451), "removed", "", "status:451"),
        (Observation(http_status=200, body=b"<p>post</p>"), "live", "", "status:200"),
        (Observation(http_status=200, body=b"this post is unavailable"), "removed", "", "marker:unavailable"),
        (Observation(http_status=200, final_url="https://x.ex/gone"), "removed", "", "redirect:/gone\\b"),
        (Observation(http_status=401), "inconclusive", "login_wall", "status"),
        (Observation(http_status=403), "inconclusive", "status_403", "status"),
        (Observation(http_status=429), "inconclusive", "status_429", "status"),
        (Observation(http_status=503), "inconclusive", "status_503", "status"),
        (Observation(failure=InconclusiveReason.TLS), "inconclusive", "tls", "failure"),
    ],
)
def test_each_observation_decides_one_outcome_with_its_rule(
    seen: Observation, outcome: str, reason: str, rule: str
) -> None:
    decision = decide(RULES, seen)

    assert (decision.outcome, decision.reason, decision.rule) == (CheckOutcome(outcome), reason, rule)


def test_a_marker_in_an_error_page_does_not_make_a_403_removed() -> None:
    decision = decide(RULES, Observation(http_status=403, body=b"unavailable"))

    assert decision.outcome is CheckOutcome.INCONCLUSIVE


def test_verification_defaults_follow_the_spec(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path), {})

    verify = settings.verify
    assert (verify.enabled, verify.allow_private, verify.renotice) == (True, False, True)
    assert verify.max_bytes == 256 * 1024
    assert verify.recheck_after == [timedelta(days=1), timedelta(days=7), timedelta(days=30)]
    assert all(platform.verify.removed_status == [404, 410, 451] for platform in settings.platforms.values())


def test_a_platforms_rules_and_the_recheck_intervals_come_from_the_file(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + '\n[verify]\nrecheck_after = ["2h", "3d"]\nallow_private = true\n'
        + '\n[platforms.telegram.verify]\nremoved_status = [404]\nremoved_markers = ["(?i)unavailable"]\n'
    )
    settings = load_settings(write(tmp_path, text), {})

    assert settings.verify.recheck_after == [timedelta(hours=2), timedelta(days=3)]
    assert settings.verify.allow_private is True
    assert settings.platforms["telegram"].verify.removed_status == [404]
    assert settings.platforms["telegram"].verify.removed_markers == ["(?i)unavailable"]


def test_a_marker_that_is_not_a_regular_expression_is_a_config_error(tmp_path: Path) -> None:
    text = MINIMAL + '\n[platforms.telegram.verify]\nremoved_markers = ["(unclosed"]\n'

    assert "removed_markers" in error_of(write(tmp_path, text))


def test_a_proxy_named_by_an_unset_variable_is_a_config_error(tmp_path: Path) -> None:
    text = MINIMAL + '\n[verify]\nproxy_env = "CHECK_PROXY"\n'

    assert "CHECK_PROXY" in error_of(write(tmp_path, text))
    proxied = load_settings(write(tmp_path, text), {"CHECK_PROXY": "http://proxy.internal:3128"})
    assert proxied.verify.proxy == "http://proxy.internal:3128"


@given(
    remind=st.integers(min_value=1, max_value=10_000_000),
    removal=st.integers(min_value=1, max_value=10_000_000),
)
def test_a_delivery_sets_the_first_check_of_the_schedule(remind: int, removal: int) -> None:
    schedule = VerifySchedule(
        remind_after=timedelta(seconds=remind), removal_within=timedelta(seconds=removal)
    )
    delivered = datetime(2024, 9, 2, 9, 0, tzinfo=UTC)
    facts = VerifyFacts(
        state=RequestState.DELIVERED,
        delivered_at=delivered,
        resolved_at=None,
        verified_removed_at=None,
        verify_base=None,
        checked_at=None,
    )
    assert next_check(facts, schedule) == delivered + schedule.first_after
