"""DingTalk channel: golden bodies, signing, keyword, mentions, size limit and answer
classification against the local fake robot (tests/fakes/dingtalk.py)."""

from __future__ import annotations

import time
import urllib.parse

import pytest
from fakes import FakeDingTalk, running
from fakes.client import ctx, session_fixture  # noqa: F401  (the "session" fixture)
from fakes.dingtalk import expected_sign, fired_mentions
from fakes.harness import BIG, GOLDEN_FIXTURES, compose_fixture, make_channel, notification
from helpers.golden import assert_golden  # noqa: F401  (re-exported for UPDATE_GOLDEN discoverability)
from helpers.procs import free_port

from agentmon.redact import redact_text
from receiver.channels.base import Delivered, PermanentFailure, RenderedMessage, RetryableFailure
from receiver.channels.dingtalk import DingTalkChannel, sign

MENTIONS = {
    "mobiles": ["13800000000"],
    "at_all_severities": ["critical"],
    "people_label": "team",
    "people": {"payments": {"mobiles": ["13900000001"], "user_ids": ["lisi"]}},
}


# -- golden -----------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["en", "zh"])
@pytest.mark.parametrize("path", GOLDEN_FIXTURES, ids=lambda p: p.stem)
def test_golden_markdown(path, language):
    from fakes.harness import check_golden

    channel = make_channel("dingtalk", {"url": "https://oapi.dingtalk.com/robot/send?access_token=TOKEN", "mentions": MENTIONS})
    check_golden("dingtalk", channel, path, language)


@pytest.mark.parametrize("path", GOLDEN_FIXTURES[:3], ids=lambda p: p.stem)
def test_golden_text_msgtype_with_keyword(path):
    from fakes.harness import check_golden

    channel = make_channel("dingtalk", {"url": "https://oapi.dingtalk.com/robot/send?access_token=TOKEN",
                                        "msgtype": "text", "keyword": "告警"})
    request = check_golden("dingtalk", channel, path, "en", suffix=".text")
    assert request.json["msgtype"] == "text"
    assert "告警" in request.json["text"]["content"]


def test_build_is_deterministic_and_unsigned():
    channel = make_channel("dingtalk", {"url": "https://x/robot/send?access_token=T", "secret": "SECabc"})
    n = notification(GOLDEN_FIXTURES[0])
    _, a = compose_fixture(channel, GOLDEN_FIXTURES[0])
    _, b = compose_fixture(channel, GOLDEN_FIXTURES[0])
    assert a == b and "sign=" not in a.url and n.alerts


# -- mentions ---------------------------------------------------------------------------------


def test_mentions_static_label_driven_and_at_all():
    channel = make_channel("dingtalk", {"url": "https://x/robot/send?access_token=T", "mentions": MENTIONS})
    _, req = compose_fixture(channel, GOLDEN_FIXTURES[0])  # team=payments, severity=critical
    at = req.json["at"]
    assert at == {"atMobiles": ["13800000000", "13900000001"], "atUserIds": ["lisi"], "isAtAll": True}
    assert fired_mentions(req.json) == {"13800000000", "13900000001", "lisi"}


def test_no_mentions_on_all_resolved_and_no_at_all_for_warning():
    channel = make_channel("dingtalk", {"url": "https://x/robot/send?access_token=T", "mentions": MENTIONS})
    _, resolved = compose_fixture(channel, GOLDEN_FIXTURES[1])
    assert "at" not in resolved.json
    _, mixed = compose_fixture(channel, GOLDEN_FIXTURES[2])  # firing warning/critical/info, team=marketdata
    assert mixed.json["at"]["isAtAll"] is True and mixed.json["at"]["atMobiles"] == ["13800000000"]


def test_build_writes_missing_mention_words_into_custom_text():
    channel = make_channel("dingtalk", {"url": "https://x/robot/send?access_token=T"})
    msg = RenderedMessage({"title": "t", "text": "custom template without mentions"},
                          {"mentions": {"mobiles": ["13800000000"], "user_ids": ["u1"], "at_all": False}})
    body = channel.build(msg).json
    assert body["markdown"]["text"].endswith("@13800000000 @u1")
    prefix = RenderedMessage({"title": "t", "text": "ping @138000000001 and @u1"}, msg.meta)  # longer number ≠ ours
    assert channel.build(prefix).json["markdown"]["text"].endswith("@u1\n\n@13800000000")
    assert fired_mentions(body) == {"13800000000", "u1"}


# -- size ---------------------------------------------------------------------------------------


