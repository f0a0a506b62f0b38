"""Dashboards: drift check, a dashboard-linter-style lint, PromQL parsed by promtool, metric contract,
provisioning files, and panel_queries() for the lead's live-Prometheus test."""

from __future__ import annotations

import copy
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from helpers.procs import free_port, start_process  # noqa: E402
from helpers.prom_artefacts import contract_metric_names, metric_names_in, promtool_parse  # noqa: E402

from dashboards import generate  # noqa: E402

DASH_DIR = ROOT / "dashboards"
FILES = sorted(DASH_DIR.glob("*.json"))
PANEL_TYPES = {"timeseries", "stat", "table"}
# Grafana unit ids used by our panels (a typo here renders raw numbers without a unit).
KNOWN_UNITS = {"s", "none", "short", "percentunit", "bytes", "Bps", "iops", "pps", "reqps", "cps", "ops",
               "bool_yes_no"}
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range"}
DS_UIDS = {"${datasource}", "$datasource"}
_VAR_REF = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _datasource_refs(node, path="") -> list[tuple[str, dict]]:
    """Every {"type": "prometheus", ...} datasource object in the JSON, with its JSON path."""
    found = []
    if isinstance(node, dict):
        if node.get("type") == "prometheus" and "uid" in node:
            found.append((path, node))
        for key, value in node.items():
            found += _datasource_refs(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _datasource_refs(value, f"{path}[{i}]")
    return found


def _enclosing_function(expr: str, pos: int) -> str:
    """Name of the function whose parentheses enclose position ``pos`` ('' at top level)."""
    depth = 0
    for i in range(pos - 1, -1, -1):
        if expr[i] == ")":
            depth += 1
        elif expr[i] == "(":
            if depth == 0:
                match = re.search(r"(\w+)\s*$", expr[:i])
                return match.group(1) if match else ""
            depth -= 1
    return ""


def lint_dashboard(dash: dict) -> list[str]:
    """dashboard-linter's main rules plus structure checks; returns 'rule: where' problems."""
    problems = []
    if "__inputs" in dash or "__requires" in dash:
        problems.append("no-inputs: exported 'for sharing externally'")
    uid = dash.get("uid", "")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid):
        problems.append(f"uid: {uid!r}")
    if not dash.get("title", "").startswith(generate.TITLE_PREFIX):
        problems.append("title-prefix")
    if "agentmon" not in dash.get("tags", []):
        problems.append("tags")
    if not dash.get("schemaVersion"):
        problems.append("schema-version")
    if dash.get("refresh") != "30s":
        problems.append("refresh-30s")
    for path, ref in _datasource_refs(dash):
        if ref["uid"] not in DS_UIDS:
            problems.append(f"hard-coded-datasource-uid: {path} = {ref['uid']!r}")

    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    ds_var = variables.get("datasource")
    if not ds_var or ds_var.get("type") != "datasource" or ds_var.get("query") != "prometheus" \
            or ds_var.get("label") != "Data source":
        problems.append("template-datasource-rule")
    for name, var in variables.items():
        if var.get("type") == "query":
            if var.get("refresh") != 2:
                problems.append(f"template-on-time-change-reload-rule: {name}")
            if var.get("datasource", {}).get("uid") not in DS_UIDS:
                problems.append(f"template-datasource-rule: {name}")
    known_vars = set(variables) | BUILTIN_VARIABLES

    ids = [p.get("id") for p in dash.get("panels", [])]
    if len(ids) != len(set(ids)):
        problems.append("panel-id-unique")
    titles = [p.get("title") for p in dash.get("panels", []) if p.get("type") != "row"]
    if len(titles) != len(set(titles)):
        problems.append("panel-title-unique")
    for panel in dash.get("panels", []):
        if panel.get("type") == "row":
            continue
        where = f"panel {panel.get('id')} {panel.get('title')!r}"
        if panel.get("type") not in PANEL_TYPES:
            problems.append(f"panel-type: {where} is {panel.get('type')!r}")
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if unit not in KNOWN_UNITS:
            problems.append(f"panel-units-rule: {where} unit {unit!r}")
        if not panel.get("description"):
            problems.append(f"panel-description: {where}")
        grid = panel.get("gridPos", {})
        if grid.get("x", 0) + grid.get("w", 0) > 24:
            problems.append(f"grid: {where}")
        targets = panel.get("targets", [])
        if not targets:
            problems.append(f"target-missing: {where}")
        panel_ds = panel.get("datasource", {}).get("uid") in DS_UIDS
        ref_ids = [t.get("refId") for t in targets]
        if not all(ref_ids) or len(ref_ids) != len(set(ref_ids)):
            problems.append(f"target-refid: {where}")
        for target in targets:
            expr = target.get("expr", "")
            if not (panel_ds or target.get("datasource", {}).get("uid") in DS_UIDS):
                problems.append(f"panel-datasource-rule: {where}")
            for match in re.finditer(r"\b(rate|irate|increase)\s*\(", expr):
                rng = re.search(r"\[([^\]]+)\]", expr[match.end():])
                if not rng or rng.group(1) != "$__rate_interval":
                    problems.append(f"target-rate-interval-rule: {where}: {expr}")
            for match in re.finditer(r"\b\w+_(total|bucket)\b", expr):
                if _enclosing_function(expr, match.start()) not in ("rate", "irate", "increase"):
                    problems.append(f"target-counter-agg-rule: {where}: {match.group(0)}")
            for match in _VAR_REF.finditer(expr):
                name = match.group(1) or match.group(2) or match.group(3)
                if name not in known_vars:
                    problems.append(f"template-undefined-variable: {where}: ${name}")
    return problems


