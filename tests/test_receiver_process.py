"""The real process: SIGKILL mid-delivery loses nothing; a real AlertManager reaches the sink.

Both use the real generic-webhook channel and the real templates (no stand-ins).
"""

from __future__ import annotations

import asyncio
import collections
import email
import email.policy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from aiosmtpd.controller import Controller
from helpers import receiver_app
from helpers.procs import free_port, start_process
from helpers.receiver import FIXTURES, payload

from receiver.ingest import fingerprint

sink = receiver_app.sink  # fixture
ROOT = Path(__file__).resolve().parents[1]
AM_BIN = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
pytestmark = pytest.mark.integration


def start_receiver(tmp_path: Path, config: str, port: int):
    cfg = tmp_path / "receiver.yml"
    cfg.write_text(config)
    return start_process(
        [sys.executable, "-m", "receiver.cli", f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}",
         f"--storage.path={tmp_path / 'data'}", "--log.level=warn"],
        ready_url=f"http://127.0.0.1:{port}/-/ready", timeout=20, cwd=ROOT,
        log_path=tmp_path / f"receiver-{time.monotonic_ns()}.log",
    )


async def test_sigkill_during_delivery_loses_nothing(tmp_path, sink):
    port = free_port()
    config = f"""
routes:
  critical: [hook]
targets:
  hook: {{type: webhook, url: "{sink.url}", rate_limit: "1000/1s"}}
"""
    sink.set_default(delay=0.002)  # every request takes a moment: the kill lands mid-request
    proc = start_receiver(tmp_path, config, port)
    accepted: list[str] = []
    try:
        url = f"http://127.0.0.1:{port}/alerts/critical"
        async with aiohttp.ClientSession() as session:
            sem = asyncio.Semaphore(20)

            async def post(i: int) -> None:
                async with sem, session.post(url, json=payload(f"Alert{i}", n_alerts=5)) as resp:
                    doc = await resp.json()
                    assert resp.status == 200, doc
                    accepted.append(doc["id"])

            await asyncio.gather(*(post(i) for i in range(1000)))
        assert len(set(accepted)) == 1000
        assert await sink.async_wait_for(lambda s: len(s.requests) >= 150, 30)
        os.kill(proc.pid, signal.SIGKILL)
        proc.popen.wait(10)
    finally:
        proc.stop()
    before = sink.requests
    delivered_before = set(sink.delivered_ids())
    assert 0 < len(delivered_before) < 1000, "the kill should land while deliveries are in flight"

    proc = start_receiver(tmp_path, config, port)
    try:
        assert await sink.async_wait_for(lambda s: set(s.delivered_ids()) >= set(accepted), 60), (
            f"lost {len(set(accepted) - set(sink.delivered_ids()))} notifications"
        )
    finally:
        proc.stop()
    counts = collections.Counter(sink.delivered_ids())
    assert set(counts) == set(accepted)  # 0 lost, nothing unknown
    duplicates = {i for i, c in counts.items() if c > 1}
    # at most what was in flight at the kill: the worker sends one request at a time per target
    in_flight = set(before[-1].notification_ids()) if before else set()
    assert duplicates <= in_flight, (duplicates, in_flight)
    # the idempotency key lets the far end drop repeats: for single sends it is the notification id
    for rec in sink.delivered():
        ids = rec.notification_ids()
        if len(ids) == 1:
            assert rec.idempotency_key() == ids[0]