def test_200_alerts_shrink_to_fit_with_more_line():
    channel = make_channel("dingtalk", {"url": "https://x/robot/send?access_token=T"})
    msg, req = compose_fixture(channel, BIG)
    size = len(req.body_bytes())
    assert size <= 20_000
    assert msg.meta["omitted"] > 0 and f"and {msg.meta['omitted'] + 7} more" in req.json["markdown"]["text"]


def test_max_bytes_configurable():
    channel = make_channel("dingtalk", {"url": "https://x/robot/send?access_token=T", "max_bytes": 3000})
    msg, req = compose_fixture(channel, BIG)
    assert len(req.body_bytes()) <= 3000 and msg.meta["shown_alerts"] >= 1


def test_truncate_cuts_one_huge_alert_to_fit():
    channel = make_channel("dingtalk", {"url": "https://x/robot/send?access_token=T", "max_bytes": 1000,
                                        "keyword": "ALERT", "mentions": {"mobiles": ["13800000000"]}})
    msg = RenderedMessage({"title": "big", "text": "界" * 5000}, {"mentions": {"mobiles": ["13800000000"]}})
    assert channel.oversize(channel.build(msg))
    cut = channel.truncate(msg)
    body = channel.build(cut)
    assert channel.oversize(body) is None and len(body.body_bytes()) > 900
    text = body.json["markdown"]["text"]
    assert text.startswith("ALERT") and "@13800000000" in text and "…" in text


# -- signing --------------------------------------------------------------------------------------


def test_sign_matches_dingtalk_algorithm():
    # reference: base64(hmac_sha256(secret, "ts\nsecret")), URL-encoded
    assert urllib.parse.unquote_plus(sign("SEC123", 1700000000000)) == expected_sign("SEC123", "1700000000000")


async def test_signed_send_accepted_and_timestamp_is_taken_at_send_time(session):
    async with running(FakeDingTalk({"tok": {"secret": "SECxyz"}})) as fake:
        channel = make_channel("dingtalk", {"url": fake.send_url("tok"), "secret": "SECxyz", "mentions": MENTIONS})
        _, req = compose_fixture(channel, GOLDEN_FIXTURES[0])
        assert isinstance(await channel.send(ctx(session), req), Delivered)
        # the same built request, sent two hours later, is signed afresh (a build-time
        # timestamp would now be outside DingTalk's one-hour window)
        fake.advance(2 * 3600)
        channel.clock = lambda: time.time() + 2 * 3600
        assert isinstance(await channel.send(ctx(session), req), Delivered)
        assert len(fake.delivered) == 2 and fired_mentions(fake.delivered[0]) == {"13800000000", "13900000001", "lisi"}


async def test_wrong_secret_and_expired_timestamp_are_permanent_with_errmsg(session):
    async with running(FakeDingTalk({"tok": {"secret": "SECright"}})) as fake:
        channel = make_channel("dingtalk", {"url": fake.send_url("tok"), "secret": "SECwrong"})
        _, req = compose_fixture(channel, GOLDEN_FIXTURES[0])
        result = await channel.send(ctx(session), req)
        assert isinstance(result, PermanentFailure) and "310000" in result.reason and "sign not match" in result.reason
        good = make_channel("dingtalk", {"url": fake.send_url("tok"), "secret": "SECright"})
        fake.advance(-2 * 3600)  # our clock is 2 h ahead of DingTalk's
        result = await good.send(ctx(session), req)
        assert isinstance(result, PermanentFailure) and "expired" in result.reason


async def test_keyword_prepended_when_missing(session):
    async with running(FakeDingTalk({"tok": {"keywords": ["监控"]}})) as fake:
        without = make_channel("dingtalk", {"url": fake.send_url("tok")})
        _, req = compose_fixture(without, GOLDEN_FIXTURES[1])
        result = await without.send(ctx(session), req)
        assert isinstance(result, PermanentFailure) and "keywords not in content" in result.reason
        with_kw = make_channel("dingtalk", {"url": fake.send_url("tok"), "keyword": "监控"})
        _, req = compose_fixture(with_kw, GOLDEN_FIXTURES[1])
        assert isinstance(await with_kw.send(ctx(session), req), Delivered)


async def test_200_alert_message_is_accepted_by_the_fake(session):
    async with running(FakeDingTalk({"tok": {}})) as fake:
        channel = make_channel("dingtalk", {"url": fake.send_url("tok")})
        _, req = compose_fixture(channel, BIG)
        assert isinstance(await channel.send(ctx(session), req), Delivered)
        oversized = make_channel("dingtalk", {"url": fake.send_url("tok"), "max_bytes": 100_000})
        _, big = compose_fixture(oversized, BIG)  # limit raised beyond DingTalk's: the fake refuses
        result = await oversized.send(ctx(session), big)
        assert isinstance(result, PermanentFailure) and "460101" in result.reason


