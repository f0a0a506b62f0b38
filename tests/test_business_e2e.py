"""End to end with real processes: the demo agent, agent-exporter (CLI) reading it over HTTP,
scrapes with Prometheus' timeout header, faults injected over the demo agent's API, promtool lint."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agentmon.procs import free_port, start_process

TOKEN = "e2e-secret-token-123"


def http(method: str, url: str, headers: dict | None = None, timeout: float = 10) -> tuple[int, str]:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, resp.read().decode()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


@pytest.fixture
def stack(tmp_path):
    agent_port, exporter_port = free_port(), free_port()
    agent = start_process(
        "demo-agent",
        [sys.executable, "-m", "exporter.demo_agent", "--web.listen-address", f"127.0.0.1:{agent_port}",
         "--seed", "3", "--flap-interval", "0"],
        log_dir=tmp_path, ready_url=f"http://127.0.0.1:{agent_port}/-/healthy", timeout=20,
    )
    cfg = tmp_path / "exporter.yml"
    cfg.write_text(
        "agent:\n"
        f"  url: http://127.0.0.1:{agent_port}/stats\n"
        "  headers: {Authorization: \"Bearer ${AGENT_TOKEN}\"}\n"
        "  timeout: 4\n"
    )
    try:
        exporter = start_process(
            "agent-exporter",
            [sys.executable, "-m", "exporter.cli", "--config.file", str(cfg), "--web.listen-address",
             f"127.0.0.1:{exporter_port}", "--collector.disable-defaults", "--collector.loadavg", "--log.level", "debug"],
            log_dir=tmp_path, ready_url=f"http://127.0.0.1:{exporter_port}/-/ready", timeout=20,
            env={"AGENT_TOKEN": TOKEN},
        )
    except BaseException:
        agent.stop()
        raise
    yield f"http://127.0.0.1:{agent_port}", f"http://127.0.0.1:{exporter_port}/metrics", exporter
    exporter.stop()
    agent.stop()


def test_exporter_reads_the_demo_agent_and_survives_its_faults(stack):
    agent, metrics, exporter = stack
    status, body = http("GET", metrics, {"X-Prometheus-Scrape-Timeout-Seconds": "5"})
    m = samples(body)
    assert m[("agentmon_agent_up", ())] == 1.0
    assert m[("agentmon_exchange_connected", (("exchange", "bybit"),))] == 1.0
    assert m[("agentmon_scrape_collector_success", (("collector", "agent"),))] == 1.0
    lint = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True, timeout=30)
    assert lint.returncode == 0, lint.stdout + lint.stderr

    http("POST", f"{agent}/faults/slow?seconds=30")
    status, body = http("GET", metrics, {"X-Prometheus-Scrape-Timeout-Seconds": "1"})
    m = samples(body)
    assert status == 200
    assert m[("agentmon_agent_up", ())] == 0.0
    assert ("agentmon_load1", ()) in m, "system metrics are intact while the agent is slow"
    assert m[("agentmon_scrape_collector_success", (("collector", "agent"),))] == 0.0
    assert not any(name.startswith("agentmon_exchange_") for name, _ in m)

    http("DELETE", f"{agent}/faults")
    http("POST", f"{agent}/faults/disconnect?exchange=okx")
    m = samples(http("GET", metrics)[1])
    assert m[("agentmon_agent_up", ())] == 1.0
    assert m[("agentmon_exchange_connected", (("exchange", "okx"),))] == 0.0
    assert m[("agentmon_exchange_connected", (("exchange", "binance"),))] == 1.0

    http("POST", f"{agent}/faults/http_500")
    assert samples(http("GET", metrics)[1])[("agentmon_agent_up", ())] == 0.0
    exporter.stop()
    log = exporter.log_path.read_text()
    assert "agent stats source down" in log and "HTTP 500" in log
    assert TOKEN not in log


def test_config_check_reports_mapping_errors_with_line(tmp_path):
    cfg = tmp_path / "bad.yml"
    cfg.write_text(
        "agent:\n"
        "  url: http://127.0.0.1:1/stats\n"
        "  mapping:\n"
        "    - name: fills_total\n"
        "      type: counter\n"
        "      help: fills\n"
        "      path: exchanges[*]..fills\n"
    )
    result = subprocess.run([sys.executable, "-m", "exporter.cli", "--config.file", str(cfg), "--config.check"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert f"{cfg}:" in result.stderr and "agent.mapping[0].path" in result.stderr, result.stderr
    json.dumps(result.stderr)
