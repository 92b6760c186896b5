"""The report's grouped statements on PostgreSQL (SPEC §8, §11), and the SQL pieces the report's
other statements share: the window, the nearest-rank percentiles, intervals, the transaction's
settings.

:func:`figures_statement` (counts, sums, extremes) and :func:`ranks_statement` (percentiles) spell
:mod:`notifier.domain.report`'s rules in SQL; the domain's tally stays the reference
(``tests/contract/test_report_store_contract.py`` compares the two).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Row,
    Select,
    String,
    and_,
    bindparam,
    case,
    column,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    true,
    type_coerce,
    values,
)
from sqlalchemy.dialects.postgresql import ARRAY, INTERVAL
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.domain.models import RequestState
from notifier.domain.report import (
    ANSWERED,
    NO_PROFILE,
    OPEN,
    REMOVED_WITHIN,
    RESOLVED,
    UNDELIVERED,
    Bounds,
    Distribution,
    spread,
)
from notifier.domain.sla import SlaKind
from notifier.domain.verification import CheckOutcome
from notifier.store.ingest import as_utc
from notifier.store.tables import UTCDateTime, notices, requests, sla_decisions, url_checks

# p50 and p90, nearest-rank. ``percentile_disc(f)`` returns the value at 1-based position
# ⌈f·n⌉ of the sorted input (PostgreSQL: ``ceil(percentile * number_of_rows)`` in float8), which
# is :func:`notifier.domain.report.nearest_rank`'s ⌈p·n/100⌉ as long as the float product rounds to
# the right side of an integer. It does: 0.5 is exact, and 0.9 is 0.9 + 2.2e-17, so 0.9·n is off by
# at most 2.2e-17·n, below half a unit in the last place of 0.9·n when 10 divides n and far below
# the 0.1 that separates 0.9·n from an integer otherwise (tests/unit/test_report_rules.py checks).
_P50_P90: ColumnElement[Any] = literal_column("ARRAY[0.5, 0.9]::float8[]")
_SECONDS: Any = ARRAY(Float())  # typed Any: SQLAlchemy's stubs don't type ARRAY's items


def window(since: datetime | None, until: datetime | None) -> ColumnElement[bool]:
    """The rule of :func:`notifier.domain.report.in_window` in SQL: by delivery time, or by intake
    time for requests never delivered."""
    delivered, ingested = requests.c.delivered_at, requests.c.ingested_at
    by_delivery: list[ColumnElement[bool]] = [delivered.is_not(None)]
    by_intake: list[ColumnElement[bool]] = [delivered.is_(None)]
    if since is not None:
        by_delivery.append(delivered >= as_utc(since))
        by_intake.append(ingested >= as_utc(since))
    if until is not None:
        by_delivery.append(delivered < as_utc(until))
        by_intake.append(ingested < as_utc(until))
    if since is None and until is None:
        return true()
    return or_(and_(*by_delivery), and_(*by_intake))


def counted(since: datetime | None, until: datetime | None) -> ColumnElement[bool]:
    """The requests the report's figures count, the verification figures included: those of the
    :func:`window`, but the withdrawn ones (counted apart, SPEC §14)."""
    return and_(window(since, until), requests.c.state != RequestState.WITHDRAWN.value)


def unfiled_notices() -> Any:
    """The notices decided unfiled past ``sla.file_within`` (one row each: the decision's key is
    (notice_id, kind)), to join requests to."""
    return (
        select(sla_decisions.c.notice_id)
        .where(sla_decisions.c.kind == SlaKind.UNDELIVERED_BREACH.value)
        .subquery("unfiled")
    )


async def for_report(conn: AsyncConnection) -> None:
    """Settle this transaction for the report's statements, before the first of them.

    - One snapshot (REPEATABLE READ): the report's figures come from several statements, which
      must all see the same requests; in PostgreSQL's default isolation each statement would see
      whatever had committed when it started.
    - JIT compilation off: the grouped statements are costed far above ``jit_above_cost``, and
      compiling their dozens of aggregate expressions took longer than it saved (2.2 s of JIT time,
      summed over the parallel workers, in a 4.9 s EXPLAIN ANALYZE at 1,000,000 requests).
    - ``work_mem`` 64 MB: the percentiles sort the group's durations, and at the default 4 MB the
      sorts spilled to temporary files (0.2 to 0.3 s of the ranks at 1,000,000 requests). This one
      read-only transaction may hold that much per sort; the setting ends with it.
    """
    await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
    await conn.execute(text("SET LOCAL jit = off"))
    await conn.execute(text("SET LOCAL work_mem = '64MB'"))


def _states(states: frozenset[RequestState]) -> list[str]:
    return sorted(state.value for state in states)


def interval(expr: ColumnElement[Any]) -> ColumnElement[timedelta]:
    """``expr`` as the INTERVAL PostgreSQL makes of a difference of timestamps (exact microseconds),
    not the timestamp type SQLAlchemy would otherwise infer and try to read back."""
    return type_coerce(expr, INTERVAL())


def ranked(duration: ColumnElement[timedelta]) -> ColumnElement[list[float]]:
    """``[p50, p90]`` of ``duration`` over the group's non-null values, in seconds (NULL when there
    are none): see :func:`ranked_seconds`.

    Ranked as ``date_part('epoch', duration)``, a float8, rather than as the interval itself: a
    float8 sorts by value in the sort's own slots where an interval is compared through a pointer,
    which took a fifth off the ranks at 1,000,000 requests. The order is the same: two different
    durations are at least a microsecond apart, and below about 70 years float8's rounding of the
    seconds stays under half a microsecond, so no two trade places and the one picked is the one
    the interval's ranking would pick.
    """
    ranked: ColumnElement[list[float]] = type_coerce(
        func.percentile_disc(_P50_P90).within_group(func.date_part("epoch", duration)), _SECONDS
    )
    return ranked


def ranked_seconds(ranked: list[float] | None, longest: timedelta | None) -> Distribution | None:
    """The distribution of :func:`ranked`'s ``[p50, p90]`` and the exact longest duration (None
    when the group has none), each truncated to whole seconds by :func:`notifier.domain.report.spread`
    as the tally truncates them: the seconds of a whole number of microseconds, rounded to float8,
    go back to the same timedelta (which rounds to the nearest microsecond)."""
    if ranked is None or longest is None:
        return None
    p50, p90 = ranked
    return spread(timedelta(seconds=p50), timedelta(seconds=p90), longest)


def _count(condition: ColumnElement[bool]) -> ColumnElement[int]:
    """How many of the group's rows meet ``condition`` (NULL counts as not met, as in the tally)."""
    return func.count().filter(condition)


