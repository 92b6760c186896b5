"""Prometheus metrics, one registry per daemon instance (so tests can run several)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

# One sample of a helper process's counters and histograms: (family, sample name, labels, value).
LaneSample = tuple[str, str, tuple[tuple[str, str], ...], float]
_SampleKey = tuple[str, str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenItemsSnapshot:
    """The open-item gauges as read from the store for one scrape (``(platform, label)`` keys)."""

    requests: dict[tuple[str, str], int]  # (platform, state) → open requests
    notices: dict[tuple[str, str], int]  # (platform, state) → open notices
    oldest_seconds: dict[tuple[str, str], float]  # (platform, kind) → age of the oldest, 0 when none


class OpenItemsCollector:
    """The gauges of open items and of the oldest open age (SPEC §10), from the snapshot the
    ``/metrics`` handler took just before rendering. Counters live in the process; these live in
    the store, so every daemon sharing a store reports the same values.

    ``snapshot`` is None when the store could not be read for this scrape: the gauges are left
    out (a stale value would hide the outage) and ``notifier_open_items_up`` says 0.
    """

    def __init__(self) -> None:
        self.snapshot: OpenItemsSnapshot | None = None

    def describe(self) -> Iterator[Metric]:
        # Names only, for the registry's duplicate check; no store read at registration.
        yield from self._families(None, up=False)

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        yield from self._families(snapshot, up=snapshot is not None)

    @staticmethod
    def _families(snapshot: OpenItemsSnapshot | None, *, up: bool) -> Iterator[Metric]:
        requests = GaugeMetricFamily(
            "notifier_open_requests",
            "Requests not in a final state, by platform and state (pending, batched, delivered, "
            "acknowledged); removed, rejected, failed and withdrawn ones are not counted.",
            labels=["platform", "state"],
        )
        notices = GaugeMetricFamily(
            "notifier_open_notices",
            "Notices neither resolved nor failed, by platform and state (queued, sending, retrying, "
            "awaiting_submission, delivered, acknowledged).",
            labels=["platform", "state"],
        )
        oldest = GaugeMetricFamily(
            "notifier_oldest_open_seconds",
            "Age of the oldest open request, by platform and kind: undelivered (pending or batched, "
            "since intake) or unacknowledged (delivered, since delivery); 0 when there is none.",
            labels=["platform", "kind"],
        )
        if snapshot is not None:
            for (platform, state), count in snapshot.requests.items():
                requests.add_metric([platform, state], count)
            for (platform, state), count in snapshot.notices.items():
                notices.add_metric([platform, state], count)
            for (platform, kind), seconds in snapshot.oldest_seconds.items():
                oldest.add_metric([platform, kind], seconds)
        yield requests
        yield notices
        yield oldest
        yield GaugeMetricFamily(
            "notifier_open_items_up",
            "1 when the open-item gauges were read from the store for this scrape; 0 when the store "
            "could not be read in time and they are left out.",
            value=1 if up else 0,
        )


class LaneSamples:
    """The counters and histograms of the daemon's helper processes (the urgent lane), as they last
    reported them; what a helper counted before it exited (or was killed and restarted) is kept,
    so the daemon's figures never go back."""

    def __init__(self) -> None:
        self._current: dict[_SampleKey, float] = {}
        self._retired: defaultdict[_SampleKey, float] = defaultdict(float)

    def report(self, samples: Iterable[LaneSample]) -> None:
        """A running helper's latest figures (each a running total since it started)."""
        self._current = {(family, name, labels): value for family, name, labels, value in samples}

    def retire(self) -> None:
        """The helper has exited: its last figures stay counted, and a new one starts from zero."""
        for key, value in self._current.items():
            self._retired[key] += value
        self._current = {}

    def totals(self) -> dict[_SampleKey, float]:
        totals = dict(self._retired)
        for key, value in self._current.items():
            totals[key] = totals.get(key, 0.0) + value
        return totals


def lane_samples(registry: CollectorRegistry) -> list[LaneSample]:
    """What a helper process reports of its registry: its counters' and histograms' samples."""
    return [
        (family.name, sample.name, tuple(sorted(sample.labels.items())), sample.value)
        for family in registry.collect()
        if family.type in ("counter", "histogram")
        for sample in family.samples
        if not sample.name.endswith("_created")
    ]


