"""Rules: generated files up to date, promtool lint + unit tests, mixin-style alert lint, config errors."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from helpers.prom_artefacts import contract_metric_names, github_anchors, metric_names_in  # noqa: E402

from rules import generate  # noqa: E402

RULES_DIR = ROOT / "rules"
RULE_FILES = [RULES_DIR / generate.RULES_FILE, RULES_DIR / generate.ALERTS_FILE]
UNIT_TESTS = sorted((RULES_DIR / "tests").glob("*_test.yml"))
RUNBOOKS = ROOT / "docs" / "runbooks.md"


def _alerts() -> list[dict]:
    doc = yaml.safe_load(RULE_FILES[1].read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _records() -> list[dict]:
    doc = yaml.safe_load(RULE_FILES[0].read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_committed_rule_files_are_up_to_date():
    rendered = generate.render(generate.load_config())
    for name, content in rendered.items():
        assert (RULES_DIR / name).read_text() == content, f"rules/{name} is stale: run rules/generate.py"
    assert generate.main(["--check"]) == 0


def test_promtool_check_rules_lint_clean():
    proc = subprocess.run(
        ["promtool", "check", "rules", "--lint=all", "--lint-fatal", *map(str, RULE_FILES)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_unit_tests_pass():
    assert UNIT_TESTS, "no rules/tests/*_test.yml"
    proc = subprocess.run(["promtool", "test", "rules", *map(str, UNIT_TESTS)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_has_fire_before_for_and_resolve_cases():
    """Each alert: a case where it fires and at least two where it does not (before `for:`, resolved)."""
    firing: dict[str, int] = {}
    quiet: dict[str, int] = {}
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                bucket = firing if check.get("exp_alerts") else quiet
                bucket[check["alertname"]] = bucket.get(check["alertname"], 0) + 1
    for alert in _alerts():
        name = alert["alert"]
        assert firing.get(name), f"{name}: no promtool test where it fires"
        if name != "Watchdog":  # the dead man's switch never resolves by design
            assert quiet.get(name, 0) >= 2, f"{name}: needs a 'before for:' and a 'resolved' case"


def test_every_recording_rule_has_a_value_test():
    tested = set()
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            tested.update(check["expr"] for check in case.get("promql_expr_test", []))
    missing = [r["record"] for r in _records() if r["record"] not in tested]
    assert not missing, f"recording rules without a promql_expr_test: {missing}"


# --- mixin-style alert lint (mixtool's rules + runbook/for checks) -----------------------------

def alert_style_problems(alert: dict, anchors: set[str]) -> list[str]:
    name = alert.get("alert", "")
    problems = []
    if not re.fullmatch(r"([A-Z]+[a-z0-9]+)+", name):
        problems.append("alert-name-camelcase")
    if not (name.startswith("AgentMon") or name == "Watchdog"):
        problems.append("alert-name-prefix")
    if alert.get("labels", {}).get("severity") not in generate.SEVERITIES:
        problems.append("alert-severity-rule")
    if "for" not in alert:
        problems.append("for-missing")
    ann = alert.get("annotations", {})
    summary, description = ann.get("summary", ""), ann.get("description", "")
    if "{{" in summary:
        problems.append("alert-summary-templating")
    if not re.fullmatch(r"[A-Z].+\.", summary):
        problems.append("alert-summary-style")
    if not re.search(r"\{\{[^}]*\$(value|labels)", description):
        problems.append("alert-description-templating")
    url = ann.get("runbook_url", "")
    if not url:
        problems.append("runbook-url-missing")
    elif url.rpartition("#")[2] not in anchors or not url.split("#")[0].endswith("docs/runbooks.md"):
        problems.append("runbook-anchor-missing")
    return problems


def test_alert_style():
    anchors = github_anchors(RUNBOOKS.read_text())
    problems = {a["alert"]: p for a in _alerts() if (p := alert_style_problems(a, anchors))}
    assert not problems, problems
    names = [a["alert"] for a in _alerts()]
    assert len(names) == len(set(names)), "duplicate alert names"


def test_alert_style_lint_catches_bad_alerts():
    bad = {
        "alert": "agentmon_down",
        "expr": "up == 0",
        "labels": {"severity": "page"},
        "annotations": {"summary": "{{ $labels.instance }} is down", "description": "It is down."},
    }
    assert set(alert_style_problems(bad, set())) == {
        "alert-name-camelcase", "alert-name-prefix", "alert-severity-rule", "for-missing",
        "alert-summary-templating", "alert-summary-style", "alert-description-templating",
        "runbook-url-missing",
    }
    bad = {**bad, "alert": "AgentMonX", "annotations": {"runbook_url": "https://x/docs/runbooks.md#nope"}}
    assert "runbook-anchor-missing" in alert_style_problems(bad, {"agentmonx"})


def test_required_alerts_present_with_seed_defaults():
    alerts = {a["alert"]: a for a in _alerts()}
    cpu, mem, rate = (alerts[n] for n in (
        "AgentMonHighCpuUtilisation", "AgentMonHighMemoryUtilisation", "AgentMonDataCollectionRateLow"))
    assert (cpu["for"], cpu["labels"]["severity"]) == ("5m", "warning") and cpu["expr"].endswith("> 0.8")
    assert (mem["for"], mem["labels"]["severity"]) == ("5m", "error") and mem["expr"].endswith("> 0.9")
    assert (rate["for"], rate["labels"]["severity"]) == ("10m", "warning") and rate["expr"].endswith("< 100")
    assert "predict_linear" in alerts["AgentMonFilesystemFillingUp"]["expr"]
    assert "alertmanager_notifications_failed_total" in alerts["AgentMonAlertmanagerNotificationsFailing"]["expr"]
    assert alerts["Watchdog"]["expr"] == "vector(1)"
    assert {a["labels"]["severity"] for a in alerts.values()} == set(generate.SEVERITIES)


def test_job_selectors_only_come_from_config():
    """No rule hard-codes a job name: every job matcher is one of the configured selectors."""
    selectors = set(generate.load_config().selectors.values())
    for rule in _alerts() + _records():
        for matcher in re.findall(r'job\s*(?:=|!=|=~|!~)\s*"[^"]*"', rule["expr"]):
            assert matcher in selectors, (rule.get("alert") or rule.get("record"), matcher)
    source = (RULES_DIR / "generate.py").read_text()
    assert "agent-exporter" not in source and "alert-receiver" not in source


def test_rules_use_only_contract_metrics():
    contract = contract_metric_names()
    assert "agentmon_cpu_seconds_total" in contract and "alert_receiver_dead_letters_total" in contract
    unknown = {}
    for rule in _alerts() + _records():
        bad = {m for m in metric_names_in(rule["expr"]) if not m.startswith("alertmanager_") and m not in contract}
        if bad:
            unknown[rule.get("alert") or rule.get("record")] = bad
    assert not unknown, f"metrics not in docs/metrics.md: {unknown}"


# --- tuning in one place ------------------------------------------------------------------------

def _copy_tree(tmp_path: Path, config_text: str) -> Path:
    work = tmp_path / "rules"
    (work / "tests").mkdir(parents=True)
    for path in UNIT_TESTS:
        shutil.copy(path, work / "tests" / path.name)
    (work / "config.yml").write_text(config_text)
    assert generate.main(["--config.file", str(work / "config.yml"), "--out-dir", str(work)]) == 0
    return work


def test_threshold_change_in_config_changes_the_rules_and_the_tests_notice(tmp_path):
    text = (RULES_DIR / "config.yml").read_text()
    tuned = text.replace("AgentMonHighCpuUtilisation: {severity: warning, for: 5m, threshold: 0.80}",
                         "AgentMonHighCpuUtilisation: {severity: warning, for: 5m, threshold: 0.95}")
    assert tuned != text
    work = _copy_tree(tmp_path, tuned)
    cpu = next(r for g in yaml.safe_load((work / generate.ALERTS_FILE).read_text())["groups"]
               for r in g["rules"] if r.get("alert") == "AgentMonHighCpuUtilisation")
    assert cpu["expr"].endswith("> 0.95")
    assert "(threshold 95% for 5m)" in cpu["annotations"]["description"]
    # The committed unit test expects the alert at 90 % CPU, so it must now fail.
    proc = subprocess.run(["promtool", "test", "rules", str(work / "tests" / "host_test.yml")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "AgentMonHighCpuUtilisation" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("{severity: error, for: 5m, threshold: 0.90}", "{severity: page, for: 5m, threshold: 0.90}",
         r"config\.yml:\d+: alerts\.AgentMonHighMemoryUtilisation\.severity: must be one of"),
        ("{severity: error, for: 5m, threshold: 0.90}", "{severity: error, for: 5 minutes, threshold: 0.90}",
         r"alerts\.AgentMonHighMemoryUtilisation\.for: expected a duration"),
        ("{severity: error, for: 5m, threshold: 0.90}", "{severity: error, for: 5m, treshold: 0.90}",
         r"alerts\.AgentMonHighMemoryUtilisation\.treshold: unknown setting"),
        ("{severity: error, for: 5m, threshold: 0.90}", "{severity: error, for: 5m, threshold: high}",
         r"alerts\.AgentMonHighMemoryUtilisation\.threshold: expected a non-negative number"),
        ('exporter: job="agent-exporter"', "exporter: agent-exporter",
         r"config\.yml:\d+: selectors\.exporter: expected one label matcher"),
        ("  Watchdog: {severity: info, for: 1m}\n", "",
         r"alerts: missing alert 'Watchdog'"),
    ],
)
def test_bad_config_is_rejected_with_file_key_and_line(tmp_path, old, new, expected, capsys):
    text = (RULES_DIR / "config.yml").read_text()
    assert old in text
    bad = tmp_path / "config.yml"
    bad.write_text(text.replace(old, new, 1))
    with pytest.raises(generate.ConfigError, match=expected):
        generate.load_config(bad)
    assert generate.main(["--config.file", str(bad), "--out-dir", str(tmp_path)]) == 2
    assert str(bad) in capsys.readouterr().err
    assert not list(tmp_path.glob("*.rules.yml"))