# -- classification ---------------------------------------------------------------------------------


async def test_throttled_after_20_a_minute_pauses_with_configured_retry_after(session):
    async with running(FakeDingTalk({"tok": {}}, block_seconds=600)) as fake:
        channel = make_channel("dingtalk", {"url": fake.send_url("tok"), "throttle_pause": 660})
        _, req = compose_fixture(channel, GOLDEN_FIXTURES[1])
        results = [await channel.send(ctx(session), req) for _ in range(21)]
        assert all(isinstance(r, Delivered) for r in results[:20])
        last = results[20]
        assert isinstance(last, RetryableFailure) and last.pause and last.retry_after == 660 and "130101" in last.reason
        fake.advance(120)  # still blocked: the block lasts 10 minutes, not a minute
        assert isinstance(await channel.send(ctx(session), req), RetryableFailure)
        fake.advance(600)
        assert isinstance(await channel.send(ctx(session), req), Delivered)


@pytest.mark.parametrize(
    ("status", "body", "kind", "needle"),
    [
        (200, {"errcode": 0, "errmsg": "ok"}, Delivered, "ok"),
        (200, {"errcode": 410100, "errmsg": "send too fast"}, RetryableFailure, "410100"),
        (200, {"errcode": -1, "errmsg": "系统繁忙"}, RetryableFailure, "系统繁忙"),
        (200, {"errcode": 300001, "errmsg": "token is not exist"}, PermanentFailure, "token is not exist"),
        (200, {"errcode": 310000, "errmsg": "ip X.X.X.X not in whitelist"}, PermanentFailure, "whitelist"),
        (200, {"errcode": 40035, "errmsg": "缺少参数 json"}, PermanentFailure, "缺少参数"),
        (200, "<html>proxy error</html>", RetryableFailure, "unexpected answer"),
        (502, "bad gateway", RetryableFailure, "HTTP 502"),
        (404, "not found", PermanentFailure, "HTTP 404"),
    ],
)
async def test_answers_are_classified(session, status, body, kind, needle):
    async with running(FakeDingTalk({"tok": {}})) as fake:
        channel = make_channel("dingtalk", {"url": fake.send_url("tok")})
        _, req = compose_fixture(channel, GOLDEN_FIXTURES[1])
        fake.answer_next(status, body)
        result = await channel.send(ctx(session), req)
        assert isinstance(result, kind), result
        assert needle in (result.detail if isinstance(result, Delivered) else result.reason)
        if isinstance(body, dict) and body.get("errcode") == 410100:
            assert result.pause and result.retry_after == 600


async def test_unknown_token_and_connection_refused(session):
    async with running(FakeDingTalk({"tok": {}})) as fake:
        channel = make_channel("dingtalk", {"url": fake.send_url("nope"), "secret": "SECs"})
        _, req = compose_fixture(channel, GOLDEN_FIXTURES[1])
        result = await channel.send(ctx(session), req)
        assert isinstance(result, PermanentFailure) and "300001" in result.reason
    dead = make_channel("dingtalk", {"url": f"http://127.0.0.1:{free_port()}/robot/send?access_token=SECRETTOKEN",
                                     "secret": "SECs"})
    result = await dead.send(ctx(session), req)
    assert isinstance(result, RetryableFailure) and "SECRETTOKEN" not in result.reason
    assert "SECRETTOKEN" not in redact_text(dead.signed_url(dead.url))


# -- config -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({}, "url"),
        ({"url": "https://x/?access_token=t", "msgtype": "link"}, "msgtype"),
        ({"url": "https://x/?access_token=t", "throttle_pause": 0}, "throttle_pause"),
        ({"url": "https://x/?access_token=t", "mentions": {"people": {"a": {"mobiles": ["1"]}}}}, "people_label"),
        ({"url": "https://x/?access_token=t", "mentions": {"mobile": ["1"]}}, "unknown key"),
    ],
)
def test_bad_options_name_the_key(options, needle):
    with pytest.raises(ValueError, match=needle):
        DingTalkChannel("t", options)


def test_describe_redacts_token_and_secret():
    channel = make_channel("dingtalk", {"url": "https://oapi.dingtalk.com/robot/send?access_token=TOPSECRET", "secret": "SECxx"})
    text = str(channel.describe())
    assert "TOPSECRET" not in text and "SECxx" not in text


# -- with the delivery engine (real compose, templates, outbox) -----------------------------------------


