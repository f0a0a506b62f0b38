"""AlertManager config: amtool check-config, the routing table via amtool, receiver/route mapping."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
AM_CONFIG = ROOT / "alertmanager" / "alertmanager.yml"
ROUTE_CASES = yaml.safe_load((ROOT / "alertmanager" / "route_tests.yml").read_text())["cases"]
SEVERITIES = ("info", "warning", "error", "critical", "emergency")
RECEIVER_ROUTES = {"critical", "warning", "info", "watchdog"}


def amtool_route_test(config: Path, receivers: list[str], labels: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["amtool", "config", "routes", "test", f"--config.file={config}",
         f"--verify.receivers={','.join(receivers)}", *(f"{k}={v}" for k, v in labels.items())],
        capture_output=True, text=True,
    )


def test_amtool_check_config():
    proc = subprocess.run(["amtool", "check-config", str(AM_CONFIG)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@pytest.mark.parametrize("case", ROUTE_CASES, ids=[c["name"] for c in ROUTE_CASES])
def test_routing_table(case):
    proc = amtool_route_test(AM_CONFIG, case["receivers"], case["labels"])
    assert proc.returncode == 0, f"{case['name']}: {proc.stdout}{proc.stderr}"


def test_routing_table_detects_a_wrong_expectation():
    proc = amtool_route_test(AM_CONFIG, ["agentmon-info"], {"alertname": "X", "severity": "critical"})
    assert proc.returncode != 0
    assert "agentmon-critical" in proc.stdout + proc.stderr


def test_every_severity_and_the_watchdog_have_a_routing_case():
    routed = {c["labels"].get("severity") for c in ROUTE_CASES}
    assert set(SEVERITIES) <= routed
    assert any(c["labels"].get("alertname") == "Watchdog" for c in ROUTE_CASES)


def _config() -> dict:
    return yaml.safe_load(AM_CONFIG.read_text())


def test_receivers_post_to_the_alert_receiver_routes_with_bearer_auth():
    routes = set()
    for receiver in _config()["receivers"]:
        (hook,) = receiver["webhook_configs"]
        url = urlparse(hook["url"])
        assert (url.scheme, url.netloc) == ("http", "127.0.0.1:19818"), receiver["name"]
        match = re.fullmatch(r"/alerts/(\w+)", url.path)
        assert match, hook["url"]
        route = match.group(1)
        assert receiver["name"] == f"agentmon-{route}"
        routes.add(route)
        auth = hook["http_config"]["authorization"]
        assert auth["type"] == "Bearer" and auth["credentials_file"].startswith("/")
        assert "credentials" not in auth, "no inline secrets in the shipped config"
        assert hook["send_resolved"] is (route != "watchdog")
    assert routes == RECEIVER_ROUTES


def test_route_timings_by_level():
    """Short repeats where people are paged, a daily digest for info, a heartbeat for the Watchdog."""
    root = _config()["route"]
    assert {"alertname", "instance", "exchange"} <= set(root["group_by"])
    by_matcher = {tuple(r["matchers"]): r for r in root["routes"]}
    crit = by_matcher[('severity=~"emergency|critical"',)]
    assert crit["repeat_interval"] == "1h"
    assert crit["routes"][0]["repeat_interval"] == "15m"
    info = by_matcher[('severity="info"',)]
    assert (info["group_interval"], info["repeat_interval"]) == ("24h", "24h")
    watchdog = root["routes"][0]
    assert watchdog["matchers"] == ['alertname="Watchdog"'], "Watchdog must be matched before severity routes"
    assert watchdog["repeat_interval"] == "5m"
    assert "mute_time_intervals" not in crit, "critical/emergency must page even in maintenance windows"
    intervals = {t["name"] for t in _config()["time_intervals"]}
    assert {"weekly-maintenance"} <= intervals


def test_amtool_rejects_a_broken_copy(tmp_path):
    """The check really checks: a route to an undefined receiver fails."""
    broken = tmp_path / "am.yml"
    broken.write_text(AM_CONFIG.read_text().replace("receiver: agentmon-info", "receiver: agentmon-nowhere", 1))
    proc = subprocess.run(["amtool", "check-config", str(broken)], capture_output=True, text=True)
    assert proc.returncode != 0 and "agentmon-nowhere" in proc.stdout + proc.stderr
