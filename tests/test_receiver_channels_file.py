"""File/log channel: JSON lines appended to a file (or stdout), errors classified."""

from __future__ import annotations

import json

import pytest
from helpers.golden import FIXED_NOW, OWN_FIXTURES, load_notification

from receiver.channels import load_registry
from receiver.channels.base import Delivered, PermanentFailure, SendContext
from receiver.channels.file import FileChannel
from receiver.compose import compose
from receiver.config import TargetConfig
from receiver.templating import Templates

CTX = SendContext(session=None, timeout=5)


def _request(channel, fixture="tpl_one_alert.json", lang="en"):
    target = TargetConfig(name=channel.name, type="file", options={}, language=lang, timezone="UTC")
    return compose(channel, Templates(clock=lambda: FIXED_NOW), target, [load_notification(OWN_FIXTURES / fixture)])


def test_registered_and_defaults():
    assert load_registry()["file"] is FileChannel
    assert FileChannel.default_send_resolved is True
    assert FileChannel.secret_options == ()


async def test_appends_one_json_line_per_message(tmp_path):
    path = tmp_path / "alerts.jsonl"
    ch = FileChannel("log", {"path": str(path)})
    r1 = await ch.send(CTX, _request(ch))
    r2 = await ch.send(CTX, _request(ch, "tpl_cjk_emoji.json", "zh"))
    assert isinstance(r1, Delivered) and isinstance(r2, Delivered)
    lines = path.read_text("utf-8").splitlines()
    assert len(lines) == 2
    first, second = (json.loads(x) for x in lines)
    assert first["target"] == "log" and first["status"] == "firing" and first["severity"] == "critical"
    assert first["title"] == "🔥 [FIRING:1] CollectorDown"
    assert "collector-001 is down" in first["text"]
    assert first["time"].endswith("Z") and first["idempotency_key"] == first["notification_ids"][0]
    assert second["title"] == "🔥 [告警:2] 行情延迟过高"  # non-ASCII kept readable in the file
    assert "上交所 🚀" in lines[1]


async def test_stdout_by_default(capsys):
    ch = FileChannel("log", {})
    assert isinstance(await ch.send(CTX, _request(ch)), Delivered)
    out = capsys.readouterr().out
    assert json.loads(out)["title"] == "🔥 [FIRING:1] CollectorDown"


@pytest.mark.parametrize("make_path", [lambda p: p, lambda p: p / "missing-dir" / "x.jsonl"])
async def test_unwritable_path_is_permanent(tmp_path, make_path):
    ch = FileChannel("log", {"path": str(make_path(tmp_path))})  # a directory / a missing directory
    result = await ch.send(CTX, _request(ch))
    assert isinstance(result, PermanentFailure) and "cannot write" in result.reason
