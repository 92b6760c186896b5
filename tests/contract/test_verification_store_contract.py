"""The verification side of the store (:class:`notifier.ports.VerificationStore`), on SQLite and
PostgreSQL alike: check timers claimed in due order, rounds kept without content, follow-ups
numbered per notice and sent once, the report's rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from notifier.clock import SimulatedClock
from notifier.domain.models import RequestState
from notifier.domain.notices import Attempt, AttemptOutcome, SendResult
from notifier.domain.verification import CheckOutcome, UrlCheck
from notifier.ports import Followup, Store, VerifyUpdate
from tests.unit.test_verification_service import Platform, claim_removed, delivered_notice, incoming

LEASE = timedelta(minutes=5)


def _check(url: str, at: datetime, outcome: CheckOutcome = CheckOutcome.REMOVED) -> UrlCheck:
    return UrlCheck(
        at=at,
        url=url,
        outcome=outcome,
        http_status=404 if outcome is CheckOutcome.REMOVED else 200,
        final_url=url,
        bytes_read=9,
        sha256="0" * 64,
        rule="status:404" if outcome is CheckOutcome.REMOVED else "status:200",
    )


async def test_a_delivery_starts_the_timer_and_a_claim_of_removal_brings_it_forward(store: Store) -> None:
    clock, site = SimulatedClock(), Platform(port=9)
    notice_id = await delivered_notice(store, clock, site, ["a", "b"])
    delivered = clock.now()
    assert await store.next_verify_due() == delivered

    claims = await store.claim_verify_due(now=delivered, lease=LEASE, limit=10)
    assert [(c.request_id, c.urls, c.facts.state) for c in claims] == [
        ("r-a", (site.url("a"),), RequestState.DELIVERED),
        ("r-b", (site.url("b"),), RequestState.DELIVERED),
    ]
    assert await store.claim_verify_due(now=delivered, lease=LEASE, limit=10) == []  # leased
    later = delivered + timedelta(hours=24)
    await store.record_rounds(
        [
            VerifyUpdate(
                request_id=claim.request_id,
                platform=claim.platform,
                checks=(),
                checked_at=None,
                next_at=later,
                claimed_until=claim.claimed_until,
            )
            for claim in claims
        ]
    )
    assert await store.next_verify_due() == later

    await clock.advance(timedelta(hours=2))
    await claim_removed(store, notice_id, clock.now())
    assert await store.next_verify_due() == clock.now()
    [again, _] = await store.claim_verify_due(now=clock.now(), lease=LEASE, limit=10)
    assert (again.facts.state, again.facts.resolved_at) == (RequestState.REMOVED, clock.now())


async def test_a_delivery_given_its_first_check_time_sets_the_timer_there(store: Store) -> None:
    """The dispatcher knows the platform's schedule: its delivery sets each request's first check,
    so no round has to claim every request just delivered only to move its timer."""
    clock, site = SimulatedClock(), Platform(port=9)
    now = clock.now()
    await store.ingest([incoming(site, "a"), incoming(site, "b")], [], now=now)
    await store.form_notice("telegram", max_items=50, channel="email", now=now, deliver_by=now + LEASE)
    [claimed] = await store.claim_due(owner="w", now=now, lease=LEASE, limit=1)
    first_check = now + timedelta(hours=18)
    attempt = Attempt(at=now, channel="email", outcome=AttemptOutcome.DELIVERED, code=250)
    assert await store.record_delivery(
        claimed.notice_id,
        owner="w",
        attempt=attempt,
        result=SendResult(code=250),
        channel="email",
        first_check_at=first_check,
    )
    assert await store.next_verify_due() == first_check
    assert await store.claim_verify_due(now=first_check - timedelta(seconds=1), lease=LEASE, limit=10) == []
    due = await store.claim_verify_due(now=first_check, lease=LEASE, limit=10)
    assert [(c.request_id, c.facts.delivered_at) for c in due] == [("r-a", now), ("r-b", now)]


async def test_a_round_keeps_its_checks_newest_first_and_verifies_once(store: Store) -> None:
    clock, site = SimulatedClock(), Platform(port=9)
    notice_id = await delivered_notice(store, clock, site, ["a"])
    first = clock.now() + timedelta(hours=1)
    for n, outcome in enumerate([CheckOutcome.LIVE, CheckOutcome.REMOVED, CheckOutcome.REMOVED]):
        at = first + timedelta(hours=n)
        await store.record_rounds(
            [
                VerifyUpdate(
                    request_id="r-a",
                    platform="telegram",
                    checks=(_check(site.url("a"), at, outcome),),
                    checked_at=at,
                    next_at=at + timedelta(days=1),
                    claimed_until=None,
                    verified_removed_at=at if outcome is CheckOutcome.REMOVED else None,
                    verify_last=outcome.value,
                    contradicted_at=at if outcome is CheckOutcome.LIVE else None,
                )
            ]
        )

    found = await store.request_verification("r-a", checks=2)
    assert found is not None
    assert found.verified_removed_at == first + timedelta(hours=1)  # the first that saw it gone
    assert found.false_claims == 1
    assert [(c.at, c.outcome) for c in found.checks] == [
        (first + timedelta(hours=2), CheckOutcome.REMOVED),
        (first + timedelta(hours=1), CheckOutcome.REMOVED),
    ]
    [target] = await store.verify_targets([notice_id])
    assert target.request_id == "r-a"
    assert target.claimed_until is None
    [row] = await store.verification_rows(since=None, until=None, platforms=["telegram"])  # type: ignore[attr-defined]
    assert (row.verified_removed_at, row.false_claims, row.reappeared) == (
        first + timedelta(hours=1),
        1,
        False,
    )


async def test_followups_are_numbered_per_notice_and_marked_sent_once(store: Store) -> None:
    at = datetime(2024, 9, 3, tzinfo=UTC)
    one = await store.add_followup("TD-x-1", kind="contradicted", request_ids=["r1"], urls=["u1"], at=at)
    two = await store.add_followup("TD-x-1", kind="reappeared", request_ids=["r2"], urls=["u2"], at=at)
    other = await store.add_followup("TD-y-1", kind="contradicted", request_ids=["r3"], urls=["u3"], at=at)
    assert (one, two, other) == (1, 2, 1)
    with_round = Followup(
        notice_id="TD-x-1", seq=0, kind="contradicted", request_ids=("r4",), urls=("u4",), decided_at=at
    )
    assert await store.record_rounds([], [with_round]) == [3]
    assert await store.renoticed("r2")
    assert not await store.renoticed("r1")

    await store.mark_followup_sent("TD-x-1", 1, at=at, message_ref="<first>")
    await store.mark_followup_sent("TD-x-1", 1, at=at + timedelta(hours=1), message_ref="<again>")

    unsent = await store.followups(unsent_only=True)
    assert [(f.notice_id, f.seq) for f in unsent] == [("TD-x-1", 2), ("TD-x-1", 3), ("TD-y-1", 1)]
    [sent] = [f for f in await store.followups(unsent_only=False) if f.sent_at is not None]
    assert (sent.sent_at, sent.message_ref, sent.urls) == (at, "<first>", ("u1",))


async def test_a_round_that_only_moves_a_timer_changed_since_its_claim_writes_nothing(store: Store) -> None:
    clock, site = SimulatedClock(), Platform(port=9)
    notice_id = await delivered_notice(store, clock, site, ["a"])
    [claim] = await store.claim_verify_due(now=clock.now(), lease=LEASE, limit=10)
    # Meanwhile the platform says removed: the request's timer moves, and the claim's no longer holds.
    await clock.advance(timedelta(minutes=1))
    await claim_removed(store, notice_id, clock.now())
    moved_to = await store.next_verify_due()

    await store.record_rounds(
        [
            VerifyUpdate(
                request_id=claim.request_id,
                platform=claim.platform,
                checks=(),
                checked_at=None,
                next_at=clock.now() + timedelta(days=1),
                claimed_until=claim.claimed_until,
            )
        ]
    )

    assert await store.next_verify_due() == moved_to  # the newer timer is kept
