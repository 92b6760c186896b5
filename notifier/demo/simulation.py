"""The daemon of ``notifier run`` and the sandbox platforms on one simulated clock.

The daemon runs on the configuration given, with its store, queue and outbox moved into the demo's
folder and its network ports moved to free loopback ones. Its clock is a
:class:`~notifier.clock.SimulatedClock` that jumps ahead only while everything is idle: every
service waits for its next business deadline, no send or reply is in flight and the queues are
empty. Then time jumps to the earliest of the daemon's deadlines, the next hotline decision and the
next thing a platform's staff do. Work itself takes no business time.

The reported posts are served by the sandbox's content server; the daemon's prober reaches it
through a resolver that answers the platforms' host names with the server's loopback address
(``verify.allow_private`` is set for the demo), so no DNS is asked.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import secrets
import socket
import time
from collections import Counter
from collections.abc import Callable, MutableMapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from notifier.app import Daemon
from notifier.clock import SimulatedClock
from notifier.demo import scenario
from notifier.errors import NotifierError
from notifier.intake.local import LocalQueue
from notifier.opening import authority
from notifier.sandbox.platforms import Sandbox
from notifier.sandbox.staff import Inbound
from notifier.services.clarify import send_clarification
from notifier.services.operator import record_submitted
from notifier.services.report import build_report, platform_bounds, profile_bounds
from notifier.settings import Settings, load_settings
from notifier.wiring import Channels

SETTLE_TIMEOUT_S = 120.0


class DemoError(NotifierError):
    """The demo could not run, or something in it went wrong; the message says what."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Tap:
    """A log processor: counts events by name and stamps each line with the simulated time."""

    def __init__(self, clock: SimulatedClock) -> None:
        self.clock = clock
        self.events: Counter[str] = Counter()
        # Notices a platform asked to clarify, as the daemon recorded them: the authority answers.
        self.questions: list[str] = []

    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        self.events[str(event_dict.get("event", ""))] += 1
        if (
            event_dict.get("event") == "ack.received"
            and event_dict.get("status") == "clarification_requested"
        ):
            self.questions.append(str(event_dict.get("notice_id", "")))
        event_dict["sim_time"] = self.clock.now().isoformat().replace("+00:00", "Z")
        return event_dict