def grouping(groups: Collection[str] | None) -> tuple[ColumnElement[str], list[ColumnElement[bool]]]:
    """What the report's rows are grouped by, and the conditions keeping only the groups asked for:
    the platform; with ``groups``, the request's deadline profile (:data:`NO_PROFILE` for none),
    of those in ``groups`` only (a request of an unknown profile is in no group, as in the tally)."""
    if groups is None:
        return requests.c.platform, []
    key = func.coalesce(requests.c.deadline, literal(NO_PROFILE, String()))
    return key, [key.in_(sorted(groups))]


def _durations() -> tuple[ColumnElement[timedelta], ColumnElement[timedelta], ColumnElement[timedelta]]:
    """A request's time to delivery, to its answer and to its removal (NULL where the tally counts
    none): the durations whose percentiles the report gives."""
    r = requests.c
    state, delivered = r.state, r.delivered_at
    answered_at = func.coalesce(r.acknowledged_at, case((state.in_(_states(RESOLVED)), r.resolved_at)))
    to_delivery = interval(delivered - r.ingested_at)
    to_ack = interval(answered_at - delivered)
    to_removal = interval(case((state == RequestState.REMOVED.value, r.resolved_at - delivered)))
    return to_delivery, to_ack, to_removal


def inconclusive_checks() -> Any:
    """Per request, its checks that concluded nothing (SPEC §13), to join requests to."""
    return (
        select(url_checks.c.request_id, func.count().label("checks"))
        .where(url_checks.c.outcome == CheckOutcome.INCONCLUSIVE.value)
        .group_by(url_checks.c.request_id)
        .subquery("inconclusive")
    )


def _verified_wait() -> ColumnElement[timedelta]:
    """Delivery → the first check that saw every URL gone; NULL where the tally counts no wait
    (not verified, or never delivered)."""
    return interval(requests.c.verified_removed_at - requests.c.delivered_at)


def _with_checks(joined: Any, checks: Any) -> Any:
    """``joined`` with :func:`inconclusive_checks` joined last, when there are ``checks``: joined
    before the notices, it led PostgreSQL to a plan that sorted every request (1.5 against 2.6 s at
    1,000,000 requests)."""
    if checks is None:
        return joined
    return joined.outerjoin(checks, checks.c.request_id == requests.c.request_id)


def verification_counts(inconclusive: Any) -> list[ColumnElement[Any]]:
    """The verification figures of a group of requests joined to :func:`inconclusive_checks`, but
    their percentiles (:func:`verification_ranks`), as
    :func:`notifier.domain.verification.verification_figures` counts them."""
    c = requests.c
    return [
        func.count().filter(c.verified_removed_at.is_not(None)).label("verified_removed"),
        func.coalesce(func.sum(c.false_claims), 0).label("false_claims"),
        func.count().filter(c.reappeared_at.is_not(None)).label("reappeared"),
        func.coalesce(func.sum(inconclusive.c.checks), 0).label("inconclusive"),
        func.max(_verified_wait()).label("verified_longest"),
    ]


