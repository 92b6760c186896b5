"""The daemon's /metrics counts what its helper process (the urgent lane) counted as its own."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from notifier.metrics import Metrics, lane_samples


def _values(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.exposition).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_helpers_counters_are_added_to_the_daemons_own() -> None:
    daemon, lane = Metrics(), Metrics()
    daemon.requests.labels(platform="telegram", outcome="accepted").inc(5)
    lane.requests.labels(platform="telegram", outcome="accepted").inc(2)
    lane.requests.labels(platform="x", outcome="accepted").inc()  # a series only the lane has
    lane.intake_batch_seconds.observe(0.003)
    lane.intake_batch_seconds.observe(0.2)
    daemon.intake_batch_seconds.observe(0.004)
    daemon.lanes.report(lane_samples(lane.registry))

    values = _values(daemon)
    assert values["notifier_requests_total", (("outcome", "accepted"), ("platform", "telegram"))] == 7
    assert values["notifier_requests_total", (("outcome", "accepted"), ("platform", "x"))] == 1
    assert values["notifier_intake_batch_seconds_count", ()] == 3
    assert values["notifier_intake_batch_seconds_bucket", (("le", "0.005"),)] == 2
    assert values["notifier_intake_batch_seconds_bucket", (("le", "0.25"),)] == 3
    assert abs(values["notifier_intake_batch_seconds_sum", ()] - 0.207) < 1e-9
    # The daemon's own registry is untouched: only what /metrics serves adds the lane's.
    own = daemon.registry.get_sample_value(
        "notifier_requests_total", {"platform": "telegram", "outcome": "accepted"}
    )
    assert own == 5


def test_what_a_dead_helper_counted_stays_counted() -> None:
    daemon, first, second = Metrics(), Metrics(), Metrics()
    first.notices.labels(platform="telegram", reason="urgent").inc(3)
    daemon.lanes.report(lane_samples(first.registry))
    daemon.lanes.retire()  # the lane was killed; a new one starts from zero
    second.notices.labels(platform="telegram", reason="urgent").inc(1)
    daemon.lanes.report(lane_samples(second.registry))

    key = ("notifier_notices_total", (("platform", "telegram"), ("reason", "urgent")))
    assert _values(daemon)[key] == 4
    second.notices.labels(platform="telegram", reason="urgent").inc(1)
    daemon.lanes.report(lane_samples(second.registry))  # a later report replaces the earlier one
    assert _values(daemon)[key] == 5


def test_gauges_and_creation_times_are_the_daemons_alone() -> None:
    lane = Metrics()
    lane.requests.labels(platform="telegram", outcome="accepted").inc()
    names = {name for _, name, _, _ in lane_samples(lane.registry)}
    assert "notifier_requests_total" in names
    assert not any(name.endswith("_created") for name in names)
    assert not any(name.startswith("notifier_open_") for name in names)
