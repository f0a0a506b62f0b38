"""The default mapping over the documented example produces exactly the business metrics of
docs/metrics.md (golden exposition in docs/agent-stats.md, linted by the real promtool)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path

import jsonschema
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from agentmon.configload import ConfigError, load_config_text
from exporter.business import (
    AGENT_CONFIG_SCHEMA_PATH,
    AGENT_STATS_SCHEMA_PATH,
    build_source,
    check_agent_config,
)

ROOT = Path(__file__).resolve().parents[1]
AGENT_STATS_DOC = (ROOT / "docs" / "agent-stats.md").read_text(encoding="utf-8")
FETCH_DURATION = re.compile(r"^(agentmon_agent_fetch_duration_seconds) \S+$", re.M)


def doc_block(lang: str, after: str) -> str:
    start = AGENT_STATS_DOC.index(after)
    m = re.compile(rf"```{lang}\n(.*?)```", re.S).search(AGENT_STATS_DOC, start)
    return m.group(1)


def example_document() -> dict:
    return json.loads(doc_block("json", "### Full example"))


def render(agent_cfg: dict | None, doc: dict) -> str:
    async def run():
        src = build_source(agent_cfg, "agentmon", provider=lambda: doc)
        try:
            return await src.collect(5.0)
        finally:
            await src.close()

    families = asyncio.run(run())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(type("Fixed", (), {"collect": lambda self: families})())
    return generate_latest(registry).decode()


def contract() -> dict[str, tuple[str, set[str]]]:
    """name → (type, labels) from the 'Business metrics' table of docs/metrics.md."""
    text = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    section = text[text.index("### Business metrics"):]
    section = section[: section.index("\n## ")]
    out = {}
    for row in re.finditer(r"^\| `(agentmon_[a-z0-9_]+)` \| (\w+) \|([^|]*)\|", section, re.M):
        out[row.group(1)] = (row.group(2), set(re.findall(r"`(\w+)`", row.group(3))))
    return out


def exposition_families(text: str) -> dict[str, tuple[str, set[str]]]:
    """name → (type, label names) of a text-format (0.0.4) exposition."""
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    labels: dict[str, set[str]] = {name: set() for name in types}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            labels[re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)] |= set(re.findall(r'(\w+)="', line))
    return {name: (t, labels[name]) for name, t in types.items()}


def test_example_document_validates_against_the_schema():
    schema = json.loads(AGENT_STATS_SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator(schema).validate(example_document())


def test_golden_exposition_matches_docs():
    got = render({"per_symbol": {"enabled": True}}, example_document())
    want = doc_block("text", "What the exporter serves for it")
    normalise = lambda t: FETCH_DURATION.sub(r"\1 <duration>", t).strip()  # noqa: E731
    assert normalise(got) == normalise(want)


def test_default_mapping_serves_exactly_the_contract():
    families = exposition_families(render({"per_symbol": {"enabled": True}}, example_document()))
    expected = contract()
    assert len(expected) == 23, "docs/metrics.md business table not parsed"
    assert families == expected


def test_per_symbol_metric_is_opt_in():
    families = exposition_families(render(None, example_document()))
    assert set(contract()) - set(families) == {"agentmon_position_symbol_unrealized_pnl"}


def test_promtool_check_metrics_is_clean(tmp_path):
    text = render({"per_symbol": {"enabled": True}}, example_document())
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


AGENT_ONLY_SCHEMA = {"type": "object", "properties": {"agent": json.loads(AGENT_CONFIG_SCHEMA_PATH.read_text())}}


def _key_path(text: str) -> tuple:
    return tuple(int(p[1:-1]) if p.startswith("[") else p for p in re.findall(r"[^.\[\]]+|\[\d+\]", text))


def load(text: str) -> dict:
    def check(data):
        return [(_key_path(p), r) for p, r in check_agent_config(data["agent"])]

    return load_config_text(text, AGENT_ONLY_SCHEMA, filename="exporter.yml", env={"AGENT_TOKEN": "t0k"}, checks=[check])


def test_documented_config_example_is_valid():
    text = doc_block("yaml", "## 2. The `agent:` config section")
    cfg = load(text)
    assert cfg["agent"]["headers"]["Authorization"] == "Bearer t0k"
    assert check_agent_config(cfg["agent"]) == []
    mapping_example = yaml.safe_load(doc_block("yaml", "## 3. Mapping reference"))
    assert check_agent_config({"mapping": mapping_example}) == []


def test_config_errors_name_file_line_and_key():
    text = """agent:
  url: http://127.0.0.1:19101/stats
  per_symbol: {enabled: true, include: "("}
  mapping:
    - name: ok_total
      type: counter
      help: fine
      path: a.b
    - name: rejected_total
      type: counter
      help: bad label
      path: exchanges[*].orders.rejected
      labels: {exchange: "venues[*].name"}
"""
    try:
        load(text)
    except ConfigError as exc:
        message = str(exc)
    else:
        raise AssertionError("invalid config accepted")
    assert "exporter.yml:3: agent.per_symbol.include: invalid regular expression" in message
    assert "agent.mapping[1].labels.exchange" in message and "must follow the metric path" in message


def test_schema_rejects_unknown_keys_and_both_path_and_value():
    try:
        load("agent:\n  url: http://x/stats\n  mapping:\n    - {name: g, type: gauge, help: h, path: a, value: 1}\n  colour: red\n")
    except ConfigError as exc:
        message = str(exc)
    else:
        raise AssertionError("invalid config accepted")
    assert "unknown key 'colour'" in message
    assert "agent.mapping[0]" in message
