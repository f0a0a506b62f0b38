"""The system collectors available to agent-exporter, one module each, and how to build the enabled set.

``AVAILABLE`` is a constant table (like node_exporter's factory registry): the CLI derives its
``--collector.<name>`` / ``--no-collector.<name>`` flags from it and the config schema names the same
collectors. Runtime state lives in the collector objects built per app, never here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from exporter.collectors import cpu, diskstats, filesystem, loadavg, memory, netdev, process
from exporter.collectors import time as time_collector
from exporter.collectors.base import CollectorSpec, SystemCollector

AVAILABLE: dict[str, CollectorSpec] = {
    spec.name: spec
    for spec in (
        cpu.SPEC,
        memory.SPEC,
        filesystem.SPEC,
        diskstats.SPEC,
        netdev.SPEC,
        loadavg.SPEC,
        time_collector.SPEC,
        process.SPEC,
    )
}

DEFAULT_ENABLED: tuple[str, ...] = tuple(n for n, s in AVAILABLE.items() if s.default_enabled)


def build_collectors(
    enabled: Iterable[str], namespace: str, options: Mapping[str, Any] | None = None
) -> list[SystemCollector]:
    """Instantiate the enabled collectors (in AVAILABLE order) with their typed options."""
    wanted = set(enabled)
    unknown = wanted - set(AVAILABLE)
    if unknown:
        raise ValueError(f"unknown collector(s): {', '.join(sorted(unknown))}")
    options = options or {}
    return [spec.factory(namespace, options.get(name)) for name, spec in AVAILABLE.items() if name in wanted]


__all__ = ["AVAILABLE", "DEFAULT_ENABLED", "CollectorSpec", "SystemCollector", "build_collectors"]
