"""The demo's month: the regulator's hotline decisions, as takedown requests at business times.

Requests arrive on weekdays in office hours (Korean time) over the first 24 days, so every
platform has had time to answer, or to stay silent past its bound, before the month ends. The
split follows the regulator's first month: about 150 requests to the email platform, the rest to
the API platform, the portal platform and the silent one.

What the platforms really do with the content (:func:`takedowns`): the email platform answers 200
with a "this post is unavailable" page for a removed post, the others 404 or 410; the API
platform sometimes says it removed an item while leaving it up; the silent platform quietly
removes half of its content; one removed post of the email platform comes back six days later.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from notifier.sandbox.content import Takedowns
from notifier.sandbox.staff import Behaviour

START = datetime(2024, 9, 1, 15, 0, tzinfo=UTC)  # Monday 2 September 2024, 00:00 in Seoul
MONTH = timedelta(days=30)
ARRIVAL_DAYS = 24
SEOUL = ZoneInfo("Asia/Seoul")

EMAIL, API, PORTAL, SILENT = "telegram", "videohost", "clipshare", "streamly"
# Shares of the default 220 requests: 148 to the email platform, as in the regulator's figure.
SHARES = {EMAIL: 148, API: 40, PORTAL: 16, SILENT: 16}
DEFAULT_REQUESTS = sum(SHARES.values())

# Plain HTTP: the sandbox serves the platforms' content on loopback, without certificates.
URLS = {
    EMAIL: "http://t.me/{channel}/{post}",
    API: "http://videohost.example/watch?v={post}",
    PORTAL: "http://clipshare.example/clip/{post}",
    SILENT: "http://streamly.example/v/{post}",
}
FALSE_CLAIM_EVERY = 12  # one API item in about twelve is said removed and left up
COMES_BACK_AFTER = timedelta(days=6)
LEGAL_BASIS = "Act on the Establishment and Operation of the Korea Communications Commission, Art. 21(4)"
EXPLANATION = "Synthetic sexual imagery of an identifiable person, made and shared without consent."
CATEGORIES = ("deepfake_sexual_abuse", "deepfake_sexual_abuse", "non_consensual_intimate_imagery")


@dataclass(frozen=True, slots=True)
class Arrival:
    at: datetime
    request_id: str
    platform: str
    body: bytes


def split(total: int) -> dict[str, int]:
    """``total`` requests over the four platforms in the month's proportions (at least one each)."""
    if total < len(SHARES):
        raise ValueError(f"--requests must be at least {len(SHARES)} (one per platform)")
    counts = {p: max(1, total * share // DEFAULT_REQUESTS) for p, share in SHARES.items()}
    counts[EMAIL] += total - sum(counts.values())
    return counts


def _office_time(rng: random.Random) -> datetime:
    """A random minute of a weekday's office hours (09:00 to 18:00 in Seoul) in the first 24 days."""
    while True:
        day = START.astimezone(SEOUL) + timedelta(days=rng.randrange(ARRIVAL_DAYS))
        if day.weekday() < 5:
            break
    local = day.replace(hour=9, minute=0) + timedelta(minutes=rng.randrange(9 * 60))
    return local.astimezone(UTC)


def arrivals(total: int, seed: int) -> list[Arrival]:
    rng = random.Random(seed)  # noqa: S311  (simulation, not security)
    plan = [(platform, _office_time(rng)) for platform, count in split(total).items() for _ in range(count)]
    plan.sort(key=lambda item: item[1])
    out: list[Arrival] = []
    for index, (platform, at) in enumerate(plan, start=1):
        request_id = f"kcsc-2024-{index:06d}"
        body = {
            "request_id": request_id,
            "platform": platform,
            "urls": [
                URLS[platform].format(channel=f"channel_{rng.randrange(40):02d}", post=rng.randrange(10**6))
            ],
            "category": rng.choice(CATEGORIES),
            "priority": "urgent" if rng.random() < 0.05 else "normal",
            "legal_basis": LEGAL_BASIS,
            "explanation": EXPLANATION,
            "decided_at": at.isoformat().replace("+00:00", "Z"),
            "evidence": [{"sha256": rng.randbytes(32).hex()}],
            "case_ref": f"2024-DF-{index:04d}",
            "territorial_scope": ["KR"],
        }
        out.append(Arrival(at=at, request_id=request_id, platform=platform, body=json.dumps(body).encode()))
    return out


def behaviours(arrived: list[Arrival]) -> dict[str, Behaviour]:
    """The staff of each platform; the email platform's removal of one notice takes exactly 36 h."""
    email = [a.request_id for a in arrived if a.platform == EMAIL]
    longest = email[len(email) // 2] if email else ""
    return {
        EMAIL: Behaviour({"prompt": 0.6, "slow": 0.28, "bouncing": 0.12}, pinned={longest: "longest"}),
        API: Behaviour({"api": 1.0}),
        PORTAL: Behaviour({"portal": 1.0}),
        SILENT: Behaviour({"silent": 1.0}),
    }


def takedowns(arrived: list[Arrival], seed: int) -> Takedowns:
    """What the platforms really do with the reported content (chosen from the seed)."""
    rng = random.Random(f"{seed}/content")  # noqa: S311  (simulation, not security)
    api = [a.request_id for a in arrived if a.platform == API]
    false_claims = rng.sample(api, max(1, len(api) // FALSE_CLAIM_EVERY)) if api else []
    # Early enough that the recheck a week after its removal falls inside the month.
    early = [a.request_id for a in arrived if a.platform == EMAIL and a.at < START + timedelta(days=12)]
    longest = [a.request_id for a in arrived if a.platform == EMAIL]
    pinned = longest[len(longest) // 2] if longest else ""
    early = [r for r in early if r != pinned]
    return Takedowns(
        removed_status={EMAIL: 200, API: 404, PORTAL: 410, SILENT: 404},
        false_claims=frozenset(false_claims),
        quiet_share={SILENT: 0.5},
        comes_back={rng.choice(early): COMES_BACK_AFTER} if early else {},
    )


def urls(arrival: Arrival) -> list[str]:
    return [str(url) for url in json.loads(arrival.body)["urls"]]
