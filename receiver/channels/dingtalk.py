"""DingTalk custom robot (自定义机器人): markdown/text messages, HMAC signing, keyword, @mentions.

Why it looks like this: DingTalk answers HTTP 200 for everything and puts the verdict in
``errcode``; it blocks a robot for ~10 minutes after 20 messages in a minute (130101), and drops
bodies over 20,000 bytes (460101). So the errcode decides retry vs dead letter, throttling pauses
the whole target, and ``oversize()`` guarantees a too-long body is never sent. A mention only fires
when ``at.atMobiles``/``at.atUserIds`` is set *and* ``@<mobile>`` appears in the text, so
``build()`` writes any missing ``@…`` itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import replace
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

ERRCODES = CodeTable(
    "DingTalk",
    throttled=frozenset({130101, 410100}),  # "send too fast, exceed 20 times per minute"; blocked ~10 min
    busy=frozenset({-1}),  # "系统繁忙"
)
MAX_BYTES = 20_000  # errcode 460101 above this


def sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk ``sign``: URL-encoded Base64 of HMAC-SHA256(secret, f"{timestamp}\\n{secret}")."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest).decode())


def mention_text(mentions: Mentions) -> str:
    """The ``@…`` words DingTalk needs in the text for ``at`` to fire."""
    return " ".join(f"@{x}" for x in (*mentions.mobiles, *mentions.user_ids))


class DingTalkChannel(Channel):
    type = "dingtalk"
    template = "dingtalk"
    fields = ("title", "text")
    default_rate_limit = RateLimit(20, 60.0)
    secret_options = ("url", "secret")
    required_options = ("url",)
    options_schema: ClassVar[dict[str, Any]] = {
        "url": {"type": "string", "description": "robot webhook URL with access_token"},
        "secret": {"type": "string", "description": "signing secret (SEC…); enables signing"},
        "keyword": {"type": "string", "description": "required keyword; prepended when missing"},
        "msgtype": {"enum": ["markdown", "text"]},
        "mentions": MENTIONS_SCHEMA,
        "throttle_pause": {"type": "number", "exclusiveMinimum": 0, "description": "seconds to pause after 130101"},
        "busy_retry_after": {"type": "number", "exclusiveMinimum": 0},
        "max_bytes": {"type": "integer", "minimum": 200, "description": "request body limit (20000)"},
    }

    def __init__(self, name: str, options: dict[str, Any]):
        super().__init__(name, options)
        self.url = required_url(options, "the robot's webhook URL (https://oapi.dingtalk.com/robot/send?access_token=…)")
        self.secret = options.get("secret") or ""
        self.keyword = options.get("keyword") or ""
        self.msgtype = options.get("msgtype", "markdown")
        if self.msgtype not in ("markdown", "text"):
            raise ValueError(f"msgtype: must be markdown or text, got {self.msgtype!r}")
        self.mentions = MentionConfig.parse(options.get("mentions"))
        self.throttle_pause = positive_number(self.options, "throttle_pause", 600.0)
        self.busy_retry_after = positive_number(self.options, "busy_retry_after", 5.0)
        self.max_bytes = int(positive_number(self.options, "max_bytes", MAX_BYTES))
        self.clock = time.time  # wall clock for signing (tests move it)

    def template_context(self, notifications: Sequence[Notification]) -> dict[str, Any]:
        mentions = self.mentions.resolve(notifications)
        return {
            "msgtype": self.msgtype,
            "color": color_of(notifications),
            "mentions": mentions.as_dict(),
            "mention_line": mention_text(mentions),
        }

    def build(self, message: RenderedMessage) -> OutboundRequest:
        mentions = Mentions.from_meta(message.meta)
        text = message["text"].strip()
        missing = [w for w in mention_text(mentions).split() if not re.search(re.escape(w) + r"(?![\w.-])", text)]
        if missing:
            text = f"{text}\n\n{' '.join(missing)}"
        if self.keyword and self.keyword not in text:
            text = f"{self.keyword}\n\n{text}" if self.msgtype == "markdown" else f"{self.keyword} {text}"
        title = message["title"].strip() or text.split("\n", 1)[0][:64]
        buttons = message.meta.get("buttons") or []
        body: dict[str, Any]
        if buttons and self.msgtype == "markdown":
            # Ack/silence links (later issue): an actionCard carries the same markdown plus buttons.
            body = {
                "msgtype": "actionCard",
                "actionCard": {
                    "title": title,
                    "text": text,
                    "btnOrientation": "0",
                    "btns": [{"title": b["title"], "actionURL": b["url"]} for b in buttons],
                },
            }
        elif self.msgtype == "markdown":
            body = {"msgtype": "markdown", "markdown": {"title": title, "text": text}}
        else:
            body = {"msgtype": "text", "text": {"content": text}}
        if mentions:
            body["at"] = {
                "atMobiles": list(mentions.mobiles),
                "atUserIds": list(mentions.user_ids),
                "isAtAll": mentions.at_all,
            }
        return OutboundRequest(url=self.url, json=body)

    def oversize(self, request: OutboundRequest) -> str | None:
        size = len(request.body_bytes())
        if size > self.max_bytes:
            return f"DingTalk body is {size} bytes, limit {self.max_bytes}"
        return None

    def truncate(self, message: RenderedMessage) -> RenderedMessage:
        return shrink_field(message, "text", self.build, self.oversize)

    def signed_url(self, url: str, timestamp_ms: int | None = None) -> str:
        """The URL with ``timestamp`` and ``sign`` (done at send time: DingTalk allows ±1 hour)."""
        if not self.secret:
            return url
        ts = int(self.clock() * 1000) if timestamp_ms is None else timestamp_ms
        return f"{url}{'&' if '?' in url else '?'}timestamp={ts}&sign={sign(self.secret, ts)}"

    async def send(self, ctx: SendContext, request: OutboundRequest) -> SendResult:
        answer = await post_checked(ctx, replace(request, url=self.signed_url(request.url)), ERRCODES.service)
        if not isinstance(answer, HttpAnswer):
            return answer
        return ERRCODES.classify_errcode_body(
            answer, throttle_pause=self.throttle_pause, busy_retry_after=self.busy_retry_after
        )
