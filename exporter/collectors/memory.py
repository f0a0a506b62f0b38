"""memory: RAM and swap in bytes (gauges). Percentages are left to PromQL."""

from __future__ import annotations

from collections.abc import Iterator

import psutil
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.collectors.base import CollectorSpec

_FIELDS = (
    ("total", "total", "Total usable RAM in bytes."),
    ("available", "available", "RAM available for new processes without swapping, in bytes."),
    ("used", "used", "RAM in use (total - available), in bytes."),
    ("cached", "cached", "RAM used by the page cache, in bytes."),
    ("buffers", "buffers", "RAM used by kernel buffers, in bytes."),
)


class MemoryCollector:
    name = "memory"

    def __init__(self, namespace: str, options: None = None):
        self.ns = namespace

    def collect(self) -> Iterator[Metric]:
        vm = psutil.virtual_memory()
        for field, metric, doc in _FIELDS:
            value = getattr(vm, field, None)
            if value is not None:
                yield GaugeMetricFamily(f"{self.ns}_memory_{metric}_bytes", doc, value=value)
        sw = psutil.swap_memory()
        yield GaugeMetricFamily(f"{self.ns}_swap_total_bytes", "Total swap space in bytes.", value=sw.total)
        yield GaugeMetricFamily(f"{self.ns}_swap_used_bytes", "Swap space in use, in bytes.", value=sw.used)


SPEC = CollectorSpec("memory", True, "RAM and swap sizes", MemoryCollector)
