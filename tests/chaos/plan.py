"""What a chaos run does: its size, its disturbances and when they happen, and the configuration the
daemons run with (five sandbox platforms, SLA bounds of seconds so reminders and breaches fall due
during the run)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from tests.acceptance.dataset import valid_request
from tests.acceptance.harness import write_config


@dataclass(frozen=True, slots=True)
class PlatformPlan:
    id: str
    channel: str  # "email", "api" or "manual" (a portal)
    max_items: int

    @property
    def address(self) -> str:
        return f"abuse@{self.id.replace('_', '-')}.example"

    @property
    def escalation(self) -> str:
        return f"legal@{self.id.replace('_', '-')}.example"


PLATFORMS = (
    PlatformPlan("mail_a", "email", 50),
    PlatformPlan("mail_b", "email", 20),
    PlatformPlan("api_a", "api", 50),
    PlatformPlan("api_b", "api", 25),
    PlatformPlan("portal", "manual", 50),
)

# Every INVALID_EVERY-th message published is malformed: it must end in the dead letters, with a reason.
INVALID_EVERY = 250


@dataclass(frozen=True, slots=True)
class Plan:
    """A run: ``requests`` over ``publish_for`` seconds while the disturbances happen."""

    requests: int = 10_000
    publish_for: float = 150.0
    kills: int = 20
    broker_restart: str = "node"  # "node": stop_app/start_app; "vhost": only this run's vhost; "none"
    postgres_restart: bool = True
    outages: bool = True  # the SMTP sink and the platform API go down for outage_for seconds each
    outage_for: float = 15.0
    sigterm: bool = True
    seed: int = 1
    grace: float = 10.0
    lease: float = 5.0
    # SLA bounds of every platform: reminders at remind_at times ack_within, breaches after the bounds.
    ack_within: float = 20.0
    removal_within: float = 40.0
    remind_at: float = 0.5
    # Durable retries back off from 30 s, doubling; this caps how long a notice waits for its
    # next try after an outage (a send at this bound that fails would fail the notice).
    deliver_within: float = 90.0
    ready_within: float = 30.0
    settle_within: float = 300.0

    @property
    def short(self) -> str:
        return (
            f"{self.requests} requests over {len(PLATFORMS)} platforms in {self.publish_for:.0f} s, "
            f"{self.kills} kill -9, RabbitMQ restart: {self.broker_restart}, "
            f"PostgreSQL restart: {'yes' if self.postgres_restart else 'no'}, "
            f"SMTP/API outages: {f'{self.outage_for:.0f} s each' if self.outages else 'no'}, "
            f"SIGTERM under load: {'yes' if self.sigterm else 'no'}"
        )


@dataclass(frozen=True, slots=True)
class Event:
    at: float  # seconds after publishing started
    kind: str  # kill, broker, postgres, smtp_down, api_down, sigterm


def schedule(plan: Plan) -> list[Event]:
    """The disturbances in order: the one-off ones at fixed fractions of the publishing window, the
    kills spread at random between them, never two within 3 s of each other."""
    rng = random.Random(plan.seed)
    span = plan.publish_for
    fixed: list[Event] = []
    if plan.broker_restart != "none":
        fixed.append(Event(0.25 * span, "broker"))
    if plan.outages:
        fixed.append(Event(0.40 * span, "smtp_down"))
        fixed.append(Event(0.70 * span, "api_down"))
    if plan.postgres_restart:
        fixed.append(Event(0.55 * span, "postgres"))
    if plan.sigterm:
        fixed.append(Event(0.85 * span, "sigterm"))
    kills: list[Event] = []
    busy = [e.at for e in fixed if e.kind in ("broker", "postgres", "sigterm")]
    while len(kills) < plan.kills:
        at = rng.uniform(0.05 * span, 0.95 * span)
        if all(abs(at - other) >= 3.0 for other in busy):
            kills.append(Event(at, "kill"))
            busy.append(at)
    return sorted(fixed + kills, key=lambda e: e.at)


@dataclass(slots=True)
class Bodies:
    """The messages of a run: valid requests by id, and the malformed ones (by their index)."""

    valid: dict[str, bytes] = field(default_factory=dict)
    platform_of: dict[str, str] = field(default_factory=dict)
    invalid: list[bytes] = field(default_factory=list)
    order: list[bytes] = field(default_factory=list)


def bodies(plan: Plan) -> Bodies:
    rng = random.Random(plan.seed)
    made = Bodies()
    for index in range(plan.requests):
        if index % INVALID_EVERY == INVALID_EVERY - 1:
            # An unknown platform, a CR/LF in an id, bad JSON: the reasons differ, the rule does not.
            kind = (index // INVALID_EVERY) % 3
            if kind == 0:
                body = json.dumps(valid_request(rng, index) | {"platform": "nowhere"}).encode()
            elif kind == 1:
                body = json.dumps(valid_request(rng, index) | {"request_id": f"bad\r\nid-{index}"}).encode()
            else:
                body = b'{"request_id": "chaos-truncated-' + str(index).encode() + b'", "platform": '
            made.invalid.append(body)
            made.order.append(body)
            continue
        platform = PLATFORMS[index % len(PLATFORMS)].id
        request = valid_request(rng, index) | {"request_id": f"chaos-{index:06d}", "platform": platform}
        body = json.dumps(request).encode()
        made.valid[str(request["request_id"])] = body
        made.platform_of[str(request["request_id"])] = platform
        made.order.append(body)
    return made


def platforms_toml(api_url: str) -> str:
    sections = []
    for p in PLATFORMS:
        section = f"""
[platforms.{p.id}]
name = "{p.id}"
channel = "{p.channel}"
[platforms.{p.id}.batch]
max_items = {p.max_items}
max_wait = "1s"
[platforms.{p.id}.escalation]
email = ["{p.escalation}"]
"""
        if p.channel == "email":
            section += f'[platforms.{p.id}.email]\nto = ["{p.address}"]\n'
        elif p.channel == "api":
            section += f'[platforms.{p.id}.api]\nurl = "{api_url}"\n'
        sections.append(section)
    return "\n".join(sections)


def daemon_config(
    directory: Path,
    plan: Plan,
    *,
    store_url: str,
    amqp_url: str,
    http_port: int,
    smtp_port: int,
    api_url: str,
) -> Path:
    """The configuration of one daemon: its own HTTP port, everything else shared."""
    extra = f"""
[smtp]
host = "127.0.0.1"
port = {smtp_port}
starttls = "off"

[sla]
ack_within = "{plan.ack_within}s"
removal_within = "{plan.removal_within}s"
remind_at = {plan.remind_at}
deliver_within = "{plan.deliver_within}s"

[manual]
outbox = "{directory.parent / "outbox"}"

[verify]
enabled = false
"""
    return write_config(
        directory,
        store_url=store_url,
        queue_url=f"{amqp_url}?reconnect_interval=1",
        http_listen=f"127.0.0.1:{http_port}",
        runtime="\n".join(
            (
                f'grace = "{plan.grace}s"',
                f'lease = "{plan.lease}s"',
                'in_call_retry_wait = "0.2s"',
                "send_concurrency = 8",
            )
        ),
        extra=extra,
        platforms=platforms_toml(api_url),
    )
