"""``notifier demo`` (SPEC §9): the month runs, the report tells the truth, the HTML page renders.

* The command as a newcomer runs it: exit 0, a report in which the silent platform shows breaches
  and the email platform none, the regulator's longest removal at exactly 36 h, JSON logs with the
  simulated time, and an HTML report that headless Chromium draws for every platform.
* The demo's numbers come from the daemon's store: every request's delivery, acknowledgement and
  resolution time in the store is the time the sandbox staff actually received the notice and
  answered, and the report's counts and percentiles are what the staff's own record gives,
  computed here independently.
* Verification: what the prober saw is what the sandbox's content server did. Every post taken
  down is verified removed, at the claim (or, on the silent platform, at the first check after its
  quiet removal); every post a platform said it removed but left up is a false claim chased by one
  follow-up; the post that came back is a re-appearance, re-noticed once in a new notice (a new
  notice id listing the same request), its first removal still its time to removal; no check is
  inconclusive.
* Deadlines by law: the API platform's one-hour orders are removed within the hour but one, the
  only removal breach outside the silent platform; the email platform's question stops its
  notice's removal clock for exactly the three hours the authority takes to answer it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from notifier.demo import scenario
from notifier.demo.run import DemoResult, run_demo
from notifier.domain.models import RequestState
from notifier.ports import Followup
from notifier.sandbox.staff import Action
from notifier.store import create_store
from tests.chromium import A4_CONTENT_PX, MEASURE, check_charts, report_page

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config" / "notifier.toml"
BOUND_S = 36 * 3600
FAST = "1e9"  # no pacing: as fast as the daemon goes


def _nearest_rank(values: list[int], percent: int) -> int:
    ordered = sorted(values)
    rank = max(1, -(-(percent * len(ordered)) // 100))
    return ordered[rank - 1]


def _distribution(values: list[int]) -> dict[str, int] | None:
    if not values:
        return None
    return {"p50": _nearest_rank(values, 50), "p90": _nearest_rank(values, 90), "max": max(values)}


# -- the command ----------------------------------------------------------------------------------


def test_the_demo_command_shows_the_silent_platform_breaching_and_the_email_platform_clean(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "demo"
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("NOTIFIER_CONFIG", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "notifier",
            "demo",
            "--requests",
            "80",
            "--seed",
            "3",
            "--speed",
            FAST,
            "--out",
            str(folder),
            "-c",
            str(CONFIG),
        ],
        capture_output=True,
        timeout=240,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    stdout, stderr = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, stderr[-3000:]
    for platform in ("telegram", "videohost", "clipshare", "streamly"):
        assert platform in stdout
    assert f"HTML report: {folder / 'report.html'}" in stdout
    assert f"JSON logs:   {folder / 'notifier.log.jsonl'}" in stdout

    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    figures = {p["platform"]: p for p in report["platforms"]}
    silent, email = figures["streamly"], figures["telegram"]
    assert silent["requests"] > 0
    assert silent["ack_breaches"] == silent["removal_breaches"] == silent["requests"]
    assert silent["oldest_open_s"] is not None and silent["oldest_open_s"] > BOUND_S
    assert email["requests"] == scenario.split(80)["telegram"]
    assert (email["ack_breaches"], email["removal_breaches"], email["open"]) == (0, 0, 0)
    assert email["removed"] == email["requests"]
    assert email["time_to_removal_s"]["max"] == BOUND_S  # the longest, exactly 36 h: within

    # The daemon's own JSON log lines, each stamped with the simulated time.
    lines = [json.loads(line) for line in (folder / "notifier.log.jsonl").read_text().splitlines()]
    events = defaultdict(list)
    for line in lines:
        if "sim_time" in line:
            events[line["event"]].append(line)
    # The platforms' bounds: only the silent one breaches them, and the one-hour order the API
    # platform answered late. The authority's own clock: a portal notice the demo's staff file
    # more than sla.file_within (2 h) after rendering is undelivered.
    unfiled = [e for e in events["sla.breach"] if e["kind"] == "undelivered_breach"]
    assert {e["platform"] for e in events["sla.breach"] if e not in unfiled} == {"streamly", "videohost"}
    late = [e for e in events["sla.breach"] if e["platform"] == "videohost"]
    assert [e["kind"] for e in late] == ["removal_breach"]
    assert figures["videohost"]["removal_breaches"] == 1
    assert {e["platform"] for e in unfiled} <= {"clipshare"}
    # The report counts them by request: at least one for each notice left unfiled.
    assert figures["clipshare"]["undelivered_breaches"] >= len(unfiled)
    assert (figures["clipshare"]["undelivered_breaches"] == 0) == (not unfiled)
    assert {e["platform"] for e in events["sla.escalated"]} == {"streamly", "videohost"}
    # One escalation per silent notice, and one for the late order.
    assert len(events["sla.escalated"]) == silent["notices"] + 1
    assert events["notice.bounced"], "the bouncing profile's notices bounced"
    assert all(e["sim_time"] <= "2024-10-01T15:00:00Z" for e in events["notice.delivered"])

    _renders_inrun_chromium(folder / "report.html", report, tmp_path)


def _renders_inrun_chromium(page_path: Path, report: dict[str, Any], tmp_path: Path) -> None:
    """The demo's page as Chromium draws it: every platform's breaches on screen at 1280 x 800,
    the charts as the figures say (the silent platform in red), nothing cut in print."""

    async def measure() -> tuple[dict[str, Any], dict[str, Any]]:
        async with report_page(page_path, tmp_path / "chromium-profile") as page:
            measured = await page.evaluate(MEASURE)
            await page.emulate_media(media="print")
            await page.set_viewport_size({"width": A4_CONTENT_PX, "height": 1123})
            return measured, await page.evaluate(MEASURE)

    measured, printed = asyncio.run(measure())
    figures = {f["platform"]: f for f in report["platforms"]}
    assert sorted(r["group"] for r in measured["rows"]) == sorted(figures)
    for row in measured["rows"]:
        assert row["cell"]["right"] <= 1280 and row["cell"]["bottom"] <= 800, row
    check_charts(measured, figures)
    for table in printed["tables"]:
        assert table["scrollWidth"] <= table["clientWidth"] and table["overflowing"] == [], table


# -- the numbers against what the platforms did ---------------------------------------------------


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    folder = tmp_path_factory.mktemp("month") / "demo"
    return asyncio.run(run_demo(CONFIG, folder=folder, requests=90, seed=5, speed=float(FAST)))


def _expected(actions: list[Action]) -> dict[str, dict[str, datetime]]:
    """Per request, from the staff's record: delivery (the receipt the staff answered, or the
    portal submission), first acknowledgement, and resolution (removed or rejected)."""
    times: dict[str, dict[str, datetime]] = defaultdict(dict)
    for action in sorted(actions, key=lambda a: a.at):
        for request_id in action.request_ids:
            t = times[request_id]
            # A re-notice is received and answered again later: the first of each counts.
            if action.what in ("notice_received", "portal_ticket"):
                t.setdefault("delivered", action.at)
            elif action.what in ("received", "clarification_asked", "removed", "rejected"):
                t.setdefault("acknowledged", action.at)
                if action.what in ("removed", "rejected"):
                    t.setdefault("resolved", action.at)
                    t.setdefault("outcome_" + action.what, action.at)
    return times


async def _stored(folder: Path, request_ids: list[str]) -> dict[str, Any]:
    store = await create_store(f"sqlite:///{folder / 'notifier.db'}")
    try:
        return {r.request.request_id: r for r in await store.get_requests(request_ids)}
    finally:
        await store.close()


async def _verification(folder: Path, request_ids: list[str]) -> tuple[dict[str, Any], list[Followup]]:
    store = await create_store(f"sqlite:///{folder / 'notifier.db'}")
    try:
        facts = {r: await store.request_verification(r, checks=0) for r in request_ids}
        return facts, await store.followups(unsent_only=False, limit=1000)
    finally:
        await store.close()


def test_the_store_holds_exactly_what_the_platforms_did(month: DemoResult) -> None:
    assert month.sandbox_failures == []
    request_ids = [a.request_id for a in scenario.arrivals(90, 5)]
    stored = asyncio.run(_stored(month.folder, request_ids))
    expected = _expected(month.record.actions)
    assert set(stored) == set(request_ids)
    for request_id, row in stored.items():
        want = expected[request_id]
        assert row.delivered_at == want["delivered"], request_id
        assert row.acknowledged_at == want.get("acknowledged"), request_id
        assert row.resolved_at == want.get("resolved"), request_id
        if "outcome_removed" in want:
            assert row.state is RequestState.REMOVED, request_id
        elif "outcome_rejected" in want:
            assert row.state is RequestState.REJECTED, request_id
        else:
            assert row.state is RequestState.DELIVERED, request_id  # the silent platform's
            assert row.request.platform == "streamly", request_id


def test_the_report_is_what_the_platforms_did_computed_independently(month: DemoResult) -> None:
    arrivals = scenario.arrivals(90, 5)
    expected = _expected(month.record.actions)
    end = scenario.START + scenario.MONTH
    figures = {p["platform"]: p for p in month.report["platforms"]}
    assert set(figures) == {"telegram", "videohost", "clipshare", "streamly"}
    for platform, got in figures.items():
        ids = [a.request_id for a in arrivals if a.platform == platform]
        to_ack = [
            int((expected[r]["acknowledged"] - expected[r]["delivered"]).total_seconds())
            for r in ids
            if "acknowledged" in expected[r]
        ]
        to_removal = [
            int((expected[r]["outcome_removed"] - expected[r]["delivered"]).total_seconds())
            for r in ids
            if "outcome_removed" in expected[r]
        ]
        open_ids = [r for r in ids if "resolved" not in expected[r]]
        assert got["requests"] == len(ids), platform
        assert got["acknowledged"] == len(to_ack), platform
        assert got["removed"] == len(to_removal), platform
        assert got["rejected"] == sum("outcome_rejected" in expected[r] for r in ids), platform
        assert got["open"] == len(open_ids), platform
        assert got["time_to_ack_s"] == _distribution(to_ack), platform
        assert got["time_to_removal_s"] == _distribution(to_removal), platform
        # Breaches: strictly over 36 h, an open request past its bound included.
        ack_breaches = sum(v > BOUND_S for v in to_ack) + sum(
            "acknowledged" not in expected[r] and (end - expected[r]["delivered"]).total_seconds() > BOUND_S
            for r in ids
        )
        assert got["ack_breaches"] == ack_breaches, platform
    assert figures["streamly"]["ack_breaches"] == figures["streamly"]["requests"] > 0
    assert figures["telegram"]["ack_breaches"] == figures["telegram"]["removal_breaches"] == 0
    assert figures["telegram"]["time_to_removal_s"]["max"] == BOUND_S
    # The bouncing profile: each bounced notice was delivered again, and only then answered.
    bounced = {a.notice_id for a in month.record.actions if a.what == "bounce"}
    assert bounced, "the seed gives some bouncing notices"
    received_after = {
        a.notice_id: a.at
        for a in month.record.actions
        if a.what == "notice_received" and a.notice_id in bounced
    }
    bounce_at = {a.notice_id: a.at for a in month.record.actions if a.what == "bounce"}
    assert set(received_after) == bounced
    assert all(received_after[n] > bounce_at[n] for n in bounced)
    assert month.events["notice.bounced"] == len(bounced)


def _content(actions: list[Action], what: str) -> dict[str, Action]:
    """Per request, the first thing of kind ``what`` the content server recorded for it."""
    found: dict[str, Action] = {}
    for action in sorted(actions, key=lambda a: a.at):
        if action.what == what:
            for request_id in action.request_ids:
                found.setdefault(request_id, action)
    return found


def test_verification_is_what_the_content_server_did(month: DemoResult) -> None:
    arrivals = scenario.arrivals(90, 5)
    request_ids = [a.request_id for a in arrivals]
    platform_of = {a.request_id: a.platform for a in arrivals}
    actions = month.record.actions
    taken, left_up, restored = (_content(actions, w) for w in ("taken_down", "left_up", "restored"))
    claimed = _content(actions, "removed")
    facts, followups = asyncio.run(_verification(month.folder, request_ids))
    figures = {p["platform"]: p for p in month.report["platforms"]}

    # The scenario's platforms: a false claim, a quiet half, a post back six days later.
    assert left_up and {platform_of[r] for r in left_up} == {scenario.API}
    silent = [r for r in request_ids if platform_of[r] == scenario.SILENT]
    assert len([r for r in silent if r in taken]) == round(len(silent) / 2)
    assert len(restored) == 1 and {platform_of[r] for r in restored} == {scenario.EMAIL}

    for platform, got in figures.items():
        ids = [r for r in request_ids if platform_of[r] == platform]
        assert got["verified_removed"] == sum(r in taken for r in ids), platform
        assert got["false_claims"] == sum(r in left_up for r in ids), platform
        assert got["reappeared"] == sum(r in restored for r in ids), platform
        assert got["inconclusive"] == 0, platform
    for request_id in request_ids:
        verified = facts[request_id].verified_removed_at
        if request_id not in taken:
            assert verified is None, request_id
        elif month.record.profiles.get(claimed[request_id].notice_id if request_id in claimed else "") == (
            "longest"
        ):
            # Removed exactly at the bound, the instant the bound's check runs: when that check
            # ran first (and saw it up) it stands for the claim's, and the next, a day later, sees
            # it gone.
            at = taken[request_id].at
            assert verified in (at, at + timedelta(days=1)), request_id
        elif request_id in claimed:
            # The staff take a post down as they say so: the check of the claim sees it gone.
            assert verified == taken[request_id].at == claimed[request_id].at, request_id
        else:
            assert verified is not None and verified > taken[request_id].at, request_id
        back = restored.get(request_id)
        assert (facts[request_id].reappeared_at is not None) == (back is not None), request_id
        if back is not None:
            assert facts[request_id].reappeared_at > back.at, request_id

    # One follow-up per false claim, each sent, listing those posts only.
    chased = {(f.kind, r) for f in followups for r in f.request_ids}
    assert chased == {("contradicted", r) for r in left_up}
    assert all(f.sent_at is not None for f in followups)
    assert month.events["verify.followup_sent"] == len(followups)
    # A re-appearance gets a new notice: the same request, a new notice id, delivered and received
    # by the platform; the request stays in its first notice.
    stored = asyncio.run(_stored(month.folder, request_ids))
    for request_id in request_ids:
        renotices = facts[request_id].renotices
        assert len(renotices) == (request_id in restored), request_id
        if renotices:
            assert renotices[0] != stored[request_id].notice_id
            received = {
                a.notice_id for a in actions if a.what == "notice_received" and request_id in a.request_ids
            }
            assert received == {stored[request_id].notice_id, renotices[0]}
    assert month.events["verify.renotice_decided"] == len(restored)


def test_one_hour_orders_and_a_clarification_on_the_clock(month: DemoResult) -> None:
    arrivals = scenario.arrivals(90, 5)
    orders, late = scenario.orders(arrivals), scenario.late_order(arrivals)
    asking = scenario.clarified(arrivals)
    assert len(orders) == 4 and late in orders and asking is not None
    stored = asyncio.run(_stored(month.folder, [*orders, asking]))
    hour = timedelta(hours=1)
    for request_id in orders:
        row = stored[request_id]
        assert row.request.deadline == scenario.ORDER_PROFILE, request_id
        assert row.state is RequestState.REMOVED, request_id
        took = row.resolved_at - row.delivered_at
        assert (took > hour) == (request_id == late), (request_id, took)
        # Urgent: sent at once, in a notice of its own profile.
        assert row.delivered_at - row.ingested_at == timedelta(0), request_id
    figures = {p["platform"]: p for p in month.report["platforms"]}
    assert figures["videohost"]["removal_breaches"] == 1
    assert figures["videohost"]["removed_within"]["1h"] == len(orders) - 1
    # By deadline profile: the orders apart, judged on their one hour.
    [order] = [g for g in month.by_profile["profiles"] if g["profile"] == scenario.ORDER_PROFILE]
    assert (order["requests"], order["removed"], order["removal_breaches"]) == (len(orders), len(orders), 1)
    assert order["removed_within"]["1h"] == len(orders) - 1
    assert order["within_bound"] == round((len(orders) - 1) / len(orders), 4)
    assert (month.folder / "report-by-profile.json").is_file()
    # The email platform asked, the authority answered three hours later, then it removed.
    asked = [a for a in month.record.actions if a.what == "clarification_asked"]
    assert len(asked) == 1 and asking in asked[0].request_ids
    assert month.events["notice.clarified"] == 1
    assert figures["telegram"]["paused_s"] == int(scenario.CLARIFY_AFTER.total_seconds()) * len(
        asked[0].request_ids
    )
    removed = next(a for a in month.record.actions if a.what == "removed" and asking in a.request_ids)
    assert removed.at > asked[0].at + scenario.CLARIFY_AFTER
    assert stored[asking].state is RequestState.REMOVED