def _engine_config(url: str, extra: str = "") -> str:
    return f"""
routes:
  ops: [robot]
targets:
  robot:
    type: dingtalk
    url: "{url}"
    secret: SECengine
    language: zh
    timezone: Asia/Shanghai
    rate_limit: "20/4s"
    throttle_pause: 1
    mentions: {{mobiles: ["13800000000"]}}
{extra}
retry_backoff: {{initial: 0.05, max: 0.5}}
"""


@pytest.fixture
def make_runtime(tmp_path, aiohttp_client):
    from receiver.app import build_app
    from receiver.runtime import Runtime, load

    async def make(text: str):
        path = tmp_path / "receiver.yml"
        path.write_text(text)
        rt = Runtime(path, tmp_path / "data", load(path), synchronous="NORMAL")
        return rt, await aiohttp_client(build_app(rt))

    return make


async def _post_groups(client, count: int) -> list[str]:
    from helpers.receiver import payload

    ids = []
    for i in range(count):
        resp = await client.post("/alerts/ops", json=payload(f"Lag{i:02d}", group_key=f"{{}}:{{g=\"{i}\"}}"))
        assert resp.status == 200, await resp.text()
        ids.append((await resp.json())["id"])
    return ids


async def _wait(predicate, seconds: float = 30.0) -> bool:
    import asyncio

    for _ in range(int(seconds / 0.05)):
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_engine_throttled_robot_loses_nothing_backlog_becomes_digest(make_runtime):
    # The robot accepts 3 messages, then blocks (130101) for a second; 25 groups arrive meanwhile.
    async with running(FakeDingTalk({"tok": {"secret": "SECengine"}}, rate_limit=3, block_seconds=1.0)) as fake:
        rt, client = await make_runtime(_engine_config(fake.send_url("tok")))
        ids = await _post_groups(client, 25)

        async def all_delivered() -> bool:
            rows = await rt.store.recent_notifications(100)
            return len(rows) == 25 and all(r["deliveries"][0]["state"] == "delivered" for r in rows)

        assert await _wait(all_delivered), await rt.store.recent_notifications(100)
        rows = {r["id"]: r for r in await rt.store.recent_notifications(100)}
        assert set(rows) == set(ids)
        throttled = [r for r in fake.received if isinstance(r.answer, dict) and r.answer.get("errcode") == 130101]
        assert throttled, "the fake never throttled: the test did not exercise the pause"
        assert any(r["deliveries"][0]["digest"] for r in rows.values())
        digests = [b for b in fake.delivered if "汇总" in b["markdown"]["text"]]
        assert digests and len(fake.delivered) < 25
        assert all("@13800000000" in b["markdown"]["text"] and b["at"]["atMobiles"] == ["13800000000"] for b in fake.delivered)
        dead = await (await client.get("/api/v1/dead-letters")).json()
        assert dead["data"] == []


async def test_engine_permanent_error_is_a_dead_letter_with_dingtalks_message(make_runtime):
    async with running(FakeDingTalk({"tok": {"secret": "SECother"}})) as fake:
        rt, client = await make_runtime(_engine_config(fake.send_url("tok")))
        [nid] = await _post_groups(client, 1)

        async def dead_letters():
            data = (await (await client.get("/api/v1/dead-letters")).json())["data"]
            return data or None

        assert await _wait(dead_letters)
        [row] = (await (await client.get("/api/v1/dead-letters")).json())["data"]
        assert row["notification_id"] == nid
        text = str(row)
        assert "310000" in text and "sign not match" in text and "SECother" not in text


@pytest.mark.parametrize("language", ["en", "zh"])
def test_golden_digest(language):
    from fakes.harness import check_golden_digest

    req = check_golden_digest("dingtalk", make_channel("dingtalk", {"url": "https://oapi.dingtalk.com/robot/send?access_token=TOKEN", "mentions": MENTIONS}), language)
    assert ("汇总" if language == "zh" else "Digest") in str(req.json)


async def test_buttons_in_meta_become_an_action_card_the_fake_accepts(session):
    # the hook for ack/silence buttons (later issue): meta["buttons"] → actionCard with btns
    async with running(FakeDingTalk({"tok": {}})) as fake:
        channel = make_channel("dingtalk", {"url": fake.send_url("tok")})
        msg = RenderedMessage({"title": "t", "text": "### x"},
                              {"buttons": [{"title": "Silence 2h", "url": "http://am/#/silences/new"}]})
        req = channel.build(msg)
        assert req.json["msgtype"] == "actionCard"
        assert req.json["actionCard"]["btns"] == [{"title": "Silence 2h", "actionURL": "http://am/#/silences/new"}]
        assert isinstance(await channel.send(ctx(session), req), Delivered)
