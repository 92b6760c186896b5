"""The compliance report (SPEC §8): gather the rows, compute the figures, render them.

The rules are :mod:`notifier.domain.report`'s. A store that computes the figures itself
(:class:`FiguresStore`: PostgreSQL in grouped SQL, so a million requests are never fetched) is asked
for them; any other store hands over the rows of the window and the domain's tally computes them.
This module also chooses the platforms and their bounds from the settings, and writes the document
as JSON, CSV, a rich table or a self-contained HTML page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from notifier.domain.evidence import Head
from notifier.domain.models import format_timestamp
from notifier.domain.report import (
    NO_PROFILE,
    Bounds,
    PlatformFigures,
    ReportRow,
    platform_documents,
    tally,
)
from notifier.domain.report_acks import AckSources, ack_source_figures
from notifier.domain.verification import empty_verification_figures
from notifier.services.report_render import (
    FORMATS,
    csv_header,
    groups_of,
    render,
    render_csv,
    render_html,
    render_json,
    render_table,
)
from notifier.settings import Settings

GROUPINGS = ("platform", "profile")


class ReportStore(Protocol):
    """What the report reads of a store: the rows of the window and the dead letters."""

    async def report_rows(
        self, *, since: datetime | None, until: datetime | None, platforms: Sequence[str] | None
    ) -> list[ReportRow]: ...

    async def dead_letter_counts(self, since: datetime | None, until: datetime | None) -> dict[str, int]: ...


@runtime_checkable
class FiguresStore(ReportStore, Protocol):
    """A report store that also computes the figures itself, as :func:`notifier.domain.report.tally`
    would from its rows (the contract tests hold it to that, on the same data)."""

    async def report_figures(
        self,
        *,
        bounds: Mapping[str, Bounds],
        now: datetime,
        since: datetime | None,
        until: datetime | None,
        profiles: Mapping[tuple[str, str], Bounds] | None = None,
        groups: Mapping[str, Bounds] | None = None,
        verification: bool = False,
    ) -> dict[str, PlatformFigures]:
        """The figures of the platforms of ``bounds`` over the requests the window selects (as
        :func:`notifier.domain.report.in_window` does), a request of a deadline profile judged by
        ``profiles[(platform, profile)]`` when there is one; with ``groups``, per deadline profile
        instead (the tally's ``profiles`` and ``groups``). A group with none may be left out.
        With ``verification`` (not with ``groups``), each platform's
        :attr:`~notifier.domain.report.PlatformFigures.verification` holds what
        :meth:`VerificationReportStore.verification_figures` would give for it."""
        ...


@runtime_checkable
class AckSourcesReportStore(Protocol):
    """A report store that tells acknowledgements entered by hand from the platform's own (§15)."""

    async def ack_sources(
        self, *, since: datetime | None, until: datetime | None, platforms: Sequence[str]
    ) -> dict[str, AckSources]: ...


@runtime_checkable
class LedgerStore(Protocol):
    """A report store that keeps the evidence record (SPEC §15): the report carries its head."""

    async def ledger_head(self) -> Head: ...


@runtime_checkable
class VerificationReportStore(Protocol):
    """A report store that keeps checks (SPEC §13): per platform with requests in the window, the
    figures :func:`notifier.domain.verification.verification_figures` gives of its requests."""

    async def verification_figures(
        self, *, since: datetime | None, until: datetime | None, platforms: Sequence[str] | None
    ) -> dict[str, dict[str, Any]]: ...


def platform_bounds(settings: Settings, platforms: Sequence[str] | None = None) -> dict[str, Bounds]:
    """Each configured platform's bounds (its override, else the global one), in configuration
    order, narrowed to ``platforms`` when given (in that order)."""
    names = list(settings.platforms) if not platforms else list(dict.fromkeys(platforms))
    bounds: dict[str, Bounds] = {}
    for name in names:
        sla = settings.platforms[name].sla
        bounds[name] = Bounds(
            ack_within=sla.ack_within or settings.sla.ack_within,
            removal_within=sla.removal_within or settings.sla.removal_within,
        )
    return bounds


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileBounds:
    """The deadline profiles a report judges requests by (SPEC §14): each profile's bounds on each
    platform, and each profile's own bounds and label for its group of ``--by profile``."""

    on_platform: Mapping[tuple[str, str], Bounds] = field(default_factory=dict)
    groups: Mapping[str, Bounds] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)


