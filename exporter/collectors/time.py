"""time: boot time and the current time, both unix seconds (uptime = the difference, in PromQL)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psutil
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.collectors.base import CollectorSpec


class TimeCollector:
    name = "time"

    def __init__(self, namespace: str, options: None = None, clock=time.time):
        self.ns = namespace
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            f"{self.ns}_boot_time_seconds", "System boot time, unix seconds.", value=psutil.boot_time()
        )
        yield GaugeMetricFamily(f"{self.ns}_time_seconds", "Current system time, unix seconds.", value=self.clock())


SPEC = CollectorSpec("time", True, "boot time and current time", TimeCollector)
