"""Run agent-exporter inside the agent's own asyncio process.

The agent registers a *provider* — a sync or async callable returning the stats document of
docs/agent-stats.md — and/or prometheus_client collectors of its own; the exporter serves them
(plus the system collectors) on the same HTTP server the ``agent-exporter`` CLI uses::

    from exporter.embed import EmbeddedExporter

    exporter = EmbeddedExporter(listen_address="127.0.0.1:19817", provider=agent.stats)
    await exporter.start()          # inside the agent's running loop
    ...
    await exporter.stop()

    # or: async with EmbeddedExporter(provider=agent.stats) as exporter: ...

Why a provider rather than ``/stats`` over HTTP: no second port to secure, no serialisation, and
the document is read at scrape time from the live state. See docs/embedding.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jsonschema

from agentmon.configload import format_path
from exporter.business import (
    AGENT_CONFIG_SCHEMA_PATH,
    BusinessSource,
    StatsProvider,
    build_source,
    check_agent_config,
)
from exporter.config import ExporterSettings, load_exporter_config
from exporter.scrape import PromCollector
from exporter.server import ExporterServer

__all__ = ["EmbeddedExporter", "validate_agent_config"]


def validate_agent_config(agent_config: Mapping[str, Any]) -> list[str]:
    """Problems in an ``agent:`` mapping given in code ('agent.mapping[0].path: reason'), [] if fine."""
    schema = json.loads(AGENT_CONFIG_SCHEMA_PATH.read_text(encoding="utf-8"))
    errors = [
        f"{format_path(('agent', *err.absolute_path))}: {err.message}"
        for err in jsonschema.Draft202012Validator(schema).iter_errors(dict(agent_config))
    ]
    if errors:
        return errors
    return [f"{path}: {reason}" for path, reason in check_agent_config(agent_config)]


class EmbeddedExporter:
    """agent-exporter as a library: one ExporterServer in the caller's event loop.

    ``provider``: callable returning the stats document (sync: called on the loop, keep it quick;
    async: awaited under the scrape timeout). ``collectors``: prometheus_client collectors (objects
    with ``collect()`` yielding metric families); their ``collect()`` runs in a worker thread.
    ``agent_config``: the ``agent:`` section as a dict (mapping, per_symbol, timeout, …), validated
    here; ``config_file``: an agent-exporter YAML file (its ``agent:`` section is used when
    ``agent_config`` is not given, and POST /-/reload re-reads it). ``system_collectors``: names of
    the system collectors to run (default: the CLI's defaults; ``()`` for none).
    """

    def __init__(
        self,
        *,
        listen_address: str = "127.0.0.1:19817",
        provider: StatsProvider | None = None,
        collectors: Iterable[PromCollector] = (),
        agent_config: Mapping[str, Any] | None = None,
        config_file: str | None = None,
        namespace: str = "agentmon",
        system_collectors: Sequence[str] | None = None,
        telemetry_path: str = "/metrics",
        web_config_file: str | None = None,
    ):
        if agent_config is not None:
            problems = validate_agent_config(agent_config)
            if problems:
                raise ValueError("invalid agent_config:\n" + "\n".join(problems))
        config = load_exporter_config(config_file)  # raises agentmon.configload.ConfigError
        self._settings = ExporterSettings(
            listen_address=listen_address,
            telemetry_path=telemetry_path,
            namespace=namespace,
            config_file=config_file,
            config=config,
            web_config_file=web_config_file,
        )
        if system_collectors is not None:
            self._settings.collectors = tuple(system_collectors)
        self._agent_config = dict(agent_config) if agent_config is not None else None
        self._provider = provider
        self._collectors: list[PromCollector] = list(collectors)
        self._server: ExporterServer | None = None

    # -- registration (before start) -----------------------------------------------------------
    def set_provider(self, provider: StatsProvider) -> None:
        """Register (or replace) the stats provider."""
        self._require_not_started()
        if not callable(provider):
            raise TypeError("provider must be a callable returning the stats document")
        self._provider = provider

    def add_collector(self, collector: PromCollector) -> None:
        """Serve the families of a prometheus_client collector of the agent's own."""
        self._require_not_started()
        if not callable(getattr(collector, "collect", None)):
            raise TypeError("collector must have a collect() method yielding metric families")
        self._collectors.append(collector)

    def _require_not_started(self) -> None:
        if self._server is not None:
            raise RuntimeError("register providers and collectors before start()")

    # -- lifecycle ------------------------------------------------------------------------------
    def _source(self, file_agent_cfg: Mapping[str, Any] | None) -> BusinessSource | None:
        agent_cfg = self._agent_config if self._agent_config is not None else file_agent_cfg
        return build_source(agent_cfg, self._settings.namespace, provider=self._provider)

    async def start(self) -> None:
        """Bind and serve; call from the running event loop. Raises OSError if the address is taken."""
        self._require_not_started()
        factory = None
        if self._settings.config_file and self._agent_config is None:
            factory = self._source  # /-/reload re-reads the file's agent: section, same provider
        server = ExporterServer(
            self._settings, self._source(self._settings.config.agent), self._collectors, source_factory=factory
        )
        try:
            await server.start()
        except BaseException:
            await server.stop()
            raise
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop()

    async def __aenter__(self) -> EmbeddedExporter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The bound port (useful with ``listen_address='127.0.0.1:0'``)."""
        if self._server is None:
            raise RuntimeError("not started")
        return self._server.port

    @property
    def url(self) -> str:
        """The metrics URL, e.g. http://127.0.0.1:19817/metrics."""
        host = self._settings.listen_address.rpartition(":")[0].strip("[]") or "127.0.0.1"
        if host == "0.0.0.0":
            host = "127.0.0.1"
        return f"http://{host}:{self.port}{self._settings.telemetry_path}"
