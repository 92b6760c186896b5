"""Follow-ups after checks (SPEC §13), sent over the platform's channel: the notice's requests,
each with only the URLs found live, in the notice's thread (email: ``In-Reply-To`` the notice,
Message-ID ``<notice_id>.followup-N@…``), with an id of their own on the API
(``<notice_id>.followup-N``), or as a file beside the portal notice."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Protocol

from notifier.domain.evidence import EvidenceRecord
from notifier.domain.models import TakedownRequest
from notifier.domain.notices import Authority, MessageKind, Notice, api_message_id
from notifier.errors import NotifierError
from notifier.ports import Followup
from notifier.services.routes import Route, notice_content


class FollowupStore(Protocol):
    async def get_notices(self, notice_ids: Sequence[str]) -> list[Notice]: ...

    async def notice_requests(self, notice_id: str) -> list[TakedownRequest]: ...

    async def record_evidence(self, records: Sequence[EvidenceRecord], *, at: datetime) -> None: ...


class ChannelFollowups:
    """Sends a follow-up as its notice was sent; returns what it went out as."""

    def __init__(
        self,
        *,
        store: FollowupStore,
        routes: Mapping[str, Route],
        authority: Authority,
        category_labels: Mapping[str, str],
    ) -> None:
        self._store = store
        self._routes = dict(routes)
        self._authority = authority
        self._labels = dict(category_labels)

    async def __call__(self, followup: Followup) -> str | None:
        [notice] = await self._store.get_notices([followup.notice_id])
        route = self._routes.get(notice.platform)
        if route is None:
            raise NotifierError(f"platform {notice.platform} is not configured")
        live = set(followup.urls)
        wanted = set(followup.request_ids)
        requests = [
            replace(request, urls=tuple(url for url in request.urls if url in live))
            for request in await self._store.notice_requests(notice.notice_id)
            if request.request_id in wanted
        ]
        requests = [request for request in requests if request.urls]
        content = notice_content(
            notice,
            route,
            requests,
            authority=self._authority,
            labels=self._labels,
            kind=MessageKind.FOLLOWUP,
        )
        content = replace(content, follow_up=followup.seq)
        channel = route.channel(notice.channel)
        result = await channel.send(content)
        # Dated when the follow-up was decided: this sender has no clock, and sends it at once.
        await self._store.record_evidence(result.evidence, at=followup.decided_at)
        if result.message_id:
            return result.message_id
        if channel.name == "api":
            return api_message_id(content)
        return result.detail[:500] or None
