"""loadavg: the 1/5/15-minute load averages, read from <procfs>/loadavg (psutil.PROCFS_PATH)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psutil
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.collectors.base import CollectorSpec


def read_loadavg() -> tuple[float, float, float]:
    try:
        with open(f"{psutil.PROCFS_PATH}/loadavg", "rb") as f:
            one, five, fifteen = f.read().split()[:3]
        return float(one), float(five), float(fifteen)
    except FileNotFoundError:  # not Linux
        return os.getloadavg()


class LoadavgCollector:
    name = "loadavg"

    def __init__(self, namespace: str, options: None = None):
        self.ns = namespace

    def collect(self) -> Iterator[Metric]:
        l1, l5, l15 = read_loadavg()
        yield GaugeMetricFamily(f"{self.ns}_load1", "1-minute load average.", value=l1)
        yield GaugeMetricFamily(f"{self.ns}_load5", "5-minute load average.", value=l5)
        yield GaugeMetricFamily(f"{self.ns}_load15", "15-minute load average.", value=l15)


SPEC = CollectorSpec("loadavg", True, "load averages", LoadavgCollector)
