"""compose(): size fitting, template fallback, digests, context details, previews."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import timedelta
from typing import Any, ClassVar

import pytest
from helpers.golden import FIXED_NOW, OWN_FIXTURES, load_notification

from receiver.channels.base import Channel, Delivered, OutboundRequest, RenderedMessage, SendResult
from receiver.channels.email import EmailChannel
from receiver.channels.file import FileChannel
from receiver.channels.util import truncate_bytes
from receiver.channels.webhook import WebhookChannel
from receiver.compose import MessageTooLarge, compose, compose_message, idempotency_key, render_preview
from receiver.config import TargetConfig
from receiver.templating import Templates


class TinyChannel(Channel):
    """A channel with a small byte limit on its JSON body (like DingTalk/WeCom, only smaller)."""

    type = "tiny"
    template = "file"
    fields = ("title", "text")
    limit: ClassVar[int] = 1500

    def build(self, message: RenderedMessage) -> OutboundRequest:
        return OutboundRequest(url="http://127.0.0.1:9/x", json={"title": message["title"], "text": message["text"]})

    def oversize(self, request: OutboundRequest) -> str | None:
        n = len(request.body_bytes())
        return f"{n} > {self.limit} bytes" if n > self.limit else None

    def truncate(self, message: RenderedMessage) -> RenderedMessage:
        room = self.limit - len(message["title"].encode()) - 40
        return replace(message, fields={**message.fields, "text": truncate_bytes(message["text"], room)})

    async def send(self, ctx: Any, request: OutboundRequest) -> SendResult:
        return Delivered()


def target(name="t", type_="tiny", lang="en", template=None, tz="Asia/Shanghai") -> TargetConfig:
    return TargetConfig(name=name, type=type_, options={}, language=lang, timezone=tz, template=template)


@pytest.fixture
def templates() -> Templates:
    return Templates(clock=lambda: FIXED_NOW)


def notif(name: str):
    return load_notification(OWN_FIXTURES / name)


@pytest.mark.parametrize("lang,more", [("en", "…and {} more"), ("zh", "……还有 {} 条")])
def test_oversize_message_shows_fewer_alerts_and_how_many_more(templates, lang, more):
    n = notif("tpl_19_alerts.json")
    ch = TinyChannel("tiny", {})
    msg, req = compose_message(ch, templates, target(lang=lang), [n])
    assert ch.oversize(req) is None
    shown = msg.meta["shown_alerts"]
    assert 1 <= shown < 19 and msg.meta["omitted"] == 19 - shown
    assert msg["text"].rstrip().endswith(more.format(19 - shown))
    assert msg["text"].count("lags behind") == shown  # one summary per shown alert
    # maximal: one more alert would not fit
    bigger = TinyChannel("tiny", {})
    TinyChannel.limit, saved = 10**9, TinyChannel.limit
    try:
        from receiver.compose import _Composer

        c = _Composer(bigger, templates, target(lang=lang), [n], lambda r: None)
        _, r, _ = c.attempt(shown + 1)
    finally:
        TinyChannel.limit = saved
    assert ch.oversize(r) is not None


def test_am_truncated_alerts_count_in_more(templates):
    n = notif("tpl_200_alerts.json")  # 200 alerts, truncatedAlerts=50
    msg, req = compose_message(TinyChannel("tiny", {}), templates, target(), [n])
    shown = msg.meta["shown_alerts"]
    assert msg["text"].rstrip().endswith(f"…and {200 - shown + 50} more")
    # nothing left out by us: only AM's count
    full = compose_message(FileChannel("f", {}), templates, target(type_="file"), [n])[0]
    assert full.meta["omitted"] == 0 and full["text"].rstrip().endswith("…and 50 more")


def test_last_resort_truncation_is_utf8_safe(templates):
    n = notif("tpl_cjk_emoji.json")
    a = n.alerts[0]
    huge = replace(a, annotations={**a.annotations, "description": "行情延迟🔥" * 2000})
    n = replace(n, alerts=[huge])
    ch = TinyChannel("tiny", {})
    msg, req = compose_message(ch, templates, target(lang="zh"), [n])
    assert ch.oversize(req) is None
    body = req.body_bytes()
    body.decode("utf-8")  # no split character
    assert msg["text"].endswith("…")
    assert "行情延迟" in msg["text"]


def test_message_too_large_raises_clear_error(templates):
    class Hopeless(TinyChannel):
        limit = 10

        def truncate(self, message):
            return message

    with pytest.raises(MessageTooLarge, match="'t'.*does not fit"):
        compose(Hopeless("h", {}), templates, target(), [notif("tpl_one_alert.json")])


@pytest.mark.parametrize(
    "source",
    [
        "{% block title %}{{ x }{% endblock %}",  # syntax error
        "{% block title %}{{ 1 // 0 }}{% endblock %}{% block text %}x{% endblock %}",  # runtime error
        "{% block title %}only a title{% endblock %}",  # missing block
        "{% extends 'nope.j2' %}",  # missing parent
    ],
)
def test_failing_custom_template_falls_back_to_default(tmp_path, source):
    (tmp_path / "mine.en.j2").write_text(source, "utf-8")
    errors: list[str] = []
    tpl = Templates(tmp_path, clock=lambda: FIXED_NOW)
    msg, req = compose_message(FileChannel("f", {}), tpl, target(type_="file", template="mine"), [notif("tpl_one_alert.json")], on_template_error=errors.append)
    assert len(errors) == 1 and "'mine'" in errors[0] and "using the default" in errors[0]
    assert msg["title"] == "🔥 [FIRING:1] CollectorDown"
    assert "collector-001 is down" in msg["text"]


def test_custom_template_by_path_is_used(tmp_path, templates):
    path = tmp_path / "x.j2"
    path.write_text("{% block title %}T {{ alerts|length }}{% endblock %}{% block text %}{{ alerts[0].labels.inject }}{% endblock %}", "utf-8")
    errors: list[str] = []
    msg, _ = compose_message(FileChannel("f", {}), templates, target(type_="file", template=str(path)), [notif("tpl_markup_breakers.json")], on_template_error=errors.append)
    assert errors == []
    assert msg["title"] == "T 1" and msg["text"] == "{{ 7*7 }}"


def test_missing_custom_template_file_falls_back(templates):
    errors: list[str] = []
    msg, _ = compose_message(FileChannel("f", {}), templates, target(type_="file", template="/nonexistent/x.j2"), [notif("tpl_one_alert.json")], on_template_error=errors.append)
    assert errors and "not found" in errors[0]
    assert "CollectorDown" in msg["title"]


def test_digest_of_several_notifications(templates):
    a, b, c = notif("tpl_one_alert.json"), notif("tpl_mixed.json"), notif("tpl_cjk_emoji.json")
    msg, req = compose_message(FileChannel("f", {}), templates, target(type_="file"), [a, b, c])
    text = msg["text"]
    assert msg.meta["digest"] is True
    assert text.startswith("Digest: 3 notifications, 6 alerts\nBy severity: CRITICAL 4, WARNING 2\n")
    assert "By alert: CollectorLagHigh 3, 行情延迟过高 2, CollectorDown 1" in text
    # most important first: critical firing alerts (oldest first), then warnings, resolved last
    heads = [line.split(":")[0] for line in text.splitlines() if line.startswith(("🔴", "🟡", "✅"))]
    assert heads == [
        "🔴 [CRITICAL] CollectorLagHigh",  # 09:10Z
        "🔴 [CRITICAL] 行情延迟过高",  # 09:20Z
        "🔴 [CRITICAL] CollectorDown",  # 09:27:30Z
        "🟡 [WARNING] 行情延迟过高",
        "🟡 [WARNING] CollectorLagHigh",
        "✅ [RESOLVED] CollectorLagHigh",
    ]
    # no group label is common to all three groups: the alert names instead
    assert msg["title"] == "🔥 [FIRING:5] CollectorLagHigh 行情延迟过高 CollectorDown (3 groups)"
    ids = [a.id, b.id, c.id]
    assert msg.meta["notification_ids"] == ids
    assert msg.meta["idempotency_key"] == hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()
    assert idempotency_key([c, a, b]) == msg.meta["idempotency_key"]
    assert [n["id"] for n in msg.meta["notifications"]] == ids
    assert msg.meta["severity"] == "critical"


def test_meta_for_one_notification(templates):
    n = notif("tpl_mixed.json")
    msg, _ = compose_message(FileChannel("f", {}), templates, target(type_="file"), [n])
    m = msg.meta
    assert m["status"] == "firing" and m["severity"] == "critical"
    assert m["idempotency_key"] == n.id and m["notification_ids"] == [n.id]
    assert m["digest"] is False and m["group_key"] == n.group_key
    assert json.loads(json.dumps(m["notifications"]))[0]["alerts"][1]["endsAt"] == "2026-11-28T09:20:00Z"


def test_times_in_target_timezone_and_durations_from_clock():
    n = notif("tpl_one_alert.json")  # starts 09:27:30Z
    for tz, expect in (("UTC", "2026-11-28 09:27:30 UTC"), ("Asia/Shanghai", "2026-11-28 17:27:30 CST")):
        t = Templates(clock=lambda: FIXED_NOW + timedelta(hours=1))
        msg, _ = compose_message(FileChannel("f", {}), t, target(type_="file", tz=tz), [n])
        assert f"Started {expect} (firing for 1h 2m)" in msg["text"]


def test_channel_template_context_reaches_templates_and_meta(tmp_path):
    class WithMentions(TinyChannel):
        template = "m"

        def template_context(self, notifications):
            return {"mentions": ["@13800000000"]}

    (tmp_path / "m.en.j2").write_text("{% block title %}x{% endblock %}{% block text %}{{ mentions|join(' ') }}{% endblock %}", "utf-8")
    msg, _ = compose_message(WithMentions("w", {}), Templates(tmp_path), target(), [notif("tpl_one_alert.json")])
    assert msg["text"] == "@13800000000"
    assert msg.meta["mentions"] == ["@13800000000"] and msg.meta["context"] == {"mentions": ["@13800000000"]}


def test_render_preview(templates):
    n = notif("tpl_cjk_emoji.json")
    mail = render_preview(
        EmailChannel("m", {"smarthost": "127.0.0.1:25", "from": "a@example.com", "to": "b@example.com"}), templates, target(type_="email", lang="zh"), n
    )
    assert "Subject: [告警:2] 行情延迟过高" in mail and "--- text/html ---" in mail and "上交所 🚀" in mail
    hook = render_preview(WebhookChannel("w", {"url": "https://hooks.example/x?token=abc"}), templates, target(type_="webhook"), n)
    head, body = hook.split("\n\n", 1)
    assert head == "POST https://hooks.example/x?token=<secret>"
    assert json.loads(body)["idempotency_key"] == n.id
    line = json.loads(render_preview(FileChannel("f", {}), templates, target(type_="file"), n))
    assert line["title"] == "🔥 [FIRING:2] 行情延迟过高"
