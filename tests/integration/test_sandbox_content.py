"""The sandbox's content server, fetched by the real prober through the sandbox's names (no DNS):
posts are up until the staff take them down, then answer the way their platform shows removed
content; a false claim leaves the post up; a silent platform removes exactly its share; a post
set to come back is up again when its time comes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from notifier.channels.prober import Prober, ProberOptions
from notifier.clock import SimulatedClock
from notifier.domain.verification import CheckOutcome, VerifyRules
from notifier.sandbox.behaviour import Record
from notifier.sandbox.content import ContentServer, Takedowns
from notifier.sandbox.timeline import Timeline

START = datetime(2024, 9, 2, 0, 0, tzinfo=UTC)
CHAT, VIDEO = "http://t.me/channel_01/{}", "http://videohost.example/watch?v={}"
UNAVAILABLE = VerifyRules.build(removed_markers=["(?i)this (post|channel) is (unavailable|private)"])


@dataclass
class World:
    clock: SimulatedClock = field(default_factory=lambda: SimulatedClock(START))
    timeline: Timeline = field(default_factory=Timeline)
    record: Record = field(default_factory=Record)


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
async def content(world: World) -> AsyncIterator[ContentServer]:
    server = ContentServer(
        timeline=world.timeline,
        clock=world.clock,
        record=world.record,
        seed=3,
        takedowns=Takedowns(
            removed_status={"chat": 200, "video": 404},
            false_claims=frozenset({"r-kept"}),
            quiet_share={"quiet": 0.5},
            comes_back={"r-back": timedelta(days=6)},
        ),
    )
    for request_id in ("r-1", "r-back"):
        server.publish(f"http://t.me/channel_01/{request_id}", platform="chat", request_id=request_id)
    for request_id in ("r-2", "r-kept"):
        server.publish(
            f"http://videohost.example/watch?v={request_id}", platform="video", request_id=request_id
        )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def prober(content: ContentServer) -> AsyncIterator[Prober]:
    options = ProberOptions(user_agent="notifier-test", allow_private=True, timeout=5.0)
    async with Prober(options, resolver=content.resolver()) as opened:
        yield opened


async def _outcome(prober: Prober, url: str, rules: VerifyRules = UNAVAILABLE) -> CheckOutcome:
    return (await prober.check(url, rules, at=START)).outcome


async def test_a_post_taken_down_answers_as_its_platform_shows_removed_content(
    content: ContentServer, prober: Prober
) -> None:
    chat, video = CHAT.format("r-1"), VIDEO.format("r-2")
    assert await _outcome(prober, chat) is CheckOutcome.LIVE
    assert await _outcome(prober, video) is CheckOutcome.LIVE
    content.take_down("chat", "n-1", ["r-1"])
    content.take_down("video", "n-2", ["r-2"])
    check = await prober.check(chat, UNAVAILABLE, at=START)
    assert (check.outcome, check.http_status) == (CheckOutcome.REMOVED, 200)  # the unavailable page
    check = await prober.check(video, VerifyRules(), at=START)
    assert (check.outcome, check.http_status) == (CheckOutcome.REMOVED, 404)
    # Only the platforms' hosts are known: any other name is not looked up anywhere.
    stranger = await prober.check("http://elsewhere.example/x", VerifyRules(), at=START)
    assert (stranger.outcome, stranger.reason) == (CheckOutcome.INCONCLUSIVE, "dns")


async def test_a_false_claim_leaves_the_post_up_and_is_recorded(
    content: ContentServer, prober: Prober
) -> None:
    content.take_down("video", "n-2", ["r-2", "r-kept"])
    assert (
        await _outcome(prober, "http://videohost.example/watch?v=r-kept", VerifyRules()) is CheckOutcome.LIVE
    )
    assert (
        await _outcome(prober, "http://videohost.example/watch?v=r-2", VerifyRules()) is CheckOutcome.REMOVED
    )
    done = {(a.what, a.request_ids) for a in content._record.actions}
    assert done == {("taken_down", ("r-2",)), ("left_up", ("r-kept",))}


async def test_a_post_set_to_come_back_is_up_again_six_days_after_its_removal(
    world: World, content: ContentServer, prober: Prober
) -> None:
    timeline, clock = world.timeline, world.clock
    content.take_down("chat", "n-1", ["r-back"])
    assert not content.live("r-back")
    assert timeline.next_at == START + timedelta(days=6)
    await clock.advance(timedelta(days=6))
    assert await timeline.run_due(clock.now()) == 1
    assert content.live("r-back")
    assert await _outcome(prober, CHAT.format("r-back")) is CheckOutcome.LIVE


async def test_a_silent_platform_quietly_removes_exactly_its_share() -> None:
    clock, timeline, record = SimulatedClock(START), Timeline(), Record()
    server = ContentServer(
        timeline=timeline, clock=clock, record=record, seed=9, takedowns=Takedowns(quiet_share={"quiet": 0.5})
    )
    ids = [f"q-{n}" for n in range(10)]
    for request_id in ids:
        server.publish(f"http://streamly.example/v/{request_id}", platform="quiet", request_id=request_id)
    server.received("quiet", "n-q", ids)
    await clock.advance(timedelta(days=2))
    await timeline.run_due(clock.now())
    assert sum(not server.live(r) for r in ids) == 5
    assert {a.what for a in record.actions} == {"taken_down"}
