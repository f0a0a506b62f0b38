"""agent-exporter as a real process (python -m exporter.cli) with real tools around it:
promtool check metrics, a real Prometheus scraping it (system + business series via the demo agent),
SIGHUP reload with a bad then a good config, push mode to a real Pushgateway, startup refusal on a
bad config, and the shipped web-config example with a generated certificate."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from helpers.procs import free_port, processes  # noqa: F401  (fixture)

from agentmon.webconfig import BasicAuth, load_web_config

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parents[1]
EXPORTER = [sys.executable, "-m", "exporter.cli"]


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} not installed (make system-deps installs it)")
    return path


def http_get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback
        return resp.read().decode()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except OSError as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def metric_value(text: str, series: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def start_exporter(processes, tmp_path: Path, *args: str, config: str | None = None):  # noqa: F811
    port = free_port()
    argv = [*EXPORTER, f"--web.listen-address=127.0.0.1:{port}", *args]
    if config is not None:
        cfg = tmp_path / "exporter.yml"
        cfg.write_text(config)
        argv.append(f"--config.file={cfg}")
    proc = processes(argv, ready_url=f"http://127.0.0.1:{port}/-/ready", timeout=20, cwd=str(ROOT))
    return proc, port


@pytest.fixture
def demo_agent(processes):  # noqa: F811
    port = free_port()
    processes([sys.executable, "-m", "exporter.demo_agent", f"--web.listen-address=127.0.0.1:{port}", "--seed=7"],
              ready_url=f"http://127.0.0.1:{port}/stats", timeout=20, cwd=str(ROOT))
    return port


def test_real_output_passes_promtool(processes, tmp_path, demo_agent):  # noqa: F811
    promtool = need("promtool")
    _, port = start_exporter(processes, tmp_path, config=f"agent:\n  url: http://127.0.0.1:{demo_agent}/stats\n"
                             "collectors:\n  cpu:\n    total: true\n  process:\n    pid: 1\n")
    text = http_get(f"http://127.0.0.1:{port}/metrics")
    assert metric_value(text, "agentmon_agent_up") == 1
    assert metric_value(text, "agentmon_agent_process_up") == 1
    res = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == "" and res.stderr.strip() == "", res.stdout + res.stderr


def test_prometheus_scrapes_system_and_business_series(processes, tmp_path, demo_agent):  # noqa: F811
    prometheus = need("prometheus")
    _, port = start_exporter(processes, tmp_path, config=f"agent:\n  url: http://127.0.0.1:{demo_agent}/stats\n")
    prom_port = free_port()
    prom_cfg = tmp_path / "prometheus.yml"
    prom_cfg.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: agent-exporter\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{port}']\n"
    )
    processes([prometheus, f"--config.file={prom_cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
               f"--web.listen-address=127.0.0.1:{prom_port}"],
              ready_url=f"http://127.0.0.1:{prom_port}/-/ready", timeout=30)

    def query(expr: str) -> list:
        url = f"http://127.0.0.1:{prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        return json.loads(http_get(url))["data"]["result"]

    up = wait_for(lambda: query('up{job="agent-exporter"} == 1'), 20, "up == 1")
    assert up[0]["metric"]["instance"] == f"127.0.0.1:{port}"
    assert wait_for(lambda: query('agentmon_load1{job="agent-exporter"}'), 10, "a system series")
    connected = wait_for(lambda: query("agentmon_exchange_connected"), 10, "a business series")
    assert {r["metric"]["exchange"] for r in connected} >= {"binance", "okx"}
    assert wait_for(lambda: query('agentmon_scrape_collector_success{collector="agent"} == 1'), 10, "agent collector ok")


def test_sighup_reload_keeps_old_config_on_error(processes, tmp_path):  # noqa: F811
    proc, port = start_exporter(processes, tmp_path, "--collector.disable-defaults", "--collector.netdev",
                                config="collectors:\n  netdev:\n    device_exclude: '^lo$'\n")
    url = f"http://127.0.0.1:{port}/metrics"
    assert 'device="lo"' not in http_get(url)
    cfg = tmp_path / "exporter.yml"
    cfg.write_text("collectors:\n  netdev:\n    device_exclude: 42\n")
    os.kill(proc.pid, signal.SIGHUP)
    text = wait_for(lambda: (t := http_get(url)) and metric_value(t, "agentmon_config_last_reload_successful") == 0 and t,
                    10, "failed reload reported")
    assert 'device="lo"' not in text and proc.running()
    assert "collectors.netdev.device_exclude" in proc.output()
    cfg.write_text("collectors:\n  netdev:\n    device_exclude: null\n")
    os.kill(proc.pid, signal.SIGHUP)
    text = wait_for(lambda: (t := http_get(url)) and metric_value(t, "agentmon_config_last_reload_successful") == 1 and t,
                    10, "successful reload")
    assert 'agentmon_network_receive_bytes_total{device="lo"}' in text


def test_bad_config_refuses_to_start(tmp_path):
    port = free_port()
    cfg = tmp_path / "exporter.yml"
    cfg.write_text("collectors:\n  cpu:\n    per_cpu: 'yes'\n")
    res = subprocess.run([*EXPORTER, f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}"],
                         capture_output=True, text=True, timeout=30, cwd=str(ROOT))
    assert res.returncode == 1
    assert f"{cfg}:3: collectors.cpu.per_cpu" in res.stderr


def test_push_mode_to_real_pushgateway(processes, tmp_path):  # noqa: F811
    gateway = need("prometheus-pushgateway")
    gw_port = free_port()
    processes([gateway, f"--web.listen-address=127.0.0.1:{gw_port}"],
              ready_url=f"http://127.0.0.1:{gw_port}/-/ready", timeout=20)
    proc, _ = start_exporter(processes, tmp_path, "--collector.disable-defaults", "--collector.loadavg",
                             "--collector.memory", f"--push.gateway-url=http://127.0.0.1:{gw_port}",
                             "--push.interval=500ms", "--push.job=agent-exporter", "--push.instance=host-a/1")

    def pushed():
        text = http_get(f"http://127.0.0.1:{gw_port}/metrics")
        return [line for line in text.splitlines()
                if line.startswith("agentmon_load1{") and 'instance="host-a/1"' in line and 'job="agent-exporter"' in line]

    assert wait_for(pushed, 15, "agentmon_load1 on the Pushgateway")
    text = http_get(f"http://127.0.0.1:{gw_port}/metrics")
    assert "agentmon_memory_total_bytes{" in text and "agentmon_cpu_seconds_total" not in text


def test_push_failures_are_logged_and_retried(processes, tmp_path):  # noqa: F811
    dead = free_port()
    proc, port = start_exporter(processes, tmp_path, "--collector.disable-defaults", "--collector.loadavg",
                                f"--push.gateway-url=http://127.0.0.1:{dead}", "--push.interval=200ms")
    wait_for(lambda: proc.output().count("push to Pushgateway failed") >= 2, 10, "two failed pushes logged")
    assert proc.running() and "agentmon_load1" in http_get(f"http://127.0.0.1:{port}/metrics")


def test_shipped_web_config_example_works(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl binary not installed")
    shutil.copy(ROOT / "examples" / "web-config.yml", tmp_path / "web-config.yml")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "server.key"),
                    "-out", str(tmp_path / "server.crt"), "-days", "1", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    cfg = load_web_config(tmp_path / "web-config.yml")
    assert cfg.tls is not None and cfg.ssl_context() is not None
    assert set(cfg.users) == {"prometheus"}
    auth = BasicAuth(cfg.users)
    good = "Basic " + base64.b64encode(b"prometheus:change-me").decode()
    bad = "Basic " + base64.b64encode(b"prometheus:nope").decode()
    assert asyncio.run(auth.check(good)) is True
    assert asyncio.run(auth.check(bad)) is False


def test_golden_collector_outputs_pass_promtool():
    promtool = need("promtool")
    text = "".join(p.read_text() for p in sorted((ROOT / "tests" / "fixtures" / "procfs" / "expected").glob("*.prom")))
    assert text.count("# TYPE") >= 30
    res = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == "" and res.stderr.strip() == "", res.stdout + res.stderr