def verification_ranks() -> list[ColumnElement[Any]]:
    """``[p50, p90]`` of the group's waits for a verified removal, in seconds (:func:`ranked`)."""
    return [ranked(_verified_wait()).label("verified_waits")]


def verification_of(row: Row[Any], ranks: Row[Any] | None) -> dict[str, Any]:
    """The §13 figures of a group from the columns of :func:`verification_counts` and (from
    ``ranks``, None when the group has none) :func:`verification_ranks`."""
    return {
        "verified_removed": int(row.verified_removed),
        "false_claims": int(row.false_claims),
        "reappeared": int(row.reappeared),
        "inconclusive": int(row.inconclusive),
        "time_to_verified_removal_s": ranked_seconds(ranks and ranks.verified_waits, row.verified_longest),
    }


def ranks_statement(
    bounds: Mapping[str, Bounds],
    *,
    since: datetime | None,
    until: datetime | None,
    groups: Collection[str] | None = None,
    verification: bool = False,
) -> Select[Any]:
    """Per group of :func:`figures_statement`, ``[p50, p90]`` of each duration in seconds
    (:func:`ranked`): ``to_delivery``, ``to_ack``, ``to_removal``; with ``verification``, also
    :func:`verification_ranks`.

    Apart from the other figures because an ordered-set aggregate such as ``percentile_disc``
    cannot be computed in parts: a statement holding one sorts every row by group and aggregates
    in one process. Alone, the percentiles read only the requests' own columns (no join, narrow
    rows to sort), and the other figures are aggregated in parallel, in parts (1,000,000
    requests: 3.2 s as one statement, 1.0 + 1.2 s as two).
    """
    r = requests.c
    key, keep = grouping(groups)
    to_delivery, to_ack, to_removal = _durations()
    columns: list[ColumnElement[Any]] = [
        key.label("platform"),
        ranked(to_delivery).label("to_delivery"),
        ranked(to_ack).label("to_ack"),
        ranked(to_removal).label("to_removal"),
        *(verification_ranks() if verification else []),
    ]
    return select(*columns).where(counted(since, until), r.platform.in_(list(bounds)), *keep).group_by(key)


