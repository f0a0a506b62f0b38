"""WeCom channel: golden bodies per msgtype, mentions per msgtype, byte limits, and answer
classification against the local fake robot (tests/fakes/wecom.py)."""

from __future__ import annotations

import pytest
from fakes import FakeWeCom, running
from fakes.client import ctx, session_fixture  # noqa: F401  (the "session" fixture)
from fakes.harness import BIG, GOLDEN_FIXTURES, check_golden, compose_fixture, make_channel
from helpers.procs import free_port

from receiver.channels.base import Delivered, PermanentFailure, RenderedMessage, RetryableFailure
from receiver.channels.wecom import WeComChannel

URL = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEYSECRET"
PEOPLE = {"people_label": "team", "people": {"payments": {"user_ids": ["zhangsan"], "mobiles": ["13900000001"]}}}


@pytest.mark.parametrize("language", ["en", "zh"])
@pytest.mark.parametrize("path", GOLDEN_FIXTURES, ids=lambda p: p.stem)
def test_golden_markdown(path, language):
    mentions = {"user_ids": ["oncall"], "people_label": "team", "people": {"payments": {"user_ids": ["zhangsan"]}}}
    channel = make_channel("wecom", {"url": URL, "mentions": mentions})
    req = check_golden("wecom", channel, path, language)
    assert len(req.json["markdown"]["content"].encode()) <= 4096


@pytest.mark.parametrize("msgtype", ["text", "markdown_v2"])
@pytest.mark.parametrize("path", [GOLDEN_FIXTURES[0], GOLDEN_FIXTURES[2], BIG], ids=lambda p: p.stem)
def test_golden_other_msgtypes(path, msgtype):
    options = {"url": URL, "msgtype": msgtype}
    if msgtype == "text":
        options["mentions"] = {"at_all_severities": ["critical"], **PEOPLE}
    channel = make_channel("wecom", options)
    req = check_golden("wecom", channel, path, "zh", suffix=f".{msgtype}")
    limit = 2048 if msgtype == "text" else 4096
    assert len(req.json[msgtype]["content"].encode()) <= limit


def test_mentions_per_msgtype():
    md = make_channel("wecom", {"url": URL, "mentions": {"user_ids": ["oncall"], "people_label": "team",
                                                          "people": {"payments": {"user_ids": ["zhangsan"]}}}})
    _, req = compose_fixture(md, GOLDEN_FIXTURES[0])
    assert req.json["markdown"]["content"].endswith("<@oncall> <@zhangsan>")
    assert "mentioned_list" not in req.json["markdown"]  # WeCom ignores it for markdown anyway
    text = make_channel("wecom", {"url": URL, "msgtype": "text", "mentions": {"at_all_severities": ["critical"], **PEOPLE}})
    _, req = compose_fixture(text, GOLDEN_FIXTURES[0])
    assert req.json["text"]["mentioned_list"] == ["zhangsan", "@all"]
    assert req.json["text"]["mentioned_mobile_list"] == ["13900000001"]


def test_font_colour_by_status():
    channel = make_channel("wecom", {"url": URL})
    _, firing = compose_fixture(channel, GOLDEN_FIXTURES[0])
    _, resolved = compose_fixture(channel, GOLDEN_FIXTURES[1])
    assert '<font color="warning">' in firing.json["markdown"]["content"]
    assert '<font color="info">' in resolved.json["markdown"]["content"]


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"msgtype": "markdown", "mentions": {"mobiles": ["1"]}}, "msgtype: text"),
        ({"msgtype": "markdown", "mentions": {"at_all_severities": ["critical"]}}, "msgtype: text"),
        ({"msgtype": "markdown_v2", "mentions": {"user_ids": ["u"]}}, "markdown_v2 cannot mention"),
        ({"msgtype": "news"}, "msgtype"),
        ({"url": "qyapi.weixin.qq.com"}, "url"),
    ],
)
def test_mentions_the_msgtype_cannot_do_are_config_errors(options, needle):
    with pytest.raises(ValueError, match=needle):
        WeComChannel("t", {"url": URL, **options})


