"""The ``agent:`` config section, parsed once into typed settings, and its semantic checks (the
schema covers shapes; this covers paths, regexes, names)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from exporter.business.mapping import MappingConfigError, MetricSpec, PerSymbolPolicy

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"
AGENT_CONFIG_SCHEMA_PATH = SCHEMA_DIR / "agent-config.schema.json"
AGENT_STATS_SCHEMA_PATH = SCHEMA_DIR / "agent-stats.schema.json"
# The human-edited source of the default mapping, and the JSON twin generated from it that the
# exporter reads (python -m exporter.business.default_mapping_gen; a test checks they agree).
DEFAULT_MAPPING_PATH = Path(__file__).resolve().parent / "default_mapping.yaml"
DEFAULT_MAPPING_JSON_PATH = DEFAULT_MAPPING_PATH.with_suffix(".json")
# Always emitted by the source itself; a mapping entry cannot take these names.
RESERVED_NAMES = frozenset({"agent_up", "agent_fetch_duration_seconds", "agent_mapping_errors_total"})

DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_BODY = 16 * 1024 * 1024


@dataclass(frozen=True)
class AgentSettings:
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    max_body_bytes: int = DEFAULT_MAX_BODY
    ca_file: str | None = None  # TLS is always verified; this adds a private CA
    per_symbol: PerSymbolPolicy = PerSymbolPolicy()
    mapping: tuple[MetricSpec, ...] = ()


@cache
def default_mapping_entries() -> tuple[Mapping[str, Any], ...]:
    """The packaged default mapping (covers the whole stats contract), read from its generated JSON
    twin: parsing the YAML would keep PyYAML (~0.55 MiB RSS) in the serving process."""
    return tuple(json.loads(DEFAULT_MAPPING_JSON_PATH.read_text(encoding="utf-8")))


def merged_entries(agent_cfg: Mapping[str, Any]) -> list[tuple[tuple, Mapping[str, Any]]]:
    """(config key path, entry) of the effective mapping: defaults, then the user's entries; a user
    entry with a default's name takes that default's place."""
    user = [(("agent", "mapping", i), e) for i, e in enumerate(agent_cfg.get("mapping") or [])]
    if not agent_cfg.get("default_mapping", True):
        return user
    by_name = {e.get("name"): (p, e) for p, e in user}
    out = []
    for entry in default_mapping_entries():
        out.append(by_name.pop(entry["name"], (("default_mapping", entry["name"]), entry)))
    seen = {id(e) for _, e in out}
    out.extend((p, e) for p, e in user if id(e) not in seen)
    return out


def agent_config_problems(config: Mapping[str, Any]) -> Iterable[tuple[tuple[str | int, ...], str]]:
    """Semantic checks over a whole config file, in the form agentmon.configload's ``checks=`` takes
    (key path tuples, relative to the file's root). No ``agent:`` section → no problems."""
    agent_cfg = config.get("agent")
    if not isinstance(agent_cfg, Mapping):
        return []
    problems: list[tuple[tuple[str | int, ...], str]] = []
    include = (agent_cfg.get("per_symbol") or {}).get("include")
    if include is not None:
        try:
            re.compile(include)
        except re.error as exc:
            problems.append((("agent", "per_symbol", "include"), f"invalid regular expression: {exc}"))
    url = agent_cfg.get("url") or ""
    has_auth_header = any(k.lower() == "authorization" for k in (agent_cfg.get("headers") or {}))
    if has_auth_header and urlsplit(url).username is not None:
        problems.append((("agent", "url"), "credentials in the URL and headers.Authorization cannot be combined"))
    user_names: dict[str, int] = {}
    for i, entry in enumerate(agent_cfg.get("mapping") or []):
        name = entry.get("name")
        if name in user_names:
            problems.append((("agent", "mapping", i, "name"), f"duplicate metric name {name!r} (also mapping[{user_names[name]}])"))
        else:
            user_names[name] = i
        if name in RESERVED_NAMES:
            problems.append((("agent", "mapping", i, "name"), f"{name!r} is reserved for the exporter's own agent metrics"))
    for key_path, entry in merged_entries(agent_cfg):
        try:
            MetricSpec.from_config(entry)
        except MappingConfigError as exc:
            problems.append((key_path + tuple(_split_key(exc.key)), exc.reason))
    return problems


def check_agent_config(agent_cfg: Mapping[str, Any]) -> list[tuple[str, str]]:
    """[(key path like 'agent.mapping[3].labels.exchange', reason)] for a schema-valid ``agent:`` mapping."""
    problems = list(agent_config_problems({"agent": agent_cfg}))
    if not problems:
        return []
    # Imported only to word problems: it pulls in the jsonschema stack (~3 MiB RSS) that a running
    # exporter with a valid config does not need.
    from agentmon.configload import format_path

    return [(format_path(p), reason) for p, reason in problems]


def _split_key(key: str) -> list[str]:
    return key.split(".", 1) if key.startswith("labels.") else [key]


def parse_agent_settings(agent_cfg: Mapping[str, Any] | None) -> AgentSettings:
    """Typed settings from a schema-valid ``agent:`` mapping (None → defaults). Raises ValueError
    listing every problem when the semantic checks fail."""
    agent_cfg = agent_cfg or {}
    problems = check_agent_config(agent_cfg)
    if problems:
        raise ValueError("invalid agent config: " + "; ".join(f"{p}: {r}" for p, r in problems))
    ps = agent_cfg.get("per_symbol") or {}
    return AgentSettings(
        url=agent_cfg.get("url"),
        headers=dict(agent_cfg.get("headers") or {}),
        timeout=float(agent_cfg.get("timeout", DEFAULT_TIMEOUT)),
        max_body_bytes=int(agent_cfg.get("max_body_bytes", DEFAULT_MAX_BODY)),
        ca_file=agent_cfg.get("ca_file"),
        per_symbol=PerSymbolPolicy(
            enabled=bool(ps.get("enabled", False)),
            max_series=int(ps.get("max_series", 200)),
            include=re.compile(ps["include"]) if ps.get("include") is not None else None,
        ),
        mapping=tuple(MetricSpec.from_config(e) for _, e in merged_entries(agent_cfg)),
    )
