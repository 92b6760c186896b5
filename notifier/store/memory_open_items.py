"""The in-memory side of the open-item gauges of ``/metrics``: the same counts and oldest times as
:mod:`notifier.store.open_items_sql` (``tests/contract/test_open_items_contract.py`` runs on both)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from notifier.domain.models import (
    OPEN_NOTICE_STATES,
    OPEN_REQUEST_STATES,
    UNDELIVERED_REQUEST_STATES,
    RequestState,
)
from notifier.ports import OpenItems

if TYPE_CHECKING:
    from notifier.store.memory_notices import RequestRow, _NoticeRow


def _older(known: datetime | None, candidate: datetime) -> datetime:
    return candidate if known is None else min(known, candidate)


class MemoryOpenItemsMixin:
    """:meth:`open_items` over the in-memory store's dicts (a full pass: the fake holds test data)."""

    if TYPE_CHECKING:
        _requests: dict[str, RequestRow]
        _notices: dict[str, _NoticeRow]

        def _check(self) -> None: ...

    async def open_items(self, platforms: Sequence[str]) -> OpenItems:
        self._check()
        wanted = set(platforms)
        requests: dict[str, dict[str, int]] = {}
        undelivered: dict[str, datetime] = {}
        unacknowledged: dict[str, datetime] = {}
        for row in self._requests.values():
            stored = row.stored
            platform = stored.request.platform
            if platform not in wanted or stored.state not in OPEN_REQUEST_STATES:
                continue
            per_platform = requests.setdefault(platform, {})
            per_platform[stored.state.value] = per_platform.get(stored.state.value, 0) + 1
            if stored.state in UNDELIVERED_REQUEST_STATES:
                undelivered[platform] = _older(undelivered.get(platform), stored.ingested_at)
            elif stored.state is RequestState.DELIVERED and stored.delivered_at is not None:
                unacknowledged[platform] = _older(unacknowledged.get(platform), stored.delivered_at)
        notices: dict[str, dict[str, int]] = {}
        for entry in self._notices.values():
            notice = entry.notice
            if notice.platform not in wanted or notice.state not in OPEN_NOTICE_STATES:
                continue
            per_platform = notices.setdefault(notice.platform, {})
            per_platform[notice.state.value] = per_platform.get(notice.state.value, 0) + 1
        return OpenItems(
            requests=requests,
            notices=notices,
            oldest_undelivered=undelivered,
            oldest_unacknowledged=unacknowledged,
        )
