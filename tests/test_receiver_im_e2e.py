"""End to end: a real AlertManager → the receiver process (python -m receiver.cli) → fake DingTalk
and fake WeCom robots. Messages arrive signed, with the keyword, with label-driven mentions, and the
resolved notification follows."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fakes import FakeDingTalk, FakeWeCom, running
from fakes.dingtalk import fired_mentions
from helpers.procs import free_port, start_process

ROOT = Path(__file__).resolve().parents[1]
AM_BIN = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(AM_BIN is None, reason="prometheus-alertmanager not installed (make system-deps)"),
]


def push_alerts(am_port: int, alerts: list[dict]) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{am_port}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback
        assert resp.status == 200


async def wait_for(predicate, seconds: float, why) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(why())


async def test_alertmanager_to_dingtalk_and_wecom(tmp_path):
    dingtalk = FakeDingTalk({"dt-token": {"secret": "SECe2e", "keywords": ["监控"]}})
    wecom = FakeWeCom({"wc-key"})
    async with running(dingtalk), running(wecom):
        port = free_port()
        cfg = tmp_path / "receiver.yml"
        cfg.write_text(f"""
routes:
  ops: [dt, wc]
targets:
  dt:
    type: dingtalk
    url: "{dingtalk.send_url('dt-token')}"
    secret: SECe2e
    keyword: 监控
    language: zh
    timezone: Asia/Shanghai
    mentions:
      at_all_severities: [critical]
      people_label: team
      people:
        payments: {{mobiles: ["13900000001"], user_ids: ["lisi"]}}
  wc:
    type: wecom
    url: "{wecom.send_url('wc-key')}"
    mentions:
      user_ids: [oncall]
      people_label: team
      people:
        payments: {{user_ids: [zhangsan]}}
retry_backoff: {{initial: 0.1, max: 1}}
""")
        rec = start_process(
            [sys.executable, "-m", "receiver.cli", f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}",
             f"--storage.path={tmp_path / 'data'}", "--log.level=warn"],
            ready_url=f"http://127.0.0.1:{port}/-/ready", timeout=20, cwd=ROOT, log_path=tmp_path / "receiver.log",
        )
        am_port = free_port()
        am_cfg = tmp_path / "am.yml"
        am_cfg.write_text(f"""
route:
  receiver: im
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: im
    webhook_configs:
      - url: http://127.0.0.1:{port}/alerts/ops
        send_resolved: true
""")
        am = start_process(
            [AM_BIN, f"--config.file={am_cfg}", f"--storage.path={tmp_path / 'am'}",
             f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=", "--log.level=warn"],
            ready_url=f"http://127.0.0.1:{am_port}/-/ready", timeout=30, log_path=tmp_path / "am.log",
        )
        try:
            labels = [{"alertname": "行情延迟", "severity": "critical", "team": "payments", "instance": f"collector-{i}:9100"}
                      for i in (1, 2)]
            alerts = [{"labels": lb, "annotations": {"summary": f"延迟 12s on *{lb['instance']}*"},
                       "generatorURL": "http://prometheus:9090/graph?g0.expr=md_lag"} for lb in labels]
            push_alerts(am_port, alerts)

            def logs() -> str:
                return f"AM:\n{am.output()}\nreceiver:\n{rec.output()}\nDT: {dingtalk.received}\nWC: {wecom.received}"

            await wait_for(lambda: dingtalk.delivered and wecom.delivered, 30, logs)
            dt_req = next(r for r in dingtalk.received if r.accepted)
            assert {"timestamp", "sign", "access_token"} <= set(dt_req.query)  # signed (and the fake verified it)
            dt = dingtalk.delivered[0]
            text = dt["markdown"]["text"]
            assert text.startswith("监控") and "行情延迟" in text and "collector-1:9100" in text
            assert dt["at"] == {"atMobiles": ["13900000001"], "atUserIds": ["lisi"], "isAtAll": True}
            assert fired_mentions(dt) == {"13900000001", "lisi"}
            wc = wecom.delivered[0]["markdown"]["content"]
            assert "<@oncall>" in wc and "<@zhangsan>" in wc and '<font color="warning">' in wc

            # resolve both: the resolved group reaches both robots, without @-mentions
            past = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
            for a in alerts:
                a["endsAt"] = past
            push_alerts(am_port, alerts)
            await wait_for(lambda: any(b["markdown"]["title"].startswith("✅ [恢复]") for b in dingtalk.delivered)
                           and any("RESOLVED **2**" in b["markdown"]["content"] for b in wecom.delivered), 30, logs)
            resolved = next(b for b in dingtalk.delivered if b["markdown"]["title"].startswith("✅ [恢复]"))
            assert "at" not in resolved and "**恢复** 2" in resolved["markdown"]["text"]
            assert all(r.accepted for r in dingtalk.received + wecom.received), logs()
        finally:
            am.stop()
            rec.stop()
