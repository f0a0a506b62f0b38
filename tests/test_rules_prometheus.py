"""prometheus/prometheus.yml: promtool check config, and the rules loaded and evaluated by a real Prometheus."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from helpers.procs import free_port, start_process

ROOT = Path(__file__).resolve().parents[1]
PROM_CONFIG = ROOT / "prometheus" / "prometheus.yml"
PROM_BIN = shutil.which("prometheus")


def test_promtool_check_config():
    proc = subprocess.run(["promtool", "check", "config", str(PROM_CONFIG)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 rule files found" in proc.stdout


def test_example_config_scrapes_the_contract_jobs():
    config = yaml.safe_load(PROM_CONFIG.read_text())
    jobs = {s["job_name"]: s["static_configs"][0]["targets"] for s in config["scrape_configs"]}
    assert jobs["agent-exporter"] == ["127.0.0.1:19817"]
    assert jobs["alert-receiver"] == ["127.0.0.1:19818"]
    assert jobs["alertmanager"] == ["127.0.0.1:9093"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9093"]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


@pytest.mark.integration
@pytest.mark.skipif(PROM_BIN is None, reason="prometheus not installed (make system-deps)")
def test_real_prometheus_loads_and_evaluates_the_rules(tmp_path):
    """Scrape targets on closed ports: up == 0, so ExporterDown/ReceiverDown go pending, and Watchdog too."""
    config = yaml.safe_load(PROM_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s", scrape_timeout="1s")
    config["rule_files"] = [str((PROM_CONFIG.parent / f).resolve()) for f in config["rule_files"]]
    dead = {}
    for scrape in config["scrape_configs"]:
        dead[scrape["job_name"]] = f"127.0.0.1:{free_port()}"
        scrape["static_configs"] = [{"targets": [dead[scrape["job_name"]]]}]
    config["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{free_port()}"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with start_process([PROM_BIN, f"--config.file={path}", f"--storage.tsdb.path={tmp_path / 'data'}",
                        f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                       ready_url=f"{base}/-/ready", timeout=30) as proc:
        groups = _get(f"{base}/api/v1/rules")["data"]["groups"]
        assert {g["name"] for g in groups} == {"agentmon.rules", "agentmon-host", "agentmon-business",
                                               "agentmon-pipeline"}
        deadline = time.monotonic() + 20
        want = {("Watchdog", None), ("AgentMonExporterDown", dead["agent-exporter"]),
                ("AgentMonReceiverDown", dead["alert-receiver"])}
        while True:
            alerts = _get(f"{base}/api/v1/alerts")["data"]["alerts"]
            got = {(a["labels"]["alertname"], a["labels"].get("instance")) for a in alerts}
            if want <= got or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert want <= got, (got, proc.output())
        health = {r.get("name"): (r["health"], r.get("lastError")) for g in _get(f"{base}/api/v1/rules")["data"][
            "groups"] for r in g["rules"]}
        assert all(h == "ok" or h == "unknown" for h, _ in health.values()), health
