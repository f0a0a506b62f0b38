"""WeCom (企业微信) group robot: markdown (default), markdown_v2 or text messages.

Why the msgtype matters: ``markdown`` shows colours (``<font color=…>``) and mentions only by
inline ``<@userid>`` — ``mentioned_list`` is ignored there and mobiles cannot be mentioned;
``text`` is plain but takes ``mentioned_list``/``mentioned_mobile_list`` (and ``@all``);
``markdown_v2`` has tables/lists but no colours and no mentions at all. A ``mentions:`` block
that the chosen msgtype cannot honour is a config error rather than a silent no-op.

Limits: markdown content ≤ 4096 UTF-8 bytes, text ≤ 2048 (errcode 40058 otherwise) — checked in
``oversize()`` so it never happens. 20 messages/min per robot (errcode 45009). The ``key`` in the
URL is the robot's only credential.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from receiver.channels.base import (
    Channel,
    OutboundRequest,
    RateLimit,
    RenderedMessage,
    SendContext,
    SendResult,
)
from receiver.channels.im import (
    CodeTable,
    color_of,
    positive_number,
    post_checked,
    required_url,
    shrink_field,
)
from receiver.channels.util import HttpAnswer
from receiver.mentions import MENTIONS_SCHEMA, MentionConfig, Mentions
from receiver.model import Notification

ERRCODES = CodeTable("WeCom", throttled=frozenset({45009}), busy=frozenset({-1}))  # 45009 "api freq out of limit"
DEFAULT_MAX_BYTES = {"markdown": 4096, "markdown_v2": 4096, "text": 2048}
#: <font color> per colour word (WeCom markdown knows only warning=orange-red, info=green, comment=grey)
FONT_COLORS = {"red": "warning", "orange": "warning", "yellow": "warning", "blue": "comment", "grey": "comment", "green": "info"}


def inline_mentions(mentions: Mentions) -> str:
    """Markdown mentions: ``<@userid>`` words (the only form WeCom markdown renders)."""
    return " ".join(f"<@{u}>" for u in mentions.user_ids)


class WeComChannel(Channel):
    type = "wecom"
    template = "wecom"
    fields = ("text",)
    default_rate_limit = RateLimit(20, 60.0)
    secret_options = ("url",)
    required_options = ("url",)
    options_schema: ClassVar[dict[str, Any]] = {
        "url": {"type": "string", "description": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…"},
        "msgtype": {"enum": ["markdown", "markdown_v2", "text"]},
        "mentions": MENTIONS_SCHEMA,
        "throttle_pause": {"type": "number", "exclusiveMinimum": 0, "description": "seconds to pause after 45009"},
        "busy_retry_after": {"type": "number", "exclusiveMinimum": 0},
        "max_bytes": {"type": "integer", "minimum": 100, "description": "content limit (4096 markdown, 2048 text)"},
    }

    def __init__(self, name: str, options: dict[str, Any]):
        super().__init__(name, options)
        self.url = required_url(options, "the robot's webhook URL (https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…)")
        self.msgtype = options.get("msgtype", "markdown")
        if self.msgtype not in DEFAULT_MAX_BYTES:
            raise ValueError(f"msgtype: must be markdown, markdown_v2 or text, got {self.msgtype!r}")
        self.mentions = MentionConfig.parse(options.get("mentions"))
        if self.msgtype == "markdown_v2" and (self.mentions.uses_user_ids or self.mentions.uses_mobiles or self.mentions.uses_at_all):
            raise ValueError("mentions: WeCom markdown_v2 cannot mention anyone; use msgtype markdown (user_ids) or text")
        if self.msgtype == "markdown" and (self.mentions.uses_mobiles or self.mentions.uses_at_all):
            raise ValueError(
                "mentions: WeCom markdown mentions only by user_ids (<@userid>); "
                "mobiles and @all need msgtype: text"
            )
        self.throttle_pause = positive_number(self.options, "throttle_pause", 60.0)
        self.busy_retry_after = positive_number(self.options, "busy_retry_after", 5.0)
        self.max_bytes = int(positive_number(self.options, "max_bytes", DEFAULT_MAX_BYTES[self.msgtype]))

    def template_context(self, notifications: Sequence[Notification]) -> dict[str, Any]:
        mentions = self.mentions.resolve(notifications)
        color = color_of(notifications)
        return {
            "msgtype": self.msgtype,
            "color": color,
            "font_color": FONT_COLORS[color],
            "mentions": mentions.as_dict(),
            "mention_line": inline_mentions(mentions) if self.msgtype == "markdown" else "",
        }

    def build(self, message: RenderedMessage) -> OutboundRequest:
        mentions = Mentions.from_meta(message.meta)
        content = message["text"].strip()
        if self.msgtype == "markdown":
            missing = [w for w in inline_mentions(mentions).split() if w not in content]
            if missing:
                content = f"{content}\n{' '.join(missing)}"
            body: dict[str, Any] = {"msgtype": "markdown", "markdown": {"content": content}}
        elif self.msgtype == "markdown_v2":
            body = {"msgtype": "markdown_v2", "markdown_v2": {"content": content}}
        else:
            text: dict[str, Any] = {"content": content}
            users = list(mentions.user_ids) + (["@all"] if mentions.at_all else [])
            if users:
                text["mentioned_list"] = users
            if mentions.mobiles:
                text["mentioned_mobile_list"] = list(mentions.mobiles)
            body = {"msgtype": "text", "text": text}
        return OutboundRequest(url=self.url, json=body)

    def content_of(self, request: OutboundRequest) -> str:
        return request.json[self.msgtype]["content"]

    def oversize(self, request: OutboundRequest) -> str | None:
        size = len(self.content_of(request).encode("utf-8"))
        if size > self.max_bytes:
            return f"WeCom {self.msgtype} content is {size} bytes, limit {self.max_bytes}"
        return None

    def truncate(self, message: RenderedMessage) -> RenderedMessage:
        return shrink_field(message, "text", self.build, self.oversize)

    async def send(self, ctx: SendContext, request: OutboundRequest) -> SendResult:
        answer = await post_checked(ctx, request, ERRCODES.service)
        if not isinstance(answer, HttpAnswer):
            return answer
        return ERRCODES.classify_errcode_body(
            answer, throttle_pause=self.throttle_pause, busy_retry_after=self.busy_retry_after
        )
