"""Telegram channel: golden bodies, HTML escaping (the fake parses entities like the Bot API),
the 4096-character limit, 429 retry_after and permanent errors with Telegram's description."""

from __future__ import annotations

import pytest
from fakes import FakeTelegram, running
from fakes.client import ctx, session_fixture  # noqa: F401  (the "session" fixture)
from fakes.harness import BIG, GOLDEN_FIXTURES, check_golden, compose_fixture, make_channel
from fakes.telegram import visible_text

from receiver.channels.base import Delivered, PermanentFailure, RenderedMessage, RetryableFailure
from receiver.channels.telegram import TelegramChannel, cut_html

TOKEN = "123456:ABCdefSECRET"


@pytest.mark.parametrize("language", ["en", "zh"])
@pytest.mark.parametrize("path", GOLDEN_FIXTURES, ids=lambda p: p.stem)
def test_golden(path, language):
    channel = make_channel("telegram", {"bot_token": TOKEN, "chat_id": -1001, "mentions": {"user_ids": ["42", "@oncall"]}})
    req = check_golden("telegram", channel, path, language)
    assert len(req.json["text"]) <= 4096
    visible_text(req.json["text"])  # parses as Telegram HTML


def test_url_uses_api_url_and_token_is_redacted_in_describe():
    channel = make_channel("telegram", {"bot_token": TOKEN, "chat_id": 1, "api_url": "https://tg.example/relay/"})
    _, req = compose_fixture(channel, GOLDEN_FIXTURES[1])
    assert req.url == f"https://tg.example/relay/bot{TOKEN}/sendMessage"
    assert "SECRET" not in str(channel.describe())


def test_cut_html_never_leaves_broken_markup():
    text = "<b>" + "a&amp;b " * 1000 + "</b>"
    for limit in (50, 51, 52, 53, 100, 1000):
        out = cut_html(text, limit)
        assert len(out) <= limit
        visible_text(out)


def test_truncate_keeps_valid_html_under_the_limit():
    channel = make_channel("telegram", {"bot_token": TOKEN, "chat_id": 1, "mentions": {"user_ids": ["42"]}})
    msg = RenderedMessage({"text": "<b>title</b>\n" + "<code>x&lt;y</code> " * 600}, {"mentions": {"user_ids": ["42"]}})
    req = channel.build(channel.truncate(msg))
    assert channel.oversize(req) is None and len(req.json["text"]) > 3500
    visible_text(req.json["text"])
    assert req.json["text"].endswith('<a href="tg://user?id=42">42</a>')


async def test_composed_messages_are_accepted_by_the_fake(session):
    async with running(FakeTelegram({TOKEN}, {-1001}, rate_limit=100)) as fake:
        channel = make_channel("telegram", {"bot_token": TOKEN, "chat_id": -1001, "api_url": fake.url})
        for path in GOLDEN_FIXTURES:
            for language in ("en", "zh"):
                _, req = compose_fixture(channel, path, language)
                result = await channel.send(ctx(session), req)
                assert isinstance(result, Delivered), (path.name, result)
        assert len(fake.delivered) == 2 * len(GOLDEN_FIXTURES)


async def test_unescaped_html_would_be_refused(session):
    async with running(FakeTelegram({TOKEN}, {1})) as fake:
        channel = make_channel("telegram", {"bot_token": TOKEN, "chat_id": 1, "api_url": fake.url})
        req = channel.build(RenderedMessage({"text": "value <5 & rising"}, {}))
        result = await channel.send(ctx(session), req)
        assert isinstance(result, PermanentFailure) and "can't parse entities" in result.reason


async def test_raised_limit_is_refused_as_too_long(session):
    async with running(FakeTelegram({TOKEN}, {1})) as fake:
        channel = make_channel("telegram", {"bot_token": TOKEN, "chat_id": 1, "api_url": fake.url})
        channel.max_chars = 100_000  # pretend the limit were higher: Telegram refuses
        _, req = compose_fixture(channel, BIG)
        result = await channel.send(ctx(session), req)
        assert isinstance(result, PermanentFailure) and "message is too long" in result.reason


async def test_429_retry_after_from_parameters(session):
    async with running(FakeTelegram({TOKEN}, {1}, rate_limit=1, retry_after=9)) as fake:
        channel = make_channel("telegram", {"bot_token": TOKEN, "chat_id": 1, "api_url": fake.url})
        _, req = compose_fixture(channel, GOLDEN_FIXTURES[1])
        assert isinstance(await channel.send(ctx(session), req), Delivered)
        result = await channel.send(ctx(session), req)
        assert isinstance(result, RetryableFailure) and result.retry_after == 9


@pytest.mark.parametrize(
    ("token", "chat", "needle"),
    [
        ("999:WRONGTOKEN", 1, "Unauthorized"),
        (TOKEN, 2, "chat not found"),
        (TOKEN, 3, "bot was blocked by the user"),
    ],
)
async def test_permanent_errors_carry_the_description(session, token, chat, needle):
    async with running(FakeTelegram({TOKEN}, {1, 3}, blocked={3})) as fake:
        channel = make_channel("telegram", {"bot_token": token, "chat_id": chat, "api_url": fake.url})
        _, req = compose_fixture(channel, GOLDEN_FIXTURES[1])
        result = await channel.send(ctx(session), req)
        assert isinstance(result, PermanentFailure) and needle in result.reason, result
        assert "WRONGTOKEN" not in result.reason


async def test_server_errors_retry_and_group_migration_hint(session):
    async with running(FakeTelegram({TOKEN}, {1})) as fake:
        channel = make_channel("telegram", {"bot_token": TOKEN, "chat_id": 1, "api_url": fake.url})
        _, req = compose_fixture(channel, GOLDEN_FIXTURES[1])
        fake.answer_next(502, "Bad Gateway")
        assert isinstance(await channel.send(ctx(session), req), RetryableFailure)
        fake.answer_next(400, {"ok": False, "error_code": 400, "description": "Bad Request: group chat was upgraded to a supergroup chat",
                               "parameters": {"migrate_to_chat_id": -100777}})
        result = await channel.send(ctx(session), req)
        assert isinstance(result, PermanentFailure) and "-100777" in result.reason


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"chat_id": 1}, "bot_token"),
        ({"bot_token": TOKEN}, "chat_id"),
        ({"bot_token": TOKEN, "chat_id": 1, "mentions": {"at_all": True}}, "no @all"),
    ],
)
def test_bad_options(options, needle):
    with pytest.raises(ValueError, match=needle):
        TelegramChannel("t", options)


@pytest.mark.parametrize("language", ["en", "zh"])
def test_golden_digest(language):
    from fakes.harness import check_golden_digest

    req = check_golden_digest("telegram", make_channel("telegram", {"bot_token": TOKEN, "chat_id": 1}), language)
    assert ("汇总" if language == "zh" else "Digest") in str(req.json)
