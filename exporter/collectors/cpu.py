"""cpu: seconds spent per mode (per CPU and/or the total), and the number of logical CPUs.

Raw counters only; utilisation is ``rate()`` in PromQL. ``guest``/``guest_nice`` are left out because
the kernel already counts them in ``user``/``nice`` (as node_exporter does in its main series)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.collectors.base import CollectorSpec

_SKIP_MODES = {"guest", "guest_nice"}


@dataclass(frozen=True)
class CpuOptions:
    per_cpu: bool = True
    total: bool = False


class CpuCollector:
    name = "cpu"

    def __init__(self, namespace: str, options: CpuOptions | None = None):
        self.ns = namespace
        self.options = options or CpuOptions()

    def collect(self) -> Iterator[Metric]:
        seconds = CounterMetricFamily(
            f"{self.ns}_cpu_seconds", "Seconds the CPUs spent in each mode.", labels=["cpu", "mode"]
        )
        per_cpu = psutil.cpu_times(percpu=True)
        if self.options.per_cpu:
            for i, times in enumerate(per_cpu):
                cpu = str(i)
                for mode, value in zip(times._fields, times, strict=True):
                    if mode not in _SKIP_MODES:
                        seconds.add_metric([cpu, mode], value)
        if self.options.total:
            times = psutil.cpu_times(percpu=False)
            for mode, value in zip(times._fields, times, strict=True):
                if mode not in _SKIP_MODES:
                    seconds.add_metric(["total", mode], value)
        yield seconds
        yield GaugeMetricFamily(f"{self.ns}_cpus", "Number of logical CPUs.", value=len(per_cpu))


SPEC = CollectorSpec("cpu", True, "CPU seconds by mode and the CPU count", CpuCollector, CpuOptions)