class Demo:
    def __init__(
        self,
        config: Path,
        *,
        folder: Path,
        requests: int,
        seed: int,
        speed: float,
        environ: MutableMapping[str, str] | None = None,
    ) -> None:
        if speed <= 0:
            raise DemoError("--speed must be positive (business seconds per real second)")
        self.config = config
        self.folder = folder
        self.seed = seed
        self.speed = speed
        self.environ = dict(os.environ if environ is None else environ)
        self.clock = SimulatedClock(scenario.START)
        self.arrivals = scenario.arrivals(requests, seed)
        self.tap = Tap(self.clock)
        self._office_seen: set[str] = set()
        self._rng = random.Random(f"{seed}/office")  # noqa: S311  (simulation, not security)
        self.daemon: Daemon | None = None
        self.sandbox: Sandbox | None = None
        self.settings: Settings | None = None
        self._stale = True  # something may have moved a check timer since the last round
        self._answered: set[str] = set()  # clarifications the authority's staff plan to answer
        self._channels: Channels | None = None

    # -- set-up -----------------------------------------------------------------------------------

    def _settings(self, sandbox: Sandbox, inbound_port: int, http_port: int, secret_env: str) -> Settings:
        base = load_settings(self.config, self.environ)
        db = self.folder / "notifier.db"
        overrides = {
            "NOTIFIER_STORE__URL": f"sqlite:///{db}",
            "NOTIFIER_STORE__URL_ENV": "",
            "NOTIFIER_QUEUE__URL": f"sqlite:///{db}",
            "NOTIFIER_QUEUE__URL_ENV": "",
            "NOTIFIER_SMTP__HOST": "127.0.0.1",
            "NOTIFIER_SMTP__PORT": str(sandbox.sink.port),
            "NOTIFIER_SMTP__STARTTLS": "off",
            "NOTIFIER_SMTP__USERNAME": "",
            "NOTIFIER_INBOUND_SMTP__LISTEN": f"127.0.0.1:{inbound_port}",
            "NOTIFIER_IMAP__HOST": "",
            "NOTIFIER_HTTP__LISTEN": f"127.0.0.1:{http_port}",
            "NOTIFIER_HTTP__PUBLIC_URL": f"http://127.0.0.1:{http_port}",
            "NOTIFIER_HTTP__CALLBACK_SECRET_ENV": secret_env,
            "NOTIFIER_MANUAL__OUTBOX": str(self.folder / "outbox"),
            # The sandbox platforms are served on loopback, and they are the demo's own hosts.
            "NOTIFIER_VERIFY__ALLOW_PRIVATE": "true",
            "NOTIFIER_VERIFY__PROXY_ENV": "",
            "NOTIFIER_VERIFY__PER_HOST_PER_MINUTE": "100000",
        }
        for platform_id, platform in base.platforms.items():
            if platform.api is not None:
                prefix = f"NOTIFIER_PLATFORMS__{platform_id.upper()}__API__"
                overrides[prefix + "URL"] = sandbox.api.url
                overrides[prefix + "TOKEN_ENV"] = ""
                overrides[prefix + "SIGNING_SECRET_ENV"] = ""
        overrides.update(_order_overrides(base))
        # Overrides of keys the file does not have are refused by the loader: keep only known ones.
        return load_settings(self.config, {**self.environ, **overrides})

    async def start(self) -> None:
        self.settings = base = load_settings(self.config, self.environ)
        if base.evidence.enabled and not base.evidence.key:
            # The month's evidence record encrypts its payloads with a key of its own, kept beside
            # the store (owner only) so that `notifier evidence export` works on the demo's store.
            key = secrets.token_hex(32)
            path = self.folder / "evidence.key"
            path.touch(mode=0o600)
            path.write_text(key + "\n", encoding="utf-8")
            self.environ[base.evidence.key_env] = key
        missing = {scenario.EMAIL, scenario.API, scenario.PORTAL, scenario.SILENT} - set(base.platforms)
        if missing:
            raise DemoError(
                f"{self.config}: the demo needs the platforms of the embedded default; "
                f"missing {', '.join(sorted(missing))}"
            )
        inbound_port, http_port = _free_port(), _free_port()
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        secret_env = "NOTIFIER_DEMO_CALLBACK_SECRET"  # noqa: S105  (a variable name)
        self.environ[secret_env] = secret
        self.sandbox = await Sandbox(
            base,
            clock=self.clock,
            seed=self.seed,
            inbound=Inbound(
                host="127.0.0.1", port=inbound_port, reply_to=base.authority.reply_to or base.authority.email
            ),
            callback_secret=secret,
            behaviours=scenario.behaviours(self.arrivals),
            takedowns=scenario.takedowns(self.arrivals, self.seed),
        ).start()
        for arrival in self.arrivals:
            for url in scenario.urls(arrival):
                self.sandbox.content.publish(url, platform=arrival.platform, request_id=arrival.request_id)
        self.settings = self._settings(self.sandbox, inbound_port, http_port, secret_env)
        # The retry jitter drawn from the seed: a run's delivery times are the same every time.
        retries = random.Random(f"{self.seed}/retries")  # noqa: S311  (simulation, not security)
        self.daemon = Daemon(
            self.settings, clock=self.clock, resolver=self.sandbox.content.resolver(), rng=retries
        )
        await self.daemon.start()
        # What `notifier clarify` sends through: the platforms' channels.
        self._channels = Channels(self.settings, self.clock)

    async def stop(self) -> None:
        if self.daemon is not None:
            if not self.daemon.supervisor.stop.is_set():
                self.daemon.stop()
            await self.daemon.wait()
        if self._channels is not None:
            await self._channels.close()
        if self.sandbox is not None:
            await self.sandbox.stop()

    # -- the clock --------------------------------------------------------------------------------

    async def _quiet(self) -> bool:
        daemon = self.daemon
        assert daemon is not None and self.settings is not None
        if not (daemon.dispatcher.quiet and daemon.sla.quiet):
            self._stale = True
            return False
        queue = daemon.queue
        assert isinstance(queue, LocalQueue)
        for name in (self.settings.queue.requests, self.settings.queue.acks):
            if await queue.pending(name):
                self._stale = True
                return False
        verification = daemon.verification
        if verification is None:
            return True
        if self._stale:
            # Deliveries and claims of removal move check timers: the service looks again now.
            self._stale = False
            verification.kick()
            return False
        return verification.quiet

    async def settle(self) -> None:
        """Wait until nothing is in hand anywhere (twice in a row, a moment apart)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        calm = 0
        while calm < 2:
            if time.monotonic() > deadline:
                at = self.clock.now().isoformat()
                raise DemoError(f"the daemon did not settle within {SETTLE_TIMEOUT_S:.0f} s at {at}")
            await asyncio.sleep(0.002)
            calm = calm + 1 if await self._quiet() else 0
            if self.daemon is not None and self.daemon.supervisor.stop.is_set():
                raise DemoError("the daemon stopped during the demo; see the log")

    def _office(self) -> None:
        """Staff of the authority look at the portal outbox and plan to file what is new there."""
        assert self.settings is not None and self.sandbox is not None
        outbox = self.settings.manual.outbox
        if not outbox.is_dir():
            return
        for folder in sorted(outbox.iterdir()):
            notice_id = folder.name
            if not folder.is_dir() or notice_id in self._office_seen:
                continue
            self._office_seen.add(notice_id)
            platform = notice_id.split("-")[1] if notice_id.count("-") >= 3 else ""
            portal = self.sandbox.portals.get(platform)
            if portal is None:
                continue
            when = self.clock.now() + timedelta(minutes=self._rng.randrange(30, 300))
            self.sandbox.timeline.at(
                when, f"{notice_id} filed on the portal", self._file(notice_id, platform)
            )

    def _file(self, notice_id: str, platform: str) -> Callable[[], Any]:
        async def action() -> None:
            assert self.daemon is not None and self.daemon.store is not None and self.sandbox is not None
            (notice,) = await self.daemon.store.get_notices([notice_id])
            ticket = self.sandbox.portals[platform].submit(notice_id, notice.request_ids)
            now = self.clock.now()
            # What `notifier ack NOTICE_ID --status submitted --ticket T` does.
            await record_submitted(self.daemon.store, notice_id, at=now, now=now, ticket=ticket)
            self.daemon.sla.kick()

        return action

    def _clarifications(self) -> None:
        """Staff of the authority see a platform's question in ``notifier status`` and answer it
        (what ``notifier clarify NOTICE_ID --note-file F`` does) :data:`scenario.CLARIFY_AFTER` later."""
        assert self.sandbox is not None
        for notice_id in self.tap.questions:
            if notice_id in self._answered:
                continue
            self._answered.add(notice_id)
            self.sandbox.timeline.at(
                self.clock.now() + scenario.CLARIFY_AFTER,
                f"{notice_id} clarified by the authority",
                self._clarify(notice_id),
            )

    def _clarify(self, notice_id: str) -> Callable[[], Any]:
        async def action() -> None:
            assert self.daemon is not None and self.daemon.store is not None
            assert self.settings is not None and self._channels is not None
            await send_clarification(
                self.daemon.store,
                self._channels.routes(),
                notice_id=notice_id,
                note=scenario.CLARIFICATION_NOTE,
                now=self.clock.now(),
                authority=authority(self.settings),
                labels=self.settings.category_labels,
            )
            self.daemon.sla.kick()

        return action

    async def _submit_due(self, pending: list[scenario.Arrival]) -> int:
        now = self.clock.now()
        due = [a for a in pending if a.at <= now]
        if due:
            assert self.daemon is not None and self.daemon.queue is not None and self.settings is not None
            await self.daemon.queue.publish(self.settings.queue.requests, [a.body for a in due])
            del pending[: len(due)]
        return len(due)

    async def play(self, on_step: Callable[[], None] | None = None) -> None:
        """Run the month: settle, do what is due, jump to the next deadline, until the month ends."""
        assert self.sandbox is not None
        clock, timeline = self.clock, self.sandbox.timeline
        end = scenario.START + scenario.MONTH
        pending = sorted(self.arrivals, key=lambda a: a.at)
        started = time.monotonic()
        while True:
            await self.settle()
            self._office()
            self._clarifications()
            if await self._submit_due(pending) or await timeline.run_due(clock.now()):
                self._stale = True
                continue
            if on_step is not None:
                on_step()
            now = clock.now()
            candidates = [
                t for t in (clock.next_deadline, timeline.next_at, pending[0].at if pending else None) if t
            ]
            upcoming = min([t for t in candidates if t > now], default=end)
            target = min(upcoming, end)
            if target <= now:
                break
            # --speed: business time may not run ahead of real time multiplied by the speed.
            ahead = (target - scenario.START).total_seconds() / self.speed - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
            await clock.advance(target - now)
        await self.settle()

    async def report(self, by: str = "platform") -> dict[str, Any]:
        assert self.daemon is not None and self.daemon.store is not None and self.settings is not None
        return await build_report(
            self.daemon.store,  # type: ignore[arg-type]
            platform_bounds(self.settings),
            now=self.clock.now(),
            since=None,
            until=None,
            profiles=profile_bounds(self.settings),
            by=by,
        )


def _order_overrides(base: Settings) -> dict[str, str]:
    """The one-hour orders' profile and category, where the configuration has none of its own
    (``config/notifier.toml`` ships the profiles commented out)."""
    overrides: dict[str, str] = {}
    if scenario.ORDER_PROFILE not in base.deadlines:
        prefix = f"NOTIFIER_DEADLINES__{scenario.ORDER_PROFILE.upper()}__"
        overrides |= {
            prefix + "LABEL": scenario.ORDER_LABEL,
            prefix + "ACK_WITHIN": "1h",
            prefix + "REMOVAL_WITHIN": "1h",
            prefix + "REMIND_AT": "0.5",
            prefix + "URGENT": "true",
        }
    if scenario.ORDER_CATEGORY not in base.categories:
        overrides[f"NOTIFIER_CATEGORIES__{scenario.ORDER_CATEGORY.upper()}"] = scenario.ORDER_CATEGORY_LABEL
    return overrides