def profile_bounds(settings: Settings) -> ProfileBounds:
    """The configured profiles as the report uses them; the group of requests without one
    (:data:`NO_PROFILE`) carries the ``[sla]`` defaults."""
    on_platform = {
        (platform, name): Bounds(ack_within=p.ack_within, removal_within=p.removal_within)
        for platform in settings.platforms
        for name, p in settings.platform_profiles(platform).items()
    }
    groups = {
        name: Bounds(ack_within=p.ack_within, removal_within=p.removal_within)
        for name, p in ((n, settings.profile(n)) for n in settings.deadlines)
    }
    groups[NO_PROFILE] = Bounds(
        ack_within=settings.sla.ack_within, removal_within=settings.sla.removal_within
    )
    labels = {name: p.label for name, p in settings.deadlines.items()} | {NO_PROFILE: "platform bounds"}
    return ProfileBounds(on_platform=on_platform, groups=groups, labels=labels)


async def build_report(
    store: ReportStore,
    bounds: Mapping[str, Bounds],
    *,
    now: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
    profiles: ProfileBounds | None = None,
    by: str = "platform",
) -> dict[str, Any]:
    """``{"generated_at", "since", "until", "platforms": [...]}``; every platform of ``bounds``
    appears, zeros and nulls when it has nothing in the window. ``by="profile"``: ``"profiles"``
    instead, one group per deadline profile (and one for requests without one). Each request is
    judged by its own profile's bounds on its platform."""
    if by not in GROUPINGS:
        raise ValueError(f"unknown grouping {by!r} (use {', '.join(GROUPINGS)})")
    profiles = profiles or ProfileBounds()
    if isinstance(store, FiguresStore):
        figures = await store.report_figures(
            bounds=bounds,
            now=now,
            since=since,
            until=until,
            profiles=profiles.on_platform,
            groups=profiles.groups if by == "profile" else None,
            verification=by == "platform",
        )
    else:
        rows = await store.report_rows(since=since, until=until, platforms=list(bounds))
        groups = profiles.groups if by == "profile" else None
        figures = tally(
            rows,
            bounds=bounds,
            now=now,
            since=since,
            until=until,
            profiles=profiles.on_platform,
            groups=groups,
        )
    letters = await store.dead_letter_counts(since, until)
    document: dict[str, Any] = {
        "generated_at": format_timestamp(now),
        "since": None if since is None else format_timestamp(since),
        "until": None if until is None else format_timestamp(until),
    }
    if isinstance(store, LedgerStore):
        # Read after the figures: the record up to this head holds everything they were made from.
        document["ledger_head"] = (await store.ledger_head()).hash
    if by == "platform":
        documents = platform_documents(figures, bounds=bounds, dead_letters=letters)
        # §13's figures after §8's, for every platform (zeros where the store keeps no checks).
        verified: dict[str, dict[str, Any]] = {}
        if isinstance(store, FiguresStore):
            verified = {p: f.verification for p, f in figures.items() if f.verification is not None}
        elif isinstance(store, VerificationReportStore):
            verified = await store.verification_figures(since=since, until=until, platforms=list(bounds))
        sources: dict[str, AckSources] = {}
        if isinstance(store, AckSourcesReportStore):
            sources = await store.ack_sources(since=since, until=until, platforms=list(bounds))
        for group in documents:
            group.update(verified.get(group["platform"], empty_verification_figures()))
            group.update(ack_source_figures(sources, group["platform"]))
        document["platforms"] = documents
        return document
    document["profiles"] = [
        {"profile": group["platform"] or None, "label": profiles.labels.get(group["platform"], "")}
        | {key: value for key, value in group.items() if key != "platform"}
        for group in platform_documents(figures, bounds=profiles.groups)
    ]
    return document


__all__ = [
    "FORMATS",
    "GROUPINGS",
    "AckSourcesReportStore",
    "FiguresStore",
    "LedgerStore",
    "ProfileBounds",
    "ReportStore",
    "VerificationReportStore",
    "build_report",
    "csv_header",
    "groups_of",
    "platform_bounds",
    "profile_bounds",
    "render",
    "render_csv",
    "render_html",
    "render_json",
    "render_table",
]
