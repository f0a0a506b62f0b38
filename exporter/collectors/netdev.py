"""netdev: bytes/packets/errors/drops per network interface from <procfs>/net/dev."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import psutil
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.collectors.base import CollectorSpec

DEFAULT_DEVICE_EXCLUDE = r"^lo$"

_FIELDS = (
    ("bytes_recv", "receive_bytes", "Bytes received."),
    ("bytes_sent", "transmit_bytes", "Bytes transmitted."),
    ("packets_recv", "receive_packets", "Packets received."),
    ("packets_sent", "transmit_packets", "Packets transmitted."),
    ("errin", "receive_errs", "Receive errors."),
    ("errout", "transmit_errs", "Transmit errors."),
    ("dropin", "receive_drop", "Received packets dropped."),
    ("dropout", "transmit_drop", "Transmitted packets dropped."),
)


@dataclass(frozen=True)
class NetdevOptions:
    device_exclude: re.Pattern | None = re.compile(DEFAULT_DEVICE_EXCLUDE)
    device_include: re.Pattern | None = None


class NetdevCollector:
    name = "netdev"

    def __init__(self, namespace: str, options: NetdevOptions | None = None):
        self.ns = namespace
        self.options = options or NetdevOptions()

    def collect(self) -> Iterator[Metric]:
        fams = [
            (CounterMetricFamily(f"{self.ns}_network_{suffix}", doc, labels=["device"]), attr)
            for attr, suffix, doc in _FIELDS
        ]
        inc, exc = self.options.device_include, self.options.device_exclude
        for dev, c in sorted(psutil.net_io_counters(pernic=True, nowrap=False).items()):
            if (inc is not None and not inc.search(dev)) or (exc is not None and exc.search(dev)):
                continue
            for fam, attr in fams:
                fam.add_metric([dev], getattr(c, attr))
        for fam, _ in fams:
            yield fam


SPEC = CollectorSpec("netdev", True, "network interface counters", NetdevCollector, NetdevOptions)