def figures_statement(
    bounds: Mapping[str, Bounds],
    *,
    now: datetime,
    since: datetime | None,
    until: datetime | None,
    profiles: Mapping[tuple[str, str], Bounds] | None = None,
    groups: Collection[str] | None = None,
    verification: bool = False,
) -> Select[Any]:
    """One row of figures per platform of ``bounds`` with requests in the window (PostgreSQL); with
    ``groups``, per deadline profile of ``groups`` instead (:data:`NO_PROFILE` for requests without
    one), in the column still named ``platform``, as the tally's ``groups``. The percentiles are
    :func:`ranks_statement`'s. With ``verification``, also :func:`verification_counts`: read in
    the same pass over the requests, not in one of their own (a million requests: 1.2 s less).

    Each aggregate is a rule of :class:`notifier.domain.report.PlatformTally` read row by row:
    a duration is NULL where the tally appends nothing (``max`` and ``min`` skip NULLs), and a
    count's condition is NULL or false where the tally adds nothing. None of them is an
    ordered-set aggregate, so PostgreSQL aggregates in parts, in parallel workers.
    Notices are counted from one row per (platform, notice), a hash aggregate, rather than with
    ``count(DISTINCT …)``, which sorts every request again.
    """
    r = requests.c
    bound = values(
        column("platform", String()),
        column("ack_within", INTERVAL()),
        column("removal_within", INTERVAL()),
        name="bounds",
    ).data([(name, b.ack_within, b.removal_within) for name, b in bounds.items()])
    joined = requests.join(bound, bound.c.platform == r.platform)
    key, keep = grouping(groups)
    ack_within: ColumnElement[timedelta] = bound.c.ack_within
    removal_within: ColumnElement[timedelta] = bound.c.removal_within
    if profiles:
        # A request of a deadline profile is judged by that profile's bounds on its platform, when
        # the platform has them (SPEC §14), else by the platform's: as the tally's ``profiles``.
        own = values(
            column("platform", String()),
            column("profile", String()),
            column("ack_within", INTERVAL()),
            column("removal_within", INTERVAL()),
            name="profile_bounds",
        ).data([(p, name, b.ack_within, b.removal_within) for (p, name), b in profiles.items()])
        joined = joined.outerjoin(own, and_(own.c.platform == r.platform, own.c.profile == r.deadline))
        ack_within = func.coalesce(own.c.ack_within, bound.c.ack_within, type_=INTERVAL())
        removal_within = func.coalesce(own.c.removal_within, bound.c.removal_within, type_=INTERVAL())
    at = bindparam("now", as_utc(now), type_=UTCDateTime())
    state, delivered = r.state, r.delivered_at
    resolved, answered, is_open = _states(RESOLVED), _states(ANSWERED), _states(OPEN)
    undelivered = _states(UNDELIVERED)
    unfiled = unfiled_notices()
    removed = RequestState.REMOVED.value
    unacknowledged = and_(state == RequestState.DELIVERED.value, r.acknowledged_at.is_(None))

    to_delivery, to_ack, to_removal = _durations()
    age = interval(at - delivered)
    acknowledged = and_(delivered.is_not(None), or_(state.in_(answered), r.acknowledged_at.is_not(None)))
    ack_breach = or_(to_ack > ack_within, and_(unacknowledged, age > ack_within))
    # The removal clock (SPEC §14): from delivery, or from a clarification's answer; stopped while
    # one is asked and unanswered (then a decision is within, and an open request not breached).
    asked, clarified = notices.c.clarification_requested_at, notices.c.clarified_at
    stopped = and_(asked.is_not(None), or_(clarified.is_(None), clarified < asked))
    start = case((and_(asked.is_not(None), clarified >= asked), clarified), else_=delivered)
    on_clock = interval(case((stopped, literal_column("interval '0'")), else_=r.resolved_at - start))
    to_decision = interval(case((state.in_(resolved), on_clock)))
    removal_breach = or_(
        to_decision > removal_within,
        and_(state.in_(is_open), ~stopped, interval(at - start) > removal_within),
    )
    paused_for = interval(case((stopped, at), else_=clarified) - asked)
    checks = inconclusive_checks() if verification else None

    per_request = (
        select(
            key.label("platform"),
            func.count().label("requests"),
            _count(acknowledged).label("acknowledged"),
            _count(state == removed).label("removed"),
            _count(state == RequestState.REJECTED.value).label("rejected"),
            _count(state.in_(is_open + undelivered)).label("open"),
            _count(state.in_(undelivered)).label("undelivered"),
            _count(state == RequestState.FAILED.value).label("failed"),
            func.max(to_delivery).label("to_delivery_max"),
            func.max(to_ack).label("to_ack_max"),
            func.max(to_removal).label("to_removal_max"),
            _count(ack_breach).label("ack_breaches"),
            _count(removal_breach).label("removal_breaches"),
            _count(unfiled.c.notice_id.is_not(None)).label("undelivered_breaches"),
            _count(and_(state == removed, on_clock <= removal_within)).label("removed_in_bound"),
            func.coalesce(
                func.sum(func.floor(func.extract("epoch", paused_for)) + notices.c.earlier_paused_s).filter(
                    asked.is_not(None)
                ),
                0,
            ).label("paused_s"),
            *(
                _count(to_removal <= bindparam(f"within_{name}", within, type_=INTERVAL())).label(
                    f"removed_within_{name}"
                )
                for name, within in REMOVED_WITHIN
            ),
            func.min(delivered).filter(unacknowledged).label("oldest_open"),
            func.min(r.ingested_at).filter(state.in_(undelivered)).label("oldest_undelivered"),
            *(verification_counts(checks) if checks is not None else []),
        )
        .select_from(
            _with_checks(
                joined.outerjoin(unfiled, unfiled.c.notice_id == r.notice_id).outerjoin(
                    notices, notices.c.notice_id == r.notice_id
                ),
                checks,
            )
        )
        .where(counted(since, until), *keep)
        .group_by(key)
        .subquery("per_request")
    )
    per_notice_rows = (
        select(key.label("platform"), func.bool_or(delivered.is_not(None)).label("reached"))
        .where(counted(since, until), r.platform.in_(list(bounds)), r.notice_id.is_not(None), *keep)
        .group_by(key, r.notice_id)
        .subquery("per_notice_rows")
    )
    per_notice = (
        select(
            per_notice_rows.c.platform,
            func.count().label("notices"),
            _count(per_notice_rows.c.reached).label("delivered"),
        )
        .group_by(per_notice_rows.c.platform)
        .subquery("per_notice")
    )
    return select(
        per_request,
        func.coalesce(per_notice.c.notices, 0).label("notices"),
        func.coalesce(per_notice.c.delivered, 0).label("delivered"),
    ).select_from(per_request.outerjoin(per_notice, per_notice.c.platform == per_request.c.platform))
