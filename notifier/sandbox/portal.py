"""The portal platform: staff of the authority file a notice on its web form and get a ticket; the
platform's staff answer by email later, naming only that ticket."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from notifier.clock import Clock
from notifier.sandbox.behaviour import Action, Behaviour, Inbound, Record, notice_rng, random_delay
from notifier.sandbox.content import ContentServer
from notifier.sandbox.timeline import Timeline

__all__ = ["Portal"]


class Portal:
    """The portal platform's web form: a submission gets a ticket; its staff answer by email later."""

    def __init__(
        self,
        *,
        platform: str,
        address: str,
        behaviour: Behaviour,
        timeline: Timeline,
        clock: Clock,
        record: Record,
        inbound: Inbound,
        seed: int,
        scale: float = 1.0,
        content: ContentServer | None = None,
    ) -> None:
        self.platform = platform
        self._content = content
        self._address = address
        self._domain = address.rpartition("@")[2]
        self._behaviour = behaviour
        self._timeline = timeline
        self._clock = clock
        self._record = record
        self._inbound = inbound
        self._seed = seed
        self._scale = scale
        self._tickets = itertools.count(1001)
        self.submissions: dict[str, str] = {}  # notice id -> ticket

    def submit(self, notice_id: str, request_ids: Sequence[str]) -> str:
        """Staff of the authority filed ``notice_id`` on the portal: its ticket number."""
        if notice_id in self.submissions:
            return self.submissions[notice_id]
        ticket = f"CS-{next(self._tickets)}"
        self.submissions[notice_id] = ticket
        ids = tuple(request_ids)
        self._record.add(Action(self._clock.now(), self.platform, notice_id, "portal_ticket", ids, ticket))
        rng = notice_rng(self._seed, notice_id)
        profile = self._behaviour.choose(rng, ids)
        self._record.profiles.setdefault(notice_id, profile.name)
        if profile.removal_hours is not None:
            self._timeline.at(
                self._clock.now() + random_delay(rng, profile.removal_hours) * self._scale,
                f"{notice_id} removed",
                lambda: self._confirm(notice_id, ticket, ids),
            )
        return ticket

    async def _confirm(self, notice_id: str, ticket: str, request_ids: tuple[str, ...]) -> None:
        # No thread headers and no notice id: notifier ties it to the notice by the ticket it learnt.
        mail = EmailMessage()
        mail["From"] = self._address
        mail["To"] = self._inbound.reply_to
        mail["Subject"] = f"Report ticket {ticket}: processed"
        mail["Date"] = format_datetime(self._clock.now())
        mail["Message-ID"] = make_msgid(domain=self._domain)
        mail.set_content(
            f"Hello,\n\nRegarding ticket {ticket}: we have removed the content you reported.\n\n"
            "안녕하세요. 신고하신 콘텐츠는 삭제되었습니다.\n"
        )
        if self._content is not None:
            self._content.take_down(self.platform, notice_id, request_ids)
        await self._inbound.send(mail, sender=self._address, recipient=self._inbound.reply_to)
        self._record.add(Action(self._clock.now(), self.platform, notice_id, "removed", request_ids, ticket))