def test_config_check_and_bad_config_exit_nonzero(tmp_path):
    good = tmp_path / "good.yml"
    good.write_text("routes: {critical: [hook]}\ntargets: {hook: {type: webhook, url: 'http://127.0.0.1:1/x'}}\n")
    out = subprocess.run([sys.executable, "-m", "receiver.cli", f"--config.file={good}", "--config.check"],
                         capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert out.returncode == 0 and "OK" in out.stdout
    bad = tmp_path / "bad.yml"
    bad.write_text("routes: {critical: [hook]}\ntargets:\n  hook: {type: webhook, url: 'http://x', colour: red}\n")
    out = subprocess.run([sys.executable, "-m", "receiver.cli", f"--config.file={bad}",
                          f"--web.listen-address=127.0.0.1:{free_port()}"],
                         capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert out.returncode == 1
    assert "bad.yml:3: targets.hook.colour: unknown key 'colour'" in out.stderr


def test_render_subcommand_prints_the_body(tmp_path):
    cfg = tmp_path / "r.yml"
    cfg.write_text("routes: {critical: [hook]}\n"
                   "targets: {hook: {type: webhook, url: 'http://127.0.0.1:1/x', hmac_secret: 'abcdefghijklmnopqrstuv'}}\n")
    fixture = FIXTURES / "prometheus-msteams__prometheus-msteams__prom_post_request.json"
    out = subprocess.run([sys.executable, "-m", "receiver.cli", "render", f"--config.file={cfg}",
                          f"--payload={fixture}", "--target=hook"], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["alerts"][0]["labels"]["alertname"] == "high_memory_load"
    assert doc["receiver"] == "teams_proxy" and doc["target"] == "hook"
    assert "abcdefghijklmnopqrstuv" not in out.stdout


@pytest.mark.skipif(AM_BIN is None, reason="prometheus-alertmanager not installed (make system-deps)")
class _Mailbox:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


async def test_real_alertmanager_reaches_the_sink_and_the_mail_server(tmp_path, sink):
    port = free_port()
    mailbox, smtp_port = _Mailbox(), free_port()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    rec = start_receiver(tmp_path, f"""
auth:
  basic_auth: {{username: alertmanager, password: s3cret-pw}}
routes:
  critical: [hook, oncall-mail]
targets:
  hook: {{type: webhook, url: "{sink.url}"}}
  oncall-mail: {{type: email, smarthost: "127.0.0.1:{smtp_port}", from: "alerts@example.com", to: [oncall@example.com]}}
""", port)
    am_port = free_port()
    am_cfg = tmp_path / "am.yml"
    am_cfg.write_text(f"""
route:
  receiver: receiver
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: receiver
    webhook_configs:
      - url: http://127.0.0.1:{port}/alerts/critical
        send_resolved: true
        http_config:
          basic_auth: {{username: alertmanager, password: s3cret-pw}}
""")
    am = start_process(
        [AM_BIN, f"--config.file={am_cfg}", f"--storage.path={tmp_path / 'am'}",
         f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=", "--log.level=warn"],
        ready_url=f"http://127.0.0.1:{am_port}/-/ready", timeout=30, log_path=tmp_path / "am.log",
    )
    try:
        labels = {"alertname": "DiskFull", "instance": "db-1:9100", "severity": "critical"}
        alert = [{"labels": labels, "annotations": {"summary": "disk 97% full"},
                  "generatorURL": "http://prometheus:9090/graph"}]
        req = urllib.request.Request(f"http://127.0.0.1:{am_port}/api/v2/alerts", data=json.dumps(alert).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback
            assert resp.status == 200
        assert await sink.async_wait_for(lambda s: len(s.delivered()) >= 1, 30), am.output() + rec.output()
        doc = sink.delivered()[0].json()
        [got] = doc["alerts"]
        assert got["labels"] == labels and got["status"] == "firing"
        assert got["fingerprint"] == fingerprint(labels)  # ours is AlertManager's
        assert doc["receiver"] == "receiver" and doc["groupKey"].endswith('{alertname="DiskFull"}')
        assert doc["idempotency_key"] == doc["id"] == sink.delivered()[0].idempotency_key()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:  # noqa: S310
            text = resp.read().decode()
        assert 'alert_receiver_notifications_received_total{route="critical",status="firing"} 1.0' in text
        assert 'alert_receiver_deliveries_total{channel="webhook",outcome="delivered",target="hook"} 1.0' in text
        assert "alert_receiver_notifications_received_created" not in text
        # the same notification reached the real SMTP server as one multipart mail
        for _ in range(100):
            if mailbox.messages:
                break
            await asyncio.sleep(0.1)
        [mail] = mailbox.messages
        assert mail["To"] == "oncall@example.com" and "DiskFull" in mail["Subject"]
        assert {p.get_content_type() for p in mail.iter_parts()} == {"text/plain", "text/html"}
        assert "disk 97% full" in mail.get_body(("plain",)).get_content()
    finally:
        am.stop()
        rec.stop()
        smtp.stop()


def test_sighup_reloads_and_a_bad_config_keeps_the_old_one(tmp_path, sink):
    port = free_port()
    base = f"""
routes:
  critical: [hook]
targets:
  hook: {{type: webhook, url: "{sink.url}"}}
"""
    proc = start_receiver(tmp_path, base, port)
    cfg = tmp_path / "receiver.yml"

    def metric(name: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:  # noqa: S310
            return next(line for line in resp.read().decode().splitlines() if line.startswith(name + " "))

    def routes() -> set[str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/status", timeout=5) as resp:  # noqa: S310
            return set(json.load(resp)["data"]["config"]["routes"])

    def wait(predicate) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return False

    try:
        cfg.write_text(base.replace("critical: [hook]", "critical: [hook]\n  extra: [hook]"))
        os.kill(proc.pid, signal.SIGHUP)
        assert wait(lambda: routes() == {"critical", "extra"}), proc.output()
        assert metric("alert_receiver_config_last_reload_successful").endswith(" 1.0")
        cfg.write_text("routes: {critical: [nope]}\ntargets: {}\n")
        os.kill(proc.pid, signal.SIGHUP)
        assert wait(lambda: metric("alert_receiver_config_last_reload_successful").endswith(" 0.0")), proc.output()
        assert routes() == {"critical", "extra"}
        assert proc.running()
        assert "reload failed" in proc.output()
    finally:
        proc.stop()
