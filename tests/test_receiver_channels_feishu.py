"""Feishu/Lark channel: golden cards, header colours, signing in the body (checked by the fake
with its one-hour window), size limit, and code classification."""

from __future__ import annotations

import time

import pytest
from fakes import FakeFeishu, running
from fakes.client import ctx, session_fixture  # noqa: F401  (the "session" fixture)
from fakes.feishu import expected_sign
from fakes.harness import BIG, GOLDEN_FIXTURES, check_golden, compose_fixture, make_channel

from receiver.channels.base import Delivered, PermanentFailure, RenderedMessage, RetryableFailure
from receiver.channels.feishu import FeishuChannel, sign

URL = "https://open.feishu.cn/open-apis/bot/v2/hook/HOOKSECRET"


@pytest.mark.parametrize("language", ["en", "zh"])
@pytest.mark.parametrize("path", GOLDEN_FIXTURES, ids=lambda p: p.stem)
def test_golden(path, language):
    channel = make_channel("feishu", {"url": URL, "mentions": {"user_ids": ["ou_123"], "at_all_severities": ["critical"]}})
    req = check_golden("feishu", channel, path, language)
    assert req.json["msg_type"] == "interactive" and "timestamp" not in req.json


@pytest.mark.parametrize(("path", "colour"), [(GOLDEN_FIXTURES[0], "red"), (GOLDEN_FIXTURES[1], "green")])
def test_header_colour(path, colour):
    _, req = compose_fixture(make_channel("feishu", {"url": URL}), path)
    assert req.json["card"]["header"]["template"] == colour


def test_sign_algorithm():
    assert sign("s3cret", 1700000000) == expected_sign("s3cret", "1700000000")


def test_signature_overhead_is_reserved_in_the_size_check():
    signed = make_channel("feishu", {"url": URL, "secret": "abc", "max_bytes": 2000})
    huge = RenderedMessage({"title": "t", "text": "飞书" * 2000}, {})
    req = signed.build(signed.truncate(huge))
    assert signed.oversize(req) is None
    assert len(signed.signed(req).body_bytes()) <= 2000


async def test_signed_cards_accepted_wrong_secret_and_stale_clock_refused(session):
    robot = {"secret": "abc", "keywords": ["告警", "FIRING", "RESOLVED"]}
    async with running(FakeFeishu({"tok": robot}, per_second=100)) as fake:
        good = make_channel("feishu", {"url": fake.send_url("tok"), "secret": "abc"})
        for path in GOLDEN_FIXTURES:
            _, req = compose_fixture(good, path)
            assert isinstance(await good.send(ctx(session), req), Delivered), path.name
        bad = make_channel("feishu", {"url": fake.send_url("tok"), "secret": "nope"})
        result = await bad.send(ctx(session), req)
        assert isinstance(result, PermanentFailure) and "19021" in result.reason and "sign match fail" in result.reason
        good.clock = lambda: time.time() - 7200
        result = await good.send(ctx(session), req)
        assert isinstance(result, PermanentFailure) and "19021" in result.reason


async def test_200_alerts_fit_and_a_raised_limit_is_refused(session):
    async with running(FakeFeishu({"tok": {}})) as fake:
        channel = make_channel("feishu", {"url": fake.send_url("tok")})
        msg, req = compose_fixture(channel, BIG)
        assert msg.meta["omitted"] > 0 and isinstance(await channel.send(ctx(session), req), Delivered)
        raised = make_channel("feishu", {"url": fake.send_url("tok"), "max_bytes": 200_000})
        _, req = compose_fixture(raised, BIG)
        result = await raised.send(ctx(session), req)
        assert isinstance(result, PermanentFailure) and "19002" in result.reason


async def test_frequency_limit_pauses(session):
    async with running(FakeFeishu({"tok": {}}, per_second=5)) as fake:
        channel = make_channel("feishu", {"url": fake.send_url("tok"), "throttle_pause": 2})
        _, req = compose_fixture(channel, GOLDEN_FIXTURES[1])
        results = [await channel.send(ctx(session), req) for _ in range(6)]
        assert all(isinstance(r, Delivered) for r in results[:5])
        assert isinstance(results[5], RetryableFailure) and results[5].pause and results[5].retry_after == 2
        assert "11232" in results[5].reason and "frequency limited" in results[5].reason


@pytest.mark.parametrize(
    ("status", "body", "kind", "needle"),
    [
        (200, {"code": 9499, "msg": "too many request"}, RetryableFailure, "9499"),
        (429, {"code": 11232, "msg": "frequency limited"}, RetryableFailure, "11232"),
        (200, {"code": 19024, "msg": "Key Words Not Found"}, PermanentFailure, "Key Words Not Found"),
        (200, {"StatusCode": 0, "StatusMessage": "success"}, Delivered, "success"),
        (400, {"code": 19001, "msg": "param invalid"}, PermanentFailure, "HTTP 400"),
        (503, "unavailable", RetryableFailure, "HTTP 503"),
    ],
)
async def test_answers_are_classified(session, status, body, kind, needle):
    async with running(FakeFeishu({"tok": {}})) as fake:
        channel = make_channel("feishu", {"url": fake.send_url("tok")})
        _, req = compose_fixture(channel, GOLDEN_FIXTURES[1])
        fake.answer_next(status, body)
        result = await channel.send(ctx(session), req)
        assert isinstance(result, kind), result
        assert needle in (result.detail if isinstance(result, Delivered) else result.reason)


async def test_open_platform_frequency_limit_pauses_for_its_reset(session):
    async with running(FakeFeishu({"tok": {}})) as fake:
        channel = make_channel("feishu", {"url": fake.send_url("tok"), "throttle_pause": 60})
        _, req = compose_fixture(channel, GOLDEN_FIXTURES[1])
        fake.answer_next(429, {"code": 99991400, "msg": "request trigger frequency limit"},
                         {"x-ogw-ratelimit-limit": "100", "x-ogw-ratelimit-reset": "7"})
        result = await channel.send(ctx(session), req)
        assert isinstance(result, RetryableFailure) and result.pause and result.retry_after == 7
        assert "99991400" in result.reason


async def test_unknown_hook_is_permanent(session):
    async with running(FakeFeishu({"tok": {}})) as fake:
        channel = make_channel("feishu", {"url": fake.send_url("other")})
        _, req = compose_fixture(channel, GOLDEN_FIXTURES[1])
        result = await channel.send(ctx(session), req)
        assert isinstance(result, PermanentFailure) and "19001" in result.reason


def test_mobiles_are_a_config_error():
    with pytest.raises(ValueError, match="mobile"):
        FeishuChannel("t", {"url": URL, "mentions": {"mobiles": ["1"]}})


@pytest.mark.parametrize("language", ["en", "zh"])
def test_golden_digest(language):
    from fakes.harness import check_golden_digest

    req = check_golden_digest("feishu", make_channel("feishu", {"url": URL}), language)
    assert ("汇总" if language == "zh" else "Digest") in str(req.json)
