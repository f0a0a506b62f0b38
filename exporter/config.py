"""agent-exporter configuration: the YAML file (parsed once into typed options) and the runtime settings.

The file is validated with the JSON schema shipped in exporter/schemas (the business half's schema is
merged in under ``agent``), then semantic checks compile every regex and check the process selector;
every problem is reported as ``file:line: key.path: reason`` by agentmon.configload."""

from __future__ import annotations

import copy
import os
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.collectors import DEFAULT_ENABLED
from exporter.collectors.cpu import CpuOptions
from exporter.collectors.diskstats import DEFAULT_DEVICE_EXCLUDE as DISK_EXCLUDE
from exporter.collectors.diskstats import DiskstatsOptions
from exporter.collectors.filesystem import (
    DEFAULT_FS_TYPES_EXCLUDE,
    DEFAULT_MOUNT_POINTS_EXCLUDE,
    FilesystemOptions,
)
from exporter.collectors.netdev import DEFAULT_DEVICE_EXCLUDE as NET_EXCLUDE
from exporter.collectors.netdev import NetdevOptions
from exporter.collectors.process import ProcessOptions

SCHEMA_PATH = Path(__file__).parent / "schemas" / "exporter-config.schema.json"
DEFAULT_LISTEN = "127.0.0.1:19817"
DEFAULT_SCRAPE_TIMEOUT = 10.0



def _business():
    """exporter.business (schema path, semantic checks) or None. Imported only when a config file is
    loaded: the validator stack (jsonschema, the mapping) costs ~4 MiB RSS a config-less exporter
    does not need."""
    try:
        import exporter.business as business
    except ImportError:  # pragma: no cover - the business half is optional for the core
        return None
    return business

_REGEX_KEYS = (
    ("filesystem", "mount_points_exclude"),
    ("filesystem", "fs_types_exclude"),
    ("diskstats", "device_exclude"),
    ("netdev", "device_exclude"),
    ("netdev", "device_include"),
    ("process", "name"),
    ("process", "cmdline"),
)
_PROCESS_SELECTORS = ("pidfile", "pid", "name", "cmdline")


@dataclass(frozen=True)
class ExporterConfig:
    """The parsed config file (or the defaults when there is none)."""

    collector_options: Mapping[str, Any] = field(default_factory=dict)
    scrape_timeout: float = DEFAULT_SCRAPE_TIMEOUT
    agent: dict | None = None
    source: str = "<defaults>"


@dataclass(frozen=True)
class PushSettings:
    gateway_url: str
    interval: float = 15.0
    job: str = "agent-exporter"
    instance: str = field(default_factory=socket.gethostname)


@dataclass
class ExporterSettings:
    """Everything the server needs: flags plus the loaded config. All fields have working defaults,
    so ``ExporterSettings(listen_address="127.0.0.1:0")`` is enough for an embedded exporter."""

    listen_address: str = DEFAULT_LISTEN
    telemetry_path: str = "/metrics"
    namespace: str = "agentmon"
    collectors: tuple[str, ...] = DEFAULT_ENABLED
    config_file: str | None = None
    config: ExporterConfig = field(default_factory=ExporterConfig)
    web_config_file: str | None = None
    max_requests: int = 40
    push: PushSettings | None = None
    render_thread_threshold: int = 5000  # series; above this, rendering runs in a worker thread


def exporter_schema() -> dict[str, Any]:
    """Our schema with the business half's ``agent`` schema embedded (its own $id keeps its $refs local)."""
    from agentmon.configload import load_schema

    schema = load_schema(SCHEMA_PATH)
    business = _business()
    if business is not None and Path(business.AGENT_CONFIG_SCHEMA_PATH).is_file():
        agent = copy.deepcopy(load_schema(business.AGENT_CONFIG_SCHEMA_PATH))
        agent.pop("$schema", None)
        agent.setdefault("$id", "urn:agentmon:agent-config")
        if agent.get("type") == "object":
            agent["type"] = ["object", "null"]  # `agent:` left empty means no business source
        schema["properties"]["agent"] = agent
    return schema


