"""Generic webhook channel against a local aiohttp server: body, idempotency, HMAC, answers."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from aiohttp import web
from fakes.client import ctx, session_fixture  # noqa: F401  (the "session" fixture)
from helpers.golden import FIXED_NOW, OWN_FIXTURES, load_notification
from helpers.procs import free_port

from receiver.channels import load_registry
from receiver.channels.base import Delivered, PermanentFailure, RetryableFailure
from receiver.channels.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookChannel, sign, verify
from receiver.compose import compose, compose_message
from receiver.config import TargetConfig
from receiver.templating import Templates

SECRET = "s3cret-s3cret-s3cret"


class FarEnd:
    """Records every request; answers with ``reply`` (status, body, headers)."""

    def __init__(self):
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.reply: Callable[[], web.Response] = lambda: web.Response(text="ok")

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        return self.reply()


@pytest.fixture
async def far_end(aiohttp_server):
    fe = FarEnd()
    app = web.Application()
    app.router.add_post("/hook", fe.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    fe.url = str(server.make_url("/hook"))
    return fe


def target(lang="en") -> TargetConfig:
    return TargetConfig(name="hook", type="webhook", options={}, language=lang, timezone="UTC")


def notif(name="tpl_mixed.json"):
    return load_notification(OWN_FIXTURES / name)


def request_for(ch, notifications):
    return compose(ch, Templates(clock=lambda: FIXED_NOW), target(), notifications)


def test_registered_and_validation():
    assert load_registry()["webhook"] is WebhookChannel
    with pytest.raises(ValueError, match="url"):
        WebhookChannel("w", {"url": "ftp://x"})
    with pytest.raises(ValueError, match="Idempotency-Key"):
        WebhookChannel("w", {"url": "http://x", "headers": {"Idempotency-Key": "1"}})
    d = WebhookChannel("w", {"url": "http://x", "hmac_secret": SECRET, "headers": {"Authorization": "Bearer t"}}).describe()
    assert d["hmac_secret"] == "<secret>" and d["headers"] == "<secret>"


async def test_posts_normalized_notification_with_idempotency_key(far_end, session):
    n = notif()
    ch = WebhookChannel("hook", {"url": far_end.url, "headers": {"Authorization": "Bearer abc"}})
    result = await ch.send(ctx(session), request_for(ch, [n]))
    assert isinstance(result, Delivered)
    headers, raw = far_end.requests[0]
    body = json.loads(raw)
    assert headers["Idempotency-Key"] == n.id == body["idempotency_key"]
    assert headers["Authorization"] == "Bearer abc"
    assert headers["Content-Type"].startswith("application/json")
    assert SIGNATURE_HEADER not in headers
    # AlertManager v4 shape: a consumer of AM webhooks can read it
    assert body["version"] == "4" and body["groupKey"] == n.group_key and body["status"] == "firing"
    assert [a["fingerprint"] for a in body["alerts"]] == [a.fingerprint for a in n.alerts]
    assert body["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"
    assert body["title"] == "[FIRING:2] CollectorLagHigh"
    assert body["text"].splitlines()[0].startswith("CRITICAL CollectorLagHigh collector-000:9100")


async def test_hmac_signature_verifies(far_end, session):
    ch = WebhookChannel("hook", {"url": far_end.url, "hmac_secret": SECRET})
    assert isinstance(await ch.send(ctx(session), request_for(ch, [notif()])), Delivered)
    headers, raw = far_end.requests[0]
    ts, sig = headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
    assert sig == sign(SECRET, ts, raw) and sig.startswith("sha256=")
    assert verify(SECRET, ts, raw, sig)
    assert not verify(SECRET, ts, raw + b" ", sig)  # body tampered
    assert not verify("other-secret-other", ts, raw, sig)
    assert not verify(SECRET, str(int(ts) - 3600), raw, sign(SECRET, str(int(ts) - 3600), raw))  # replayed


async def test_digest_body(far_end, session):
    a, b = notif("tpl_one_alert.json"), notif("tpl_resolved.json")
    ch = WebhookChannel("hook", {"url": far_end.url})
    await ch.send(ctx(session), request_for(ch, [a, b]))
    headers, raw = far_end.requests[0]
    body = json.loads(raw)
    assert body["digest"] is True and [x["id"] for x in body["notifications"]] == [a.id, b.id]
    assert headers["Idempotency-Key"] == body["idempotency_key"] not in (a.id, b.id)


@pytest.mark.parametrize(
    "status,headers,kind,retry_after",
    [
        (200, {}, Delivered, None),
        (204, {}, Delivered, None),
        (503, {"Retry-After": "7"}, RetryableFailure, 7.0),
        (500, {}, RetryableFailure, None),
        (429, {"Retry-After": "30"}, RetryableFailure, 30.0),
        (408, {}, RetryableFailure, None),
        (400, {}, PermanentFailure, None),
        (401, {}, PermanentFailure, None),
        (404, {}, PermanentFailure, None),
    ],
)
async def test_answers_are_classified(far_end, session, status, headers, kind, retry_after):
    far_end.reply = lambda: web.Response(status=status, text="" if status == 204 else f"answer {status} token=abc", headers=headers)
    ch = WebhookChannel("hook", {"url": far_end.url})
    result = await ch.send(ctx(session), request_for(ch, [notif()]))
    assert isinstance(result, kind), result
    if kind is RetryableFailure:
        assert result.retry_after == retry_after
    if kind is PermanentFailure:
        assert f"HTTP {status}" in result.reason and f"answer {status}" in result.reason


async def test_connection_refused_is_retryable(session):
    ch = WebhookChannel("hook", {"url": f"http://127.0.0.1:{free_port()}/hook"})
    result = await ch.send(ctx(session), request_for(ch, [notif()]))
    assert isinstance(result, RetryableFailure) and "connection" in result.reason


def test_max_bytes_drops_alerts_into_truncated_alerts():
    n = notif("tpl_19_alerts.json")
    ch = WebhookChannel("hook", {"url": "http://127.0.0.1:9/hook", "max_bytes": 6000})
    msg, req = compose_message(ch, Templates(clock=lambda: FIXED_NOW), target(), [n])
    assert len(req.body_bytes()) <= 6000
    body = req.json
    shown = len(body["alerts"])
    assert 0 < shown < 19 and body["truncatedAlerts"] == 19 - shown
    assert body["text"].endswith(f"…and {19 - shown} more")
    # the most important alerts are the ones kept: 7 critical, then 6 warning, then 6 info
    kept = [a["labels"]["severity"] for a in body["alerts"]]
    assert kept.count("critical") == min(shown, 7)
    assert kept.count("warning") == min(max(shown - 7, 0), 6)