# --- tests ---------------------------------------------------------------------------------------

def test_committed_dashboards_are_up_to_date():
    rendered = generate.render()
    assert sorted(rendered) == [p.name for p in FILES], "dashboards/*.json and generate.DASHBOARDS differ"
    for name, content in rendered.items():
        assert (DASH_DIR / name).read_text() == content, f"dashboards/{name} is stale: run dashboards/generate.py"
    assert generate.main(["--check"]) == 0


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_dashboard_lint(path):
    assert lint_dashboard(_load(path)) == []


def test_lint_catches_a_broken_dashboard():
    dash = copy.deepcopy(_load(DASH_DIR / "agentmon-business.json"))
    dash["__inputs"] = [{"name": "DS_PROMETHEUS"}]
    dash["uid"] = "x" * 41
    dash["templating"]["list"][1]["refresh"] = 1
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    panels[0]["type"] = "graph"
    panels[1]["datasource"] = {"type": "prometheus", "uid": "PBFA97CFB590B2093"}
    panels[2]["fieldConfig"]["defaults"].pop("unit")
    panels[3]["targets"][0]["expr"] = "rate(agentmon_records_collected_total[5m])"
    panels[4]["targets"][0]["expr"] = "agentmon_exchange_requests_total{instance=~\"$nope\"}"
    panels[5]["id"] = panels[6]["id"]
    rules = {p.split(":")[0] for p in lint_dashboard(dash)}
    assert {"no-inputs", "uid", "template-on-time-change-reload-rule", "panel-type", "hard-coded-datasource-uid",
            "panel-units-rule", "target-rate-interval-rule", "target-counter-agg-rule",
            "template-undefined-variable", "panel-id-unique"} <= rules


def test_uids_and_titles_unique_and_stable():
    dashes = [_load(p) for p in FILES]
    uids = [d["uid"] for d in dashes]
    assert len(set(uids)) == len(uids)
    assert len({d["title"] for d in dashes}) == len(dashes)
    assert set(uids) == {"agentmon-system", "agentmon-business", "agentmon-alerts", "agentmon-health"}


def test_required_variables_and_content():
    dashes = {p.stem: _load(p) for p in FILES}
    names = {k: {v["name"] for v in d["templating"]["list"]} for k, d in dashes.items()}
    assert {"datasource", "instance"} <= names["agentmon-system"]
    assert {"datasource", "instance", "exchange"} <= names["agentmon-business"]
    exprs = {k: " ".join(t["expr"] for p in d["panels"] for t in p.get("targets", [])) for k, d in dashes.items()}
    assert "predict_linear(agentmon_filesystem_avail_bytes" in exprs["agentmon-system"]
    assert "agentmon_agent_process_" in exprs["agentmon-system"] and "agentmon_load1" in exprs["agentmon-system"]
    for metric in ("agentmon_exchange_connected", "agentmon_exchange_request_errors_total",
                   "agentmon_records_collected_total", "agentmon_orders_filled_total",
                   "agentmon_position_unrealized_pnl", "agentmon_cache_hits_total", "agentmon_cache_size_bytes"):
        assert metric in exprs["agentmon-business"], metric
    assert 'ALERTS{alertstate="firing"}' in exprs["agentmon-alerts"]
    for metric in ("alertmanager_notifications_total", "alert_receiver_deliveries_total",
                   "alert_receiver_dead_letters_total", "alert_receiver_delivery_latency_seconds_bucket"):
        assert metric in exprs["agentmon-alerts"], metric
    assert "agentmon_scrape_collector_success" in exprs["agentmon-health"]


