"""diskstats: I/O counters per block device from <procfs>/diskstats (partitions excluded by default)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import psutil
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.collectors.base import CollectorSpec

DEFAULT_DEVICE_EXCLUDE = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$"

# (psutil field, metric suffix, help, divisor: psutil reports times in ms)
_FIELDS = (
    ("read_count", "reads_completed", "Reads completed.", 1),
    ("write_count", "writes_completed", "Writes completed.", 1),
    ("read_bytes", "read_bytes", "Bytes read.", 1),
    ("write_bytes", "written_bytes", "Bytes written.", 1),
    ("read_time", "read_time_seconds", "Seconds spent reading.", 1000),
    ("write_time", "write_time_seconds", "Seconds spent writing.", 1000),
    ("busy_time", "io_time_seconds", "Seconds spent doing I/O.", 1000),
)


@dataclass(frozen=True)
class DiskstatsOptions:
    device_exclude: re.Pattern = field(default_factory=lambda: re.compile(DEFAULT_DEVICE_EXCLUDE))


class DiskstatsCollector:
    name = "diskstats"

    def __init__(self, namespace: str, options: DiskstatsOptions | None = None):
        self.ns = namespace
        self.options = options or DiskstatsOptions()

    def collect(self) -> Iterator[Metric]:
        fams = [
            (CounterMetricFamily(f"{self.ns}_disk_{suffix}", doc, labels=["device"]), attr, scale)
            for attr, suffix, doc, scale in _FIELDS
        ]
        exclude = self.options.device_exclude
        for dev, c in sorted((psutil.disk_io_counters(perdisk=True, nowrap=False) or {}).items()):
            if exclude.search(dev):
                continue
            for fam, attr, scale in fams:
                value = getattr(c, attr, None)
                if value is not None:
                    fam.add_metric([dev], value / scale if scale != 1 else value)
        for fam, _, _ in fams:
            yield fam


SPEC = CollectorSpec("diskstats", True, "block device I/O counters", DiskstatsCollector, DiskstatsOptions)
