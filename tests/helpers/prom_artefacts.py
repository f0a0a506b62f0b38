"""Shared checks for the Prometheus artefact tests (rules, dashboards): metric contract, anchors, promtool."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
METRICS_DOC = ROOT / "docs" / "metrics.md"


def github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub generates for the headings of a Markdown document."""
    anchors = set()
    for line in markdown.splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            text = re.sub(r"[`*_]", "", match.group(1)).strip().lower()
            anchors.add(re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", text)))
    return anchors


def contract_metric_names() -> set[str]:
    """Metric names documented in docs/metrics.md (histograms expand to _bucket/_sum/_count)."""
    text = METRICS_DOC.read_text()
    names = set(re.findall(r"`((?:agentmon|alert_receiver)_[a-z0-9_]+)", text))
    for line in text.splitlines():
        if "histogram" in line:
            for hist in re.findall(r"`((?:agentmon|alert_receiver)_[a-z0-9_]+)`", line):
                names |= {hist + "_bucket", hist + "_sum", hist + "_count"}
    return names


def metric_names_in(expr: str) -> set[str]:
    """Our processes' and AlertManager's metric names used in a PromQL expression."""
    expr = re.sub(r"\b\w+:\w+:\w+\b", "", expr)  # recording-rule names
    return set(re.findall(r"\b((?:agentmon|alert_receiver|alertmanager)_[a-z0-9_]+)\b", expr))


def promtool_parse(exprs: list[str], tmp_dir: Path) -> subprocess.CompletedProcess:
    """Parse PromQL with the real parser: write each expr as a recording rule, run `promtool check rules`."""
    rules = [{"record": f"agentmon_parse_check_{i}", "expr": expr} for i, expr in enumerate(exprs)]
    path = tmp_dir / "parse_check.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "parse-check", "rules": rules}]}))
    return subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