def _parse_key_path(path: str | Iterable) -> tuple[str | int, ...]:
    if not isinstance(path, str):
        return tuple(path)
    out: list[str | int] = []
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        out.append(int(part[1:-1]) if part.startswith("[") else part)
    return tuple(out)


def _semantic_checks(data: dict[str, Any]) -> Iterable[tuple[tuple, str]]:
    collectors = data.get("collectors") or {}
    for name, key in _REGEX_KEYS:
        value = (collectors.get(name) or {}).get(key)
        if isinstance(value, str):
            try:
                re.compile(value)
            except re.error as exc:
                yield ("collectors", name, key), f"invalid regular expression: {exc}"
    proc = collectors.get("process") or {}
    given = [k for k in _PROCESS_SELECTORS if proc.get(k) is not None]
    if len(given) > 1:
        yield ("collectors", "process", given[1]), f"give only one process selector, not {' and '.join(given)}"
    agent = data.get("agent")
    business = _business() if agent else None
    if business is not None:
        for key_path, reason in business.check_agent_config(agent):
            p = _parse_key_path(key_path)
            yield (p if p[:1] == ("agent",) else ("agent", *p)), reason


def _regex(value: str | None, default: str | None) -> re.Pattern | None:
    text = default if value is None else value
    return re.compile(text) if text else None


def parse_config(data: Mapping[str, Any], source: str = "<config>") -> ExporterConfig:
    """Typed options from an already validated mapping (defaults for everything missing)."""
    c = data.get("collectors") or {}
    cpu = c.get("cpu") or {}
    fs = c.get("filesystem") or {}
    disk = c.get("diskstats") or {}
    net = c.get("netdev") or {}
    proc = c.get("process") or {}
    options: dict[str, Any] = {
        "cpu": CpuOptions(per_cpu=cpu.get("per_cpu", True), total=cpu.get("total", False)),
        "filesystem": FilesystemOptions(
            mount_points_exclude=_regex(fs.get("mount_points_exclude"), DEFAULT_MOUNT_POINTS_EXCLUDE),
            fs_types_exclude=_regex(fs.get("fs_types_exclude"), DEFAULT_FS_TYPES_EXCLUDE),
        ),
        "diskstats": DiskstatsOptions(device_exclude=_regex(disk.get("device_exclude"), DISK_EXCLUDE)),
        "netdev": NetdevOptions(
            device_exclude=_regex(net["device_exclude"], None) if "device_exclude" in net else re.compile(NET_EXCLUDE),
            device_include=_regex(net.get("device_include"), None),
        ),
        "process": ProcessOptions(
            pidfile=proc.get("pidfile"),
            pid=proc.get("pid"),
            name=_regex(proc.get("name"), None),
            cmdline=_regex(proc.get("cmdline"), None),
        ),
    }
    scrape = data.get("scrape") or {}
    return ExporterConfig(
        collector_options=options,
        scrape_timeout=float(scrape.get("timeout_seconds", DEFAULT_SCRAPE_TIMEOUT)),
        agent=data.get("agent"),
        source=source,
    )


def load_exporter_config(path: str | os.PathLike | None, env: Mapping[str, str] | None = None) -> ExporterConfig:
    """Load and validate ``path``; None means "no config file": defaults, system metrics only.

    Raises agentmon.configload.ConfigError (file:line: key.path: reason)."""
    if path is None:
        return parse_config({}, "<defaults>")
    from agentmon.configload import ConfigError, Problem, load_config

    data = load_config(path, exporter_schema(), env=env, checks=[_semantic_checks])
    try:
        return parse_config(data, str(path))
    except re.error as exc:  # defensive: the checks compile every regex first
        raise ConfigError(str(path), [Problem((), f"invalid regular expression: {exc}")]) from None
