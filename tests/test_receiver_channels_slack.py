"""Slack channel: golden bodies, Block Kit limits (header/section/block count), mrkdwn escaping,
and answer classification (ok / 4xx text codes / 429 + Retry-After) against the local fake."""

from __future__ import annotations

import pytest
from fakes import FakeSlack, running
from fakes.client import ctx, session_fixture  # noqa: F401  (the "session" fixture)
from fakes.harness import BIG, GOLDEN_FIXTURES, check_golden, compose_fixture, make_channel

from receiver.channels.base import Delivered, PermanentFailure, RenderedMessage, RetryableFailure
from receiver.channels.slack import SlackChannel, pack_sections

URL = "https://hooks.slack.com/services/T000/B000/XXXXSECRET"


def all_blocks(body):
    return body["blocks"] + [b for a in body["attachments"] for b in a["blocks"]]


@pytest.mark.parametrize("language", ["en", "zh"])
@pytest.mark.parametrize("path", GOLDEN_FIXTURES, ids=lambda p: p.stem)
def test_golden(path, language):
    channel = make_channel("slack", {"url": URL, "mentions": {"user_ids": ["U012AB3CD"], "at_all_severities": ["critical"]}})
    req = check_golden("slack", channel, path, language)
    blocks = all_blocks(req.json)
    assert len(blocks) <= 50 and len(blocks[0]["text"]["text"]) <= 150
    assert all(len(b["text"]["text"]) <= 3000 for b in blocks)


def test_label_values_cannot_form_links_or_mentions():
    channel = make_channel("slack", {"url": URL})
    _, req = compose_fixture(channel, GOLDEN_FIXTURES[0])
    text = "\n".join(b["text"]["text"] for b in all_blocks(req.json)[1:])
    assert "<b>" not in text and "&lt;b&gt;&amp;amp;&lt;/b&gt;" in text and "<script>" not in text
    assert req.json["attachments"][0]["color"] == "#E01E5A"


def test_colour_green_when_resolved_and_mentions_in_fallback():
    channel = make_channel("slack", {"url": URL, "mentions": {"user_ids": ["U1"], "on_resolved": True}})
    _, req = compose_fixture(channel, GOLDEN_FIXTURES[1])
    assert req.json["attachments"][0]["color"] == "#2EB67D"
    assert "<@U1>" in req.json["text"]


def test_pack_sections_keeps_paragraphs_and_limits():
    text = "\n\n".join(["a" * 1000] * 7 + ["b" * 5000])
    chunks = pack_sections(text, 3000)
    assert all(len(c) <= 3000 for c in chunks) and len(chunks) == 5


def test_block_limit_shrinks_the_message():
    channel = make_channel("slack", {"url": URL, "max_blocks": 5, "section_chars": 500})
    msg, req = compose_fixture(channel, BIG)
    assert len(all_blocks(req.json)) <= 5 and msg.meta["omitted"] > 0
    huge = RenderedMessage({"title": "t" * 400, "text": "\n\n".join(["x" * 400] * 100)}, {})
    cut = channel.build(channel.truncate(huge))
    assert channel.oversize(cut) is None and len(cut.json["blocks"][0]["text"]["text"]) == 150


def test_mobiles_are_a_config_error():
    with pytest.raises(ValueError, match="mobile"):
        SlackChannel("t", {"url": URL, "mentions": {"mobiles": ["1"]}})


async def test_composed_messages_are_accepted_by_the_fake(session):
    async with running(FakeSlack({"T/B/X"}, rate_limit=100)) as fake:
        channel = make_channel("slack", {"url": fake.send_url("T/B/X")})
        for path in GOLDEN_FIXTURES:
            _, req = compose_fixture(channel, path, "zh")
            assert isinstance(await channel.send(ctx(session), req), Delivered), path.name


async def test_more_than_50_blocks_are_refused_by_the_fake(session):
    async with running(FakeSlack({"T/B/X"})) as fake:
        channel = make_channel("slack", {"url": fake.send_url("T/B/X"), "section_chars": 100})
        msg = RenderedMessage({"title": "t", "text": "\n\n".join(["x" * 90] * 60)}, {})
        req = channel.build(msg)
        assert channel.oversize(req)  # we know it is too big ...
        result = await channel.send(ctx(session), req)  # ... and Slack would say so
        assert isinstance(result, PermanentFailure) and "invalid_blocks" in result.reason


async def test_429_with_retry_after(session):
    async with running(FakeSlack({"T/B/X"}, retry_after=7)) as fake:
        channel = make_channel("slack", {"url": fake.send_url("T/B/X")})
        _, req = compose_fixture(channel, GOLDEN_FIXTURES[1])
        assert isinstance(await channel.send(ctx(session), req), Delivered)
        result = await channel.send(ctx(session), req)
        assert isinstance(result, RetryableFailure) and result.retry_after == 7 and "429" in result.reason
        fake.advance(2)
        assert isinstance(await channel.send(ctx(session), req), Delivered)


@pytest.mark.parametrize(
    ("hook", "status", "body", "kind", "needle"),
    [
        ("gone", None, None, PermanentFailure, "no_service"),
        ("archived", None, None, PermanentFailure, "channel_is_archived"),
        ("T/B/X", 400, "invalid_payload", PermanentFailure, "invalid_payload"),
        ("T/B/X", 403, "action_prohibited", PermanentFailure, "action_prohibited"),
        ("T/B/X", 404, "channel_not_found", PermanentFailure, "channel_not_found"),
        ("T/B/X", 500, "rollup_error", RetryableFailure, "rollup_error"),
        ("T/B/X", 200, {"ok": False, "error": "invalid_token"}, PermanentFailure, "invalid_token"),
    ],
)
async def test_answers_are_classified(session, hook, status, body, kind, needle):
    async with running(FakeSlack({"T/B/X"}, archived={"archived"})) as fake:
        channel = make_channel("slack", {"url": fake.send_url(hook)})
        _, req = compose_fixture(channel, GOLDEN_FIXTURES[1])
        if status is not None:
            fake.answer_next(status, body)
        result = await channel.send(ctx(session), req)
        assert isinstance(result, kind) and needle in result.reason, result


@pytest.mark.parametrize("language", ["en", "zh"])
def test_golden_digest(language):
    from fakes.harness import check_golden_digest

    req = check_golden_digest("slack", make_channel("slack", {"url": URL}), language)
    assert ("汇总" if language == "zh" else "Digest") in str(req.json)
