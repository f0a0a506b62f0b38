"""Business metrics: the agent's stats document (GET /stats, or an in-process provider) mapped to
Prometheus metric families at scrape time.

The core exporter codes against this module only:

    source = build_source(config.get("agent"), namespace, provider=None)   # None: no business metrics
    families = await source.collect(timeout)   # never raises; agent_up 0 on any failure
    await source.close()

Contract and mapping syntax: docs/agent-stats.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from prometheus_client import Metric

from exporter.business.fetchers import FetchError, HttpStatsFetcher, ProviderStatsFetcher, StatsProvider
from exporter.business.mapping import Mapper, MetricSpec, PerSymbolPolicy
from exporter.business.settings import (
    AGENT_CONFIG_SCHEMA_PATH,
    AGENT_STATS_SCHEMA_PATH,
    AgentSettings,
    agent_config_problems,
    check_agent_config,
    parse_agent_settings,
)
from exporter.business.source import StatsSource

log = logging.getLogger("exporter.business")

__all__ = [
    "AGENT_CONFIG_SCHEMA_PATH",
    "AGENT_STATS_SCHEMA_PATH",
    "AgentSettings",
    "BusinessSource",
    "FetchError",
    "Mapper",
    "MetricSpec",
    "PerSymbolPolicy",
    "StatsProvider",
    "StatsSource",
    "agent_config_problems",
    "build_source",
    "check_agent_config",
    "parse_agent_settings",
]


@runtime_checkable
class BusinessSource(Protocol):
    async def collect(self, timeout: float) -> list[Metric]:
        """Fetch/compute the stats document once and return fresh metric families, always including
        <ns>_agent_up (1/0), <ns>_agent_fetch_duration_seconds and <ns>_agent_mapping_errors_total
        (a counter kept by the source across scrapes). Never raises: failures → agent_up 0."""
        ...

    async def close(self) -> None: ...


def build_source(
    agent_cfg: Mapping[str, Any] | None, namespace: str, *, provider: StatsProvider | None = None
) -> BusinessSource | None:
    """A source for the schema-valid, ${ENV}-expanded ``agent:`` section, or None when there is
    nothing to read (no ``agent.url`` and no provider). A provider wins over ``agent.url``.
    Raises ValueError when the section fails check_agent_config (the loader reports those first)."""
    settings = parse_agent_settings(agent_cfg)
    if provider is not None:
        if settings.url:
            log.info("in-process stats provider registered; agent.url is ignored")
        fetcher = ProviderStatsFetcher(provider)
    elif settings.url:
        fetcher = HttpStatsFetcher(
            settings.url, settings.headers, max_body_bytes=settings.max_body_bytes, ca_file=settings.ca_file
        )
    else:
        if agent_cfg:
            log.warning("the agent section has no url and no provider is registered: no business metrics")
        return None
    mapper = Mapper(settings.mapping, namespace, settings.per_symbol)
    return StatsSource(fetcher, mapper, max_timeout=settings.timeout)
