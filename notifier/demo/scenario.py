"""The demo's month: the regulator's hotline decisions, as takedown requests at business times.

Requests arrive on weekdays in office hours (Korean time) over the first 24 days, so every
platform has had time to answer, or to stay silent past its bound, before the month ends. The
split follows the regulator's first month: about 150 requests to the email platform, the rest to
the API platform, the portal platform and the silent one.

What the platforms really do with the content (:func:`takedowns`): the email platform answers 200
with a "this post is unavailable" page for a removed post, the others 404 or 410; the API
platform sometimes says it removed an item while leaving it up; the silent platform quietly
removes half of its content; one removed post of the email platform comes back six days later.

Deadlines by law (:func:`orders`): a handful of the API platform's requests are one-hour removal
orders (the ``tco_removal_order`` profile, urgent: never batched), answered within the hour but
one, answered hours late (a removal breach). One notice to the email platform is answered with a
question (:func:`clarified`): its removal clock stops until the authority answers it.
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
DEFAULT_SPEED = 200_000.0  # business seconds per real second at most: a month in ≥ 13 s

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
# The one-hour orders: their profile and category, added to the demo's settings when the
# configuration does not define them (config/notifier.toml ships the profile commented out).
ORDERS = 5
ORDER_PROFILE = "tco_removal_order"
ORDER_LABEL = "Regulation (EU) 2021/784, Art. 3(3): one hour"
ORDER_CATEGORY = "terrorist_content"
ORDER_CATEGORY_LABEL = "Terrorist content"
ORDER_BASIS = "Regulation (EU) 2021/784 on addressing the dissemination of terrorist content online, Art. 3"
# How long the authority's staff take to answer the email platform's question.
CLARIFY_AFTER = timedelta(hours=3)
CLARIFICATION_NOTE = (
    "The notice concerns every post published at the reported address on the day of the decision; "
    "the evidence hashes in the attached report identify each of them."
)


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
    ordered = set(orders(out))
    return [_as_order(a) if a.request_id in ordered else a for a in out]


def _as_order(arrival: Arrival) -> Arrival:
    body = json.loads(arrival.body)
    body.update(category=ORDER_CATEGORY, deadline=ORDER_PROFILE, priority="urgent", legal_basis=ORDER_BASIS)
    return Arrival(arrival.at, arrival.request_id, arrival.platform, json.dumps(body).encode())


def orders(arrived: list[Arrival]) -> list[str]:
    """The API platform's one-hour removal orders: up to :data:`ORDERS` of its requests (one in
    four at most), spread evenly over the month."""
    api = [a.request_id for a in arrived if a.platform == API]
    count = min(ORDERS, len(api) // 4)
    if count == 0:
        return []
    step = len(api) // count
    return [api[i * step + step // 2] for i in range(count)]


def late_order(arrived: list[Arrival]) -> str | None:
    """The one order the API platform answers hours late."""
    ids = orders(arrived)
    return ids[len(ids) // 2] if ids else None


def _longest(arrived: list[Arrival]) -> str:
    email = [a.request_id for a in arrived if a.platform == EMAIL]
    return email[len(email) // 2] if email else ""


def clarified(arrived: list[Arrival]) -> str | None:
    """The email platform's request whose notice its staff answer with a question."""
    email = [a.request_id for a in arrived if a.platform == EMAIL]
    if len(email) < 3:
        return None
    return email[len(email) // 3]


def behaviours(arrived: list[Arrival]) -> dict[str, Behaviour]:
    """The staff of each platform; the email platform's removal of one notice takes exactly 36 h
    and another's waits for the answer to its question; the API platform answers the one-hour
    orders within the hour, but one."""
    email_pins = {_longest(arrived): "longest"}
    if (asking := clarified(arrived)) is not None:
        email_pins[asking] = "clarify"
    api_pins = dict.fromkeys(orders(arrived), "order")
    if (late := late_order(arrived)) is not None:
        api_pins[late] = "order_late"
    return {
        EMAIL: Behaviour({"prompt": 0.6, "slow": 0.28, "bouncing": 0.12}, pinned=email_pins),
        API: Behaviour({"api": 1.0}, pinned=api_pins),
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
    pinned = {_longest(arrived), clarified(arrived)}
    early = [r for r in early if r not in pinned]
    return Takedowns(
        removed_status={EMAIL: 200, API: 404, PORTAL: 410, SILENT: 404},
        false_claims=frozenset(false_claims),
        quiet_share={SILENT: 0.5},
        comes_back={rng.choice(early): COMES_BACK_AFTER} if early else {},
    )


def urls(arrival: Arrival) -> list[str]:
    return [str(url) for url in json.loads(arrival.body)["urls"]]
