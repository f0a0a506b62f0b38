"""Run one collector in isolation: time it, catch its failure, and emit the node-style scrape gauges.

One failing collector never fails the scrape: it reports ``<ns>_scrape_collector_success 0`` and its
families are dropped (partial output of a failed collector could be misleading)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

log = logging.getLogger("exporter.collectors")


@dataclass
class CollectorResult:
    name: str
    families: list[Metric] = field(default_factory=list)
    duration: float = 0.0
    success: bool = False
    error: str | None = None


def run_timed(name: str, collect: Callable[[], Iterable[Metric]]) -> CollectorResult:
    t0 = time.perf_counter()
    try:
        families = list(collect())
    except Exception as exc:  # any collector bug or OS error is contained here
        duration = time.perf_counter() - t0
        log.debug("collector failed", extra={"collector": name, "err": f"{type(exc).__name__}: {exc}"})
        return CollectorResult(name, [], duration, False, f"{type(exc).__name__}: {exc}")
    return CollectorResult(name, families, time.perf_counter() - t0, True)


class FailureLog:
    """Logs a collector's failure once when it starts (or its reason changes) and once when it
    recovers, instead of a warning on every scrape of a persistently failing collector."""

    def __init__(self) -> None:
        self._failing: dict[str, str] = {}

    def note(self, results: Sequence[CollectorResult]) -> None:
        for r in results:
            previous = self._failing.get(r.name)
            if r.success:
                if previous is not None:
                    del self._failing[r.name]
                    log.info("collector recovered", extra={"collector": r.name})
            else:
                reason = r.error or "reported failure"
                if previous != reason:
                    self._failing[r.name] = reason
                    log.warning("collector failed", extra={"collector": r.name, "err": reason})


def scrape_families(namespace: str, results: Sequence[CollectorResult]) -> list[Metric]:
    duration = GaugeMetricFamily(
        f"{namespace}_scrape_collector_duration_seconds", "Time the collector took in this scrape.", labels=["collector"]
    )
    success = GaugeMetricFamily(
        f"{namespace}_scrape_collector_success", "1 if the collector succeeded in this scrape.", labels=["collector"]
    )
    for r in results:
        duration.add_metric([r.name], r.duration)
        success.add_metric([r.name], 1.0 if r.success else 0.0)
    return [duration, success]
