"""alert-receiver metrics, exactly the Receiver table of docs/metrics.md, on a per-app registry."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

NAMESPACE = "alert_receiver"
REJECT_REASONS = (
    "not_json", "wrong_content_type", "json_array", "unknown_route", "too_large", "schema", "unauthorized",
    "store_unavailable",
)
OUTCOMES = ("delivered", "retryable_failure", "permanent_failure")
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class ReceiverMetrics:
    """Every metric the receiver exposes; one instance per app (no global registry)."""

    def __init__(self, version: str):
        self.registry = CollectorRegistry(auto_describe=True)
        r, ns = self.registry, NAMESPACE
        self.received = Counter("notifications_received", "Notifications accepted and stored.",
                                ["route", "status"], namespace=ns, registry=r)
        self.rejected = Counter("notifications_rejected", "Requests refused, by reason.", ["reason"],
                                namespace=ns, registry=r)
        self.deduplicated = Counter("notifications_deduplicated",
                                    "Notifications acknowledged but not delivered again (seen within the dedup window).",
                                    ["route"], namespace=ns, registry=r)
        self.deliveries = Counter("deliveries", "Delivery attempts (one per message sent), by outcome.",
                                  ["target", "channel", "outcome"], namespace=ns, registry=r)
        self.retries = Counter("delivery_retries", "Jobs scheduled for another attempt after a retryable failure.",
                               ["target", "channel"], namespace=ns, registry=r)
        self.dead_letters = Counter("dead_letters", "Jobs given up (permanent failure or retry_max_age exceeded).",
                                    ["target", "channel"], namespace=ns, registry=r)
        self.digests = Counter("digests", "Backlogs coalesced into one digest message.", ["target", "channel"],
                               namespace=ns, registry=r)
        self.queue_jobs = Gauge("queue_jobs", "Pending delivery jobs.", ["target"], namespace=ns, registry=r)
        self.queue_oldest = Gauge("queue_oldest_job_age_seconds", "Age of the oldest pending job.", ["target"],
                                  namespace=ns, registry=r)
        self.latency = Histogram("delivery_latency_seconds", "Accept → delivered.", ["target", "channel"],
                                 namespace=ns, registry=r, buckets=LATENCY_BUCKETS)
        self.template_errors = Counter("template_errors", "Custom template failed, default used.", ["target"],
                                       namespace=ns, registry=r)
        self.reload_ok = Gauge("config_last_reload_successful", "1 if the last config (re)load succeeded.",
                               namespace=ns, registry=r)
        self.reload_ts = Gauge("config_last_reload_success_timestamp_seconds",
                               "Time of the last successful config (re)load.", namespace=ns, registry=r)
        self.build_info = Gauge("build_info", "Always 1.", ["version"], namespace=ns, registry=r)
        self.build_info.labels(version=version).set(1)
        for reason in REJECT_REASONS:
            self.rejected.labels(reason=reason)
        self._received: dict[tuple[str, str], Any] = {}

    def received_child(self, route: str, status: str) -> Any:
        """The ``received`` counter child for (route, status), looked up once: ``labels()`` costs
        several microseconds per call on the accept path."""
        child = self._received.get((route, status))
        if child is None:
            child = self._received[(route, status)] = self.received.labels(route=route, status=status)
        return child

    def init_targets(self, targets: Mapping[str, str]) -> None:
        """Create zero-valued series for every configured target (name → channel type)."""
        for name, channel in targets.items():
            for outcome in OUTCOMES:
                self.deliveries.labels(target=name, channel=channel, outcome=outcome)
            for m in (self.retries, self.dead_letters, self.digests):
                m.labels(target=name, channel=channel)
            self.template_errors.labels(target=name)
            self.queue_jobs.labels(target=name).set(0)
            self.queue_oldest.labels(target=name).set(0)

    def set_queue(self, stats: Mapping[str, tuple[int, float]], targets: Mapping[str, str]) -> None:
        now = time.time()
        for name in set(targets) | set(stats):
            count, oldest = stats.get(name, (0, None))
            self.queue_jobs.labels(target=name).set(count)
            self.queue_oldest.labels(target=name).set(max(0.0, now - oldest) if oldest else 0.0)

    def reloaded(self, ok: bool) -> None:
        self.reload_ok.set(1 if ok else 0)
        if ok:
            self.reload_ts.set(time.time())
