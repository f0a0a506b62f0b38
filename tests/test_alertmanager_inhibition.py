"""The shipped AlertManager config against a real AlertManager 0.25 on loopback.

Inhibition: alerts are posted to /api/v2/alerts and /api/v2/alerts is read back for
status.inhibitedBy. Delivery + maintenance windows: a test copy of the config posts to a local
capturing webhook (bearer token checked) with short group waits; in a maintenance window the
warning route stays quiet while critical still pages.
"""

from __future__ import annotations

import copy
import json
import shutil
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from helpers.procs import free_port, start_process

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
AM_CONFIG = ROOT / "alertmanager" / "alertmanager.yml"
AM_BIN = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
TOKEN = "test-token-0123456789"


class Capture:
    """A loopback webhook that records every POST (path, Authorization header, JSON body)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict]] = []
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                capture.requests.append((self.path, self.headers.get("Authorization", ""), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_copy_of_config(webhook_base: str, token_file: Path, *, maintenance_now: bool = False,
                        group_wait: str | None = None) -> dict:
    """The shipped config with webhook URLs pointed at ``webhook_base`` and the token file replaced."""
    config = copy.deepcopy(yaml.safe_load(AM_CONFIG.read_text()))
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = hook["url"].replace("http://127.0.0.1:19818", webhook_base)
            hook["http_config"]["authorization"]["credentials_file"] = str(token_file)
    if group_wait:
        def shorten(route: dict) -> None:
            route["group_wait"] = route["group_interval"] = group_wait
            for child in route.get("routes", []):
                shorten(child)
        shorten(config["route"])
    if maintenance_now:
        for interval in config["time_intervals"]:
            if interval["name"] == "weekly-maintenance":
                interval["time_intervals"] = [{"weekdays": ["sunday:saturday"]}]  # always
    return config


test_copy_of_config.__test__ = False  # a helper, not a pytest test


def start_alertmanager(tmp_path: Path, config: dict):
    config_file = tmp_path / "alertmanager.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    proc = start_process(
        [AM_BIN, f"--config.file={config_file}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"],
        ready_url=f"http://127.0.0.1:{port}/-/ready", timeout=20,
    )
    return proc, f"http://127.0.0.1:{port}"


def post_alerts(base: str, alerts: list[dict[str, str]]) -> None:
    now = datetime.now(UTC)
    payload = [
        {"labels": labels, "annotations": {"summary": "Test."},
         "startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=1)).isoformat()}
        for labels in alerts
    ]
    req = urllib.request.Request(f"{base}/api/v2/alerts", data=json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def get_alerts(base: str) -> list[dict]:
    with urllib.request.urlopen(f"{base}/api/v2/alerts", timeout=5) as resp:
        return json.load(resp)


def _key(labels: dict[str, str]) -> str:
    return "/".join(f"{k}={labels[k]}" for k in ("alertname", "severity", "instance", "exchange") if k in labels)


# label sets -> the key of the alert expected to inhibit it (None: must stay active)
A = "agent-{}:19817"
INHIBITION_CASES: list[tuple[dict[str, str], str | None]] = [
    # 1. severity ladder, same alertname + instance
    ({"alertname": "AgentMonTestLadder", "severity": "critical", "instance": A.format(1)}, None),
    ({"alertname": "AgentMonTestLadder", "severity": "warning", "instance": A.format(1)},
     "alertname=AgentMonTestLadder/severity=critical/instance=agent-1:19817"),
    ({"alertname": "AgentMonTestLadder", "severity": "info", "instance": A.format(1)},
     "alertname=AgentMonTestLadder/severity=critical/instance=agent-1:19817"),
    ({"alertname": "AgentMonTestLadder", "severity": "warning", "instance": A.format(2)}, None),  # other instance
    ({"alertname": "AgentMonTestOther", "severity": "info", "instance": A.format(1)}, None),  # other alertname
    # 2. exporter down mutes everything from its instance, nothing elsewhere, not the Watchdog
    ({"alertname": "AgentMonExporterDown", "severity": "critical", "component": "exporter", "instance": A.format(3)}, None),
    ({"alertname": "AgentMonHighCpuUtilisation", "severity": "warning", "component": "system", "instance": A.format(3)},
     "alertname=AgentMonExporterDown/severity=critical/instance=agent-3:19817"),
    ({"alertname": "AgentMonNoRecordsCollected", "severity": "critical", "component": "business", "instance": A.format(3)},
     "alertname=AgentMonExporterDown/severity=critical/instance=agent-3:19817"),
    ({"alertname": "AgentMonHighCpuUtilisation", "severity": "warning", "component": "system", "instance": A.format(4)}, None),
    ({"alertname": "Watchdog", "severity": "info", "component": "pipeline"}, None),
    # 3. stats source down mutes business alerts, not system ones
    ({"alertname": "AgentMonAgentStatsDown", "severity": "critical", "component": "agent", "instance": A.format(5)}, None),
    ({"alertname": "AgentMonExchangeDisconnected", "severity": "error", "component": "business",
      "exchange": "binance", "instance": A.format(5)},
     "alertname=AgentMonAgentStatsDown/severity=critical/instance=agent-5:19817"),
    ({"alertname": "AgentMonHighMemoryUtilisation", "severity": "error", "component": "system", "instance": A.format(5)}, None),
    # 4. all exchanges down mutes per-exchange alerts but not itself
    ({"alertname": "AgentMonAllExchangesDisconnected", "severity": "emergency", "component": "business",
      "instance": A.format(6)}, None),
    ({"alertname": "AgentMonExchangeDisconnected", "severity": "error", "component": "business",
      "exchange": "okx", "instance": A.format(6)},
     "alertname=AgentMonAllExchangesDisconnected/severity=emergency/instance=agent-6:19817"),
    # 5. one exchange down mutes that exchange's stale feed, not another exchange's
    ({"alertname": "AgentMonExchangeDisconnected", "severity": "error", "component": "business",
      "exchange": "binance", "instance": A.format(7)}, None),
    ({"alertname": "AgentMonExchangeFeedStale", "severity": "error", "component": "business",
      "exchange": "binance", "instance": A.format(7)},
     "alertname=AgentMonExchangeDisconnected/severity=error/instance=agent-7:19817/exchange=binance"),
    ({"alertname": "AgentMonExchangeFeedStale", "severity": "error", "component": "business",
      "exchange": "okx", "instance": A.format(7)}, None),
    # 6. a stalled feed mutes the low-rate warning
    ({"alertname": "AgentMonNoRecordsCollected", "severity": "critical", "component": "business", "instance": A.format(8)}, None),
    ({"alertname": "AgentMonDataCollectionRateLow", "severity": "warning", "component": "business", "instance": A.format(8)},
     "alertname=AgentMonNoRecordsCollected/severity=critical/instance=agent-8:19817"),
]


@pytest.fixture
def capture():
    cap = Capture()
    yield cap
    cap.close()


@pytest.mark.skipif(AM_BIN is None, reason="prometheus-alertmanager not installed (make system-deps)")
def test_inhibition_rules_in_a_real_alertmanager(tmp_path, capture):
    token = tmp_path / "token"
    token.write_text(TOKEN)
    proc, base = start_alertmanager(tmp_path, test_copy_of_config(capture.url, token))
    try:
        post_alerts(base, [labels for labels, _ in INHIBITION_CASES])
        expected = {_key(labels): inhibitor for labels, inhibitor in INHIBITION_CASES}
        deadline = time.monotonic() + 15
        while True:
            alerts = get_alerts(base)
            by_fp = {a["fingerprint"]: _key(a["labels"]) for a in alerts}
            got = {_key(a["labels"]): [by_fp.get(fp, fp) for fp in a["status"]["inhibitedBy"]] for a in alerts}
            actual = {k: (v[0] if len(v) == 1 else (v or None)) for k, v in got.items()}
            if actual == expected or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert actual == expected
        states = {_key(a["labels"]): a["status"]["state"] for a in alerts}
        assert all((states[k] == "suppressed") == (v is not None) for k, v in expected.items())
    finally:
        proc.stop()


def _wait_for(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(AM_BIN is None, reason="prometheus-alertmanager not installed (make system-deps)")
@pytest.mark.parametrize("maintenance_now", [False, True], ids=["normal", "in-maintenance-window"])
def test_delivery_to_receiver_routes_and_maintenance_window(tmp_path, capture, maintenance_now):
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    config = test_copy_of_config(capture.url, token, maintenance_now=maintenance_now, group_wait="1s")
    proc, base = start_alertmanager(tmp_path, config)
    try:
        post_alerts(base, [
            {"alertname": "AgentMonExporterDown", "severity": "critical", "instance": "agent-9:19817", "job": "agent-exporter"},
            {"alertname": "AgentMonHighCpuUtilisation", "severity": "warning", "instance": "agent-10:19817"},
        ])
        paths = lambda: [path for path, _, _ in capture.requests]  # noqa: E731
        assert _wait_for(lambda: "/alerts/critical" in paths()), (paths(), proc.output())
        path, auth, body = next(r for r in capture.requests if r[0] == "/alerts/critical")
        assert auth == f"Bearer {TOKEN}"
        assert body["version"] == "4" and body["receiver"] == "agentmon-critical" and body["status"] == "firing"
        assert body["groupLabels"] == {"alertname": "AgentMonExporterDown", "instance": "agent-9:19817"}
        assert [a["labels"]["alertname"] for a in body["alerts"]] == ["AgentMonExporterDown"]
        if maintenance_now:
            # Both groups were due after the same 1s group_wait; give the muted one ample time.
            time.sleep(3)
            assert "/alerts/warning" not in paths(), "warning route must be muted in the maintenance window"
        else:
            assert _wait_for(lambda: "/alerts/warning" in paths()), (paths(), proc.output())
            _, auth, body = next(r for r in capture.requests if r[0] == "/alerts/warning")
            assert auth == f"Bearer {TOKEN}" and body["receiver"] == "agentmon-warning"
    finally:
        proc.stop()
