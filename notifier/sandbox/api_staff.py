"""The simulated staff behind the API platform: signed Standard Webhooks callbacks to the notice's
``callback_url``, received and then per item removed or rejected."""

from __future__ import annotations

import itertools
import json
import time
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from standardwebhooks.webhooks import Webhook

from notifier.clock import Clock
from notifier.sandbox.api import ReceivedNotice
from notifier.sandbox.behaviour import Action, Behaviour, Record, notice_rng, random_delay
from notifier.sandbox.content import ContentServer
from notifier.sandbox.timeline import Timeline

__all__ = ["ApiStaff"]


class ApiStaff:
    """The staff behind the API platform: signed callbacks to the notice's ``callback_url``."""

    def __init__(
        self,
        *,
        platform: str,
        behaviour: Behaviour,
        secret: str,
        timeline: Timeline,
        clock: Clock,
        record: Record,
        seed: int,
        scale: float = 1.0,
        content: ContentServer | None = None,
    ) -> None:
        self.platform = platform
        self._content = content
        self._behaviour = behaviour
        self._webhook = Webhook(secret)
        self._timeline = timeline
        self._clock = clock
        self._record = record
        self._seed = seed
        self._scale = scale
        self._session: aiohttp.ClientSession | None = None
        self._answered: set[str] = set()
        self._ids = itertools.count(1)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def on_notice(self, notice: ReceivedNotice) -> None:
        payload = notice.payload
        notice_id = str(payload.get("notice_id", ""))
        callback_url = payload.get("callback_url")
        if not notice_id or notice_id in self._answered or not isinstance(callback_url, str):
            return
        self._answered.add(notice_id)
        request_ids = tuple(str(item["request_id"]) for item in payload.get("items", []))
        rng = notice_rng(self._seed, notice_id)
        profile = self._behaviour.choose(rng, request_ids)
        self._record.profiles.setdefault(notice_id, profile.name)
        now = self._clock.now()
        self._record.add(
            Action(now, self.platform, notice_id, "notice_received", request_ids, notice.ticket or "")
        )
        if self._content is not None:
            posts = [
                (str(item["request_id"]), str(url))
                for item in payload.get("items", [])
                for url in item.get("urls", [])
            ]
            self._content.received(self.platform, notice_id, request_ids, posts=posts)
        ack_after = random_delay(rng, profile.ack_hours) if profile.ack_hours else None
        if ack_after is not None:
            body = {"notice_id": notice_id, "status": "received", "ticket": notice.ticket}
            self._timeline.at(
                now + ack_after * self._scale,
                f"{notice_id} received",
                lambda: self._callback(callback_url, body, notice_id, "received", request_ids),
            )
        if profile.removal_hours is not None:
            removal_after = random_delay(rng, profile.removal_hours)
            if ack_after is not None:
                removal_after = max(removal_after, ack_after + timedelta(minutes=30))
            rejected = tuple(r for r in request_ids if rng.random() < profile.rejected_share)
            removed = tuple(r for r in request_ids if r not in rejected)
            items = [{"request_id": r, "status": "removed"} for r in removed]
            items += [{"request_id": r, "status": "rejected"} for r in rejected]
            final = {"notice_id": notice_id, "status": "partial", "items": items, "ticket": notice.ticket}
            self._timeline.at(
                now + removal_after * self._scale,
                f"{notice_id} outcome",
                lambda: self._outcome(callback_url, final, notice_id, removed, rejected),
            )

    async def _outcome(
        self,
        url: str,
        body: dict[str, Any],
        notice_id: str,
        removed: tuple[str, ...],
        rejected: tuple[str, ...],
    ) -> None:
        if removed and self._content is not None:
            self._content.take_down(self.platform, notice_id, removed)
        await self._post(url, body)
        now = self._clock.now()
        if removed:
            self._record.add(Action(now, self.platform, notice_id, "removed", removed))
        if rejected:
            self._record.add(Action(now, self.platform, notice_id, "rejected", rejected))

    async def _callback(
        self, url: str, body: dict[str, Any], notice_id: str, what: str, request_ids: tuple[str, ...]
    ) -> None:
        await self._post(url, body)
        self._record.add(Action(self._clock.now(), self.platform, notice_id, what, request_ids))

    async def _post(self, url: str, body: dict[str, Any]) -> None:
        body = {**body, "at": self._clock.now().isoformat().replace("+00:00", "Z")}
        data = json.dumps(body, separators=(",", ":"))
        webhook_id = f"msg_{self.platform}_{next(self._ids):06d}"
        # Transport signatures stay on real time: notifier checks them against its wall clock.
        signed_at = datetime.fromtimestamp(time.time()).astimezone()
        signature = self._webhook.sign(webhook_id, signed_at, data)
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(signed_at.timestamp())),
            "webhook-signature": signature,
        }
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        async with self._session.post(url, data=data.encode(), headers=headers) as response:
            if response.status != 204:
                raise RuntimeError(f"callback answered {response.status}: {(await response.text())[:200]}")