def test_truncate_respects_byte_limit_with_multibyte_text():
    channel = make_channel("wecom", {"url": URL, "mentions": {"user_ids": ["oncall"]}})
    msg = RenderedMessage({"text": "告警🔥" * 3000}, {"mentions": {"user_ids": ["oncall"]}})
    cut = channel.build(channel.truncate(msg))
    content = cut.json["markdown"]["content"]
    assert channel.oversize(cut) is None and 4000 < len(content.encode()) <= 4096 and content.endswith("<@oncall>")


async def test_composed_messages_are_accepted_by_the_fake(session):
    async with running(FakeWeCom({"k1"})) as fake:
        for msgtype in ("markdown", "markdown_v2", "text"):
            channel = make_channel("wecom", {"url": fake.send_url("k1"), "msgtype": msgtype})
            for path in (BIG, GOLDEN_FIXTURES[0], GOLDEN_FIXTURES[5]):
                _, req = compose_fixture(channel, path, "zh")
                result = await channel.send(ctx(session), req)
                assert isinstance(result, Delivered), (msgtype, path.name, result)
        assert len(fake.delivered) == 9


async def test_limit_raised_beyond_wecom_is_refused_with_40058(session):
    async with running(FakeWeCom({"k1"})) as fake:
        channel = make_channel("wecom", {"url": fake.send_url("k1"), "max_bytes": 20000})
        _, req = compose_fixture(channel, BIG)
        result = await channel.send(ctx(session), req)
        assert isinstance(result, PermanentFailure) and "40058" in result.reason and "exceed max length" in result.reason


async def test_throttling_45009_pauses_then_recovers(session):
    async with running(FakeWeCom({"k1"}, block_seconds=60)) as fake:
        channel = make_channel("wecom", {"url": fake.send_url("k1"), "throttle_pause": 61})
        _, req = compose_fixture(channel, GOLDEN_FIXTURES[1])
        results = [await channel.send(ctx(session), req) for _ in range(21)]
        assert all(isinstance(r, Delivered) for r in results[:20])
        assert isinstance(results[20], RetryableFailure) and results[20].pause and results[20].retry_after == 61
        assert "45009" in results[20].reason
        fake.advance(61)
        assert isinstance(await channel.send(ctx(session), req), Delivered)


@pytest.mark.parametrize(
    ("status", "body", "kind", "needle"),
    [
        (200, {"errcode": -1, "errmsg": "system busy"}, RetryableFailure, "system busy"),
        (200, {"errcode": 93000, "errmsg": "invalid webhook url"}, PermanentFailure, "invalid webhook url"),
        (200, {"errcode": 40058, "errmsg": "markdown.content exceed max length 4096"}, PermanentFailure, "4096"),
        (500, "oops", RetryableFailure, "HTTP 500"),
        (403, "forbidden", PermanentFailure, "HTTP 403"),
    ],
)
async def test_answers_are_classified(session, status, body, kind, needle):
    async with running(FakeWeCom({"k1"})) as fake:
        channel = make_channel("wecom", {"url": fake.send_url("k1")})
        _, req = compose_fixture(channel, GOLDEN_FIXTURES[1])
        fake.answer_next(status, body)
        result = await channel.send(ctx(session), req)
        assert isinstance(result, kind) and needle in result.reason, result


async def test_unknown_key_is_permanent_and_the_key_never_leaks(session):
    async with running(FakeWeCom({"k1"})) as fake:
        channel = make_channel("wecom", {"url": fake.send_url("wrongkey")})
        _, req = compose_fixture(channel, GOLDEN_FIXTURES[1])
        result = await channel.send(ctx(session), req)
        assert isinstance(result, PermanentFailure) and "93000" in result.reason
    dead = make_channel("wecom", {"url": f"http://127.0.0.1:{free_port()}/cgi-bin/webhook/send?key=KEYSECRET"})
    result = await dead.send(ctx(session), req)
    assert isinstance(result, RetryableFailure) and "KEYSECRET" not in result.reason
    assert "KEYSECRET" not in str(dead.describe())


@pytest.mark.parametrize("language", ["en", "zh"])
def test_golden_digest(language):
    from fakes.harness import check_golden_digest

    req = check_golden_digest("wecom", make_channel("wecom", {"url": URL}), language)
    assert ("汇总" if language == "zh" else "Digest") in str(req.json)