def test_panel_queries_substitutes_every_variable():
    queries = generate.panel_queries()
    assert len(queries) == sum(len(p.get("targets", [])) for f in FILES for p in _load(f)["panels"])
    for dash, panel, expr in queries:
        assert "$" not in expr and "[[" not in expr, (dash, panel, expr)
    custom = generate.panel_queries({"job": "my-exporter", "__rate_interval": "2m"})
    assert any('job="my-exporter"' in e and "[2m]" in e for _, _, e in custom)
    with pytest.raises(KeyError, match=r"\$job"):
        generate.substitute('up{job="$job"}', {})


def test_every_query_parses_with_promtool(tmp_path):
    exprs = [expr for _, _, expr in generate.panel_queries()]
    for path in FILES:
        for var in _load(path)["templating"]["list"]:
            if var["type"] == "query":
                inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", var["query"]["query"])
                assert inner, var["query"]
                exprs.append(generate.substitute(inner.group(1), generate.DEFAULT_SUBSTITUTIONS))
    proc = promtool_parse(exprs, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    broken = promtool_parse(["sum(rate(agentmon_cpu_seconds_total[1m])"], tmp_path)
    assert broken.returncode != 0 and "unclosed left parenthesis" in broken.stdout + broken.stderr


def test_dashboards_use_only_contract_metrics():
    contract = contract_metric_names()
    unknown = {(d, p, m) for d, p, e in generate.panel_queries() for m in metric_names_in(e)
               if not m.startswith("alertmanager_") and m not in contract}
    assert not unknown, f"metrics not in docs/metrics.md: {sorted(unknown)}"


AM_BIN = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


@pytest.mark.integration
@pytest.mark.skipif(AM_BIN is None, reason="prometheus-alertmanager not installed (make system-deps)")
def test_alertmanager_metrics_used_exist_in_a_real_alertmanager(tmp_path):
    import urllib.request

    rules = yaml.safe_load((ROOT / "rules" / "agentmon.alerts.yml").read_text())
    used = {m for _, _, e in generate.panel_queries() for m in metric_names_in(e) if m.startswith("alertmanager_")}
    used |= {m for g in rules["groups"] for r in g["rules"] for m in metric_names_in(r["expr"])
             if m.startswith("alertmanager_")}
    used.add("alertmanager_build_info")  # the alertmanager_job variable
    config = tmp_path / "am.yml"
    config.write_text("route: {receiver: 'null'}\nreceivers: [{name: 'null'}]\n")
    port = free_port()
    argv = [AM_BIN, f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
    with (start_process(argv, ready_url=f"http://127.0.0.1:{port}/-/ready", timeout=20),
          urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp):
        exposed = set(re.findall(r"^(alertmanager_\w+)", resp.read().decode(), re.M))
    assert used and not (used - exposed), sorted(used - exposed)


def test_provisioning_files():
    prov = DASH_DIR / "provisioning"
    dash_prov = yaml.safe_load((prov / "dashboards" / "agentmon.yaml").read_text())
    assert dash_prov["apiVersion"] == 1
    (provider,) = dash_prov["providers"]
    assert provider["name"] and provider["type"] == "file" and provider["options"]["path"].startswith("/")
    assert provider.get("folder") and not provider["options"].get("foldersFromFilesStructure")
    assert set(provider) <= {"name", "orgId", "folder", "folderUid", "type", "disableDeletion",
                             "updateIntervalSeconds", "allowUiUpdates", "options"}
    ds_prov = yaml.safe_load((prov / "datasources" / "agentmon.yaml").read_text())
    assert ds_prov["apiVersion"] == 1
    (ds,) = ds_prov["datasources"]
    assert ds["type"] == "prometheus" and ds["access"] == "proxy" and ds["url"].startswith("http://")
    prom = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    assert ds["jsonData"]["timeInterval"] == prom["global"]["scrape_interval"]