class MergedCollector:
    """The daemon's own metrics with its helper processes' added: one figure per series, as if
    one process had counted it all."""

    def __init__(self, registry: CollectorRegistry, lanes: LaneSamples) -> None:
        self._registry = registry
        self._lanes = lanes

    def collect(self) -> Iterator[Metric]:
        extra = self._lanes.totals()
        for family in self._registry.collect():
            if family.type not in ("counter", "histogram") or not extra:
                yield family
                continue
            merged: list[Sample] = []
            for sample in family.samples:
                key = (family.name, sample.name, tuple(sorted(sample.labels.items())))
                added = extra.pop(key, 0.0)
                merged.append(sample._replace(value=sample.value + added) if added else sample)
            # Series only a helper has counted yet, in the order it reported them (a histogram's
            # buckets stay together).
            for key in [key for key in extra if key[0] == family.name]:
                _, name, labels = key
                merged.append(Sample(name, dict(labels), extra.pop(key)))
            family.samples = merged
            yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.open_items = OpenItemsCollector()
        self.registry.register(self.open_items)
        # What /metrics serves: this process's registry with its helper processes' figures added.
        self.lanes = LaneSamples()
        self.exposition = CollectorRegistry(auto_describe=False)
        self.exposition.register(MergedCollector(self.registry, self.lanes))
        self.requests = Counter(
            "notifier_requests",
            "Takedown requests taken in, by platform and outcome (accepted, duplicate, conflict).",
            ["platform", "outcome"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "notifier_dead_letters",
            "Messages that could not be taken in and were kept as dead letters, by source.",
            ["source"],
            registry=self.registry,
        )
        self.intake_batch_seconds = Histogram(
            "notifier_intake_batch_seconds",
            "Time to validate, store and acknowledge one batch of queue messages.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.notices = Counter(
            "notifier_notices",
            "Notices formed, by platform and why the batch closed (full, waited, urgent).",
            ["platform", "reason"],
            registry=self.registry,
        )
        self.attempts = Counter(
            "notifier_attempts",
            "Send attempts, by platform, channel and outcome (delivered, transient_error, permanent_error).",
            ["platform", "channel", "outcome"],
            registry=self.registry,
        )
        self.notice_outcomes = Counter(
            "notifier_notice_outcomes",
            "Notices that reached an end of dispatch: delivered, awaiting_submission, fallback, failed.",
            ["platform", "outcome"],
            registry=self.registry,
        )
        self.bounces = Counter(
            "notifier_bounces",
            "Bounces received, by platform and the message that bounced (notice, reminder, escalation, "
            "alert) and what they changed (retry, fallback, fail, contact_bounced, ignore).",
            ["platform", "message", "step"],
            registry=self.registry,
        )
        self.alerts = Counter(
            "notifier_alerts",
            "Alerts sent to the authority's operations staff about notifier's own failures.",
            ["kind"],
            registry=self.registry,
        )
        self.acks = Counter(
            "notifier_acks",
            "Acknowledgements applied, by platform, source (callback, amqp, sqlite, email, manual), status.",
            ["platform", "source", "status"],
            registry=self.registry,
        )
        # Buckets from minutes to beyond the 36-hour bound, so a breach shows as its own bucket.
        hours = (0.25, 0.5, 1, 2, 4, 8, 12, 24, 36, 48, 72, 168)
        self.time_to_ack = Histogram(
            "notifier_time_to_ack_seconds",
            "Delivery to first acknowledgement, per request, by platform.",
            ["platform"],
            buckets=tuple(h * 3600 for h in hours),
            registry=self.registry,
        )
        self.time_to_removal = Histogram(
            "notifier_time_to_removal_seconds",
            "Delivery to removal, per request, by platform.",
            ["platform"],
            buckets=tuple(h * 3600 for h in hours),
            registry=self.registry,
        )
        self.store_retries = Counter(
            "notifier_store_retries",
            "Store operations retried because the store was unavailable.",
            ["operation"],
            registry=self.registry,
        )
        self.sla_reminders = Counter(
            "notifier_sla_reminders",
            "SLA reminders decided (sent at least once afterwards), by platform.",
            ["platform"],
            registry=self.registry,
        )
        self.sla_breaches = Counter(
            "notifier_sla_breaches",
            "SLA breaches decided, by platform and kind (ack_breach, removal_breach).",
            ["platform", "kind"],
            registry=self.registry,
        )
        self.checks = Counter(
            "notifier_checks",
            "Checks of a request's URL (SPEC §13), by platform and outcome (removed, live, inconclusive).",
            ["platform", "outcome"],
            registry=self.registry,
        )
        self.false_claims = Counter(
            "notifier_false_claims",
            "Claims of removal contradicted by a check that found the content live.",
            registry=self.registry,
        )
        self.reappeared = Counter(
            "notifier_reappeared",
            "Content found live again after a verified removal.",
            registry=self.registry,
        )
        self.sla_sends = Counter(
            "notifier_sla_sends",
            "Reminder and escalation sends, by platform, kind and outcome (sent, failed).",
            ["platform", "kind", "outcome"],
            registry=self.registry,
        )
