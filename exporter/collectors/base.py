"""What every system collector looks like, and the spec the registry (and the CLI flags) are built from."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client.metrics_core import Metric


class SystemCollector(Protocol):
    """Builds fresh metric families on every call; raising means "this collector failed this scrape"."""

    name: str

    def collect(self) -> Iterable[Metric]: ...


@dataclass(frozen=True)
class CollectorSpec:
    """One available collector: its flag name, whether it is on by default, and how to build it.

    ``options_type`` is the dataclass holding the collector's config section (or None).
    A collector object whose ``may_block`` attribute is true (it may hang in a syscall, like statvfs
    on a dead network mount) runs in a worker thread under the scrape deadline; the others only read
    /proc and run inline on the loop, which is cheaper than a thread hop."""

    name: str
    default_enabled: bool
    help: str
    factory: Callable[[str, Any], SystemCollector]
    options_type: type | None = None
