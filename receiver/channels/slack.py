"""Slack incoming webhook: a header block, the body as section blocks inside a coloured attachment,
and a plain ``text`` fallback (what notifications and old clients show).

Why build() splits the body: a section holds at most 3000 characters and a message at most 50
blocks, so the rendered body (paragraphs separated by blank lines) is packed into sections here
and ``oversize()`` reports a message needing more blocks than allowed — the engine then renders
fewer alerts. Slack answers ``ok`` (200), plain-text error codes with 4xx, and 429 + Retry-After
when a webhook posts faster than ~1 message/second.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from agentmon.redact import redact_text
from receiver.channels.base import (
    Channel,
    Delivered,
    OutboundRequest,
    PermanentFailure,
    RateLimit,
    RenderedMessage,
    SendContext,
    SendResult,
)
from receiver.channels.im import (
    color_of,
    json_body,
    positive_number,
    post_checked,
    required_url,
    shrink_field,
)
from receiver.channels.util import HttpAnswer, truncate_chars
from receiver.mentions import MENTIONS_SCHEMA, MentionConfig, Mentions
from receiver.model import Notification

#: attachment bar colour per colour word
COLORS = {"red": "#E01E5A", "orange": "#F2711C", "yellow": "#ECB22E", "blue": "#36C5F0", "grey": "#9E9E9E", "green": "#2EB67D"}


def escape_mrkdwn(text: str) -> str:
    """Slack's only required escapes: & < > (so label values cannot form links or mentions)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mention_words(mentions: Mentions) -> str:
    words = [f"<@{u}>" for u in mentions.user_ids]
    if mentions.at_all:
        words.append("<!channel>")
    return " ".join(words)


def pack_sections(text: str, limit: int) -> list[str]:
    """Group blank-line-separated paragraphs into chunks of ≤ ``limit`` characters."""
    chunks: list[str] = []
    current = ""
    for para in (p.strip("\n") for p in text.split("\n\n")):
        if not para.strip():
            continue
        para = truncate_chars(para, limit)
        if current and len(current) + 2 + len(para) <= limit:
            current = f"{current}\n\n{para}"
        else:
            if current:
                chunks.append(current)
            current = para
    if current:
        chunks.append(current)
    return chunks


class SlackChannel(Channel):
    type = "slack"
    template = "slack"
    fields = ("title", "text")
    default_rate_limit = RateLimit(1, 1.0)
    secret_options = ("url",)
    required_options = ("url",)
    options_schema: ClassVar[dict[str, Any]] = {
        "url": {"type": "string", "description": "https://hooks.slack.com/services/T…/B…/…"},
        "mentions": MENTIONS_SCHEMA,
        "max_blocks": {"type": "integer", "minimum": 3, "maximum": 50},
        "section_chars": {"type": "integer", "minimum": 100, "maximum": 3000},
        "header_chars": {"type": "integer", "minimum": 10, "maximum": 150},
        "text_chars": {"type": "integer", "minimum": 100, "maximum": 40000},
    }

    def __init__(self, name: str, options: dict[str, Any]):
        super().__init__(name, options)
        self.url = required_url(options, "the incoming webhook URL (https://hooks.slack.com/services/…)")
        self.mentions = MentionConfig.parse(options.get("mentions"))
        if self.mentions.uses_mobiles:
            raise ValueError("mentions: Slack cannot mention by mobile; use user_ids (member ids like U012AB3CD)")
        self.max_blocks = int(positive_number(self.options, "max_blocks", 50))
        self.section_chars = int(positive_number(self.options, "section_chars", 3000))
        self.header_chars = int(positive_number(self.options, "header_chars", 150))
        self.text_chars = int(positive_number(self.options, "text_chars", 40000))

    def template_context(self, notifications: Sequence[Notification]) -> dict[str, Any]:
        mentions = self.mentions.resolve(notifications)
        return {
            "color": color_of(notifications),
            "mentions": mentions.as_dict(),
            "mention_line": mention_words(mentions),
        }

    def build(self, message: RenderedMessage) -> OutboundRequest:
        mentions = mention_words(Mentions.from_meta(message.meta))
        title = " ".join(message["title"].split())  # header is plain_text, one line
        body = message["text"].strip()
        if mentions and mentions not in body:
            body = f"{body}\n\n{mentions}"
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": chunk}}
            for chunk in pack_sections(body, self.section_chars)
        ]
        fallback = truncate_chars(f"{title} {mentions}".strip() if mentions else title, self.text_chars)
        color = COLORS.get(message.meta.get("color", "blue"), COLORS["blue"])
        payload: dict[str, Any] = {
            "text": fallback,
            "blocks": [{"type": "header", "text": {"type": "plain_text", "text": truncate_chars(title or "-", self.header_chars), "emoji": True}}],
            "attachments": [{"color": color, "fallback": fallback, "blocks": blocks}],
        }
        return OutboundRequest(url=self.url, json=payload)

    def oversize(self, request: OutboundRequest) -> str | None:
        blocks = request.json["blocks"] + [b for a in request.json["attachments"] for b in a.get("blocks", [])]
        if len(blocks) > self.max_blocks:
            return f"Slack message needs {len(blocks)} blocks, limit {self.max_blocks}"
        chars = sum(len(b["text"]["text"]) for b in blocks if "text" in b)
        if chars > self.text_chars:  # Slack cuts a message after 40,000 characters
            return f"Slack message text is {chars} characters, limit {self.text_chars}"
        return None

    def truncate(self, message: RenderedMessage) -> RenderedMessage:
        return shrink_field(message, "text", self.build, self.oversize)

    async def send(self, ctx: SendContext, request: OutboundRequest) -> SendResult:
        answer = await post_checked(ctx, request, "Slack")
        if not isinstance(answer, HttpAnswer):
            return answer
        data = json_body(answer)
        if data is not None and data.get("ok") is False:  # the API-style answer AM's notifier also handles
            return PermanentFailure(f"Slack: {redact_text(str(data.get('error', 'not ok')))}")
        return Delivered(answer.text.strip()[:100] or "ok")
