"""Feishu / Lark custom bot: an interactive card (lark_md body, header colour by severity/status).

Why: Feishu answers ``{"code":0,"msg":"success"}`` — often HTTP 200 even on errors — so the
``code`` decides; frequency limits (11232, 9499) pause the target; everything else is permanent
with Feishu's ``msg``. Optional signing puts ``timestamp`` (seconds) and ``sign`` into the JSON
body at send time (so ``build()`` stays deterministic); ``oversize()`` reserves room for them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar

from agentmon.redact import redact_text
from receiver.channels.base import (
    Channel,
    OutboundRequest,
    RateLimit,
    RenderedMessage,
    RetryableFailure,
    SendContext,
    SendResult,
)
from receiver.channels.im import (
    CodeTable,
    classify_http,
    color_of,
    header,
    json_body,
    positive_number,
    required_url,
    shrink_field,
    unexpected_answer,
)
from receiver.channels.util import http_send, parse_retry_after, truncate_chars
from receiver.mentions import MENTIONS_SCHEMA, MentionConfig, Mentions
from receiver.model import Notification

# 11232 "frequency limited" (custom bots: 100/min and 5/s each; Feishu's custom bot guide),
# 9499 "too many request", 99991400 "request trigger frequency limit" (the Open Platform's limit:
# HTTP 429, or 400 on older APIs, with the wait in x-ogw-ratelimit-reset; Feishu's rate limit guide)
CODES = CodeTable("Feishu", code_word="code", throttled=frozenset({11232, 9499, 99991400}), ok_text="success")
#: card header template per colour word (Feishu has all of templating's palette)
HEADER_TEMPLATES = {"red": "red", "orange": "orange", "yellow": "yellow", "blue": "blue", "grey": "grey", "green": "green"}
MAX_BYTES = 20_000
# ,"timestamp":"1700000000","sign":"<44 base64 chars>" added by send() when signing
SIGN_OVERHEAD = len(',"timestamp":"0000000000","sign":""') + 44


def sign(secret: str, timestamp_s: int) -> str:
    """Feishu ``sign``: Base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b""))."""
    return base64.b64encode(hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()).decode()


def mention_tags(mentions: Mentions) -> str:
    words = [f"<at id={u}></at>" for u in mentions.user_ids]
    if mentions.at_all:
        words.append("<at id=all></at>")
    return " ".join(words)


class FeishuChannel(Channel):
    type = "feishu"
    template = "feishu"
    fields = ("title", "text")
    default_rate_limit = RateLimit(5, 3.0)  # 100/min, bursts of 5 (the 5/s cap)
    secret_options = ("url", "secret")
    required_options = ("url",)
    options_schema: ClassVar[dict[str, Any]] = {
        "url": {"type": "string", "description": "https://open.feishu.cn/open-apis/bot/v2/hook/<token>"},
        "secret": {"type": "string", "description": "signing secret; enables signing"},
        "mentions": MENTIONS_SCHEMA,
        "throttle_pause": {"type": "number", "exclusiveMinimum": 0, "description": "seconds to pause after 11232/9499"},
        "max_bytes": {"type": "integer", "minimum": 500, "description": "request body limit (20000)"},
        "title_chars": {"type": "integer", "minimum": 10},
    }

    def __init__(self, name: str, options: dict[str, Any]):
        super().__init__(name, options)
        self.url = required_url(options, "the bot's webhook URL (https://open.feishu.cn/open-apis/bot/v2/hook/…)")
        self.secret = options.get("secret") or ""
        self.mentions = MentionConfig.parse(options.get("mentions"))
        if self.mentions.uses_mobiles:
            raise ValueError("mentions: Feishu cards mention by user id (open_id ou_…/user_id), not by mobile")
        self.throttle_pause = positive_number(self.options, "throttle_pause", 60.0)
        self.max_bytes = int(positive_number(self.options, "max_bytes", MAX_BYTES))
        self.title_chars = int(positive_number(self.options, "title_chars", 200))
        self.clock = time.time  # wall clock for signing (tests move it)

    def template_context(self, notifications: Sequence[Notification]) -> dict[str, Any]:
        mentions = self.mentions.resolve(notifications)
        return {
            "color": color_of(notifications),
            "mentions": mentions.as_dict(),
            "mention_line": mention_tags(mentions),
        }

    def build(self, message: RenderedMessage) -> OutboundRequest:
        text = message["text"].strip()
        mentions = mention_tags(Mentions.from_meta(message.meta))
        if mentions and mentions not in text:
            text = f"{text}\n{mentions}"
        color = message.meta.get("color", "blue")
        card = {
            "config": {"wide_screen_mode": True},
            "header": {
                "title": {"tag": "plain_text", "content": truncate_chars(" ".join(message["title"].split()) or "-", self.title_chars)},
                "template": HEADER_TEMPLATES.get(color, "blue"),
            },
            "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": text}}],
        }
        return OutboundRequest(url=self.url, json={"msg_type": "interactive", "card": card})

    def oversize(self, request: OutboundRequest) -> str | None:
        size = len(request.body_bytes()) + (SIGN_OVERHEAD if self.secret else 0)
        if size > self.max_bytes:
            return f"Feishu body is {size} bytes, limit {self.max_bytes}"
        return None

    def truncate(self, message: RenderedMessage) -> RenderedMessage:
        return shrink_field(message, "text", self.build, self.oversize)

    def signed(self, request: OutboundRequest, timestamp_s: int | None = None) -> OutboundRequest:
        if not self.secret:
            return request
        ts = int(self.clock()) if timestamp_s is None else timestamp_s
        return replace(request, json={"timestamp": str(ts), "sign": sign(self.secret, ts), **request.json})

    async def send(self, ctx: SendContext, request: OutboundRequest) -> SendResult:
        answer = await http_send(ctx, self.signed(request))
        if isinstance(answer, RetryableFailure):
            return answer
        data = json_body(answer)
        code = None if data is None else data.get("code", data.get("StatusCode"))
        msg = "" if data is None else redact_text(str(data.get("msg", data.get("StatusMessage", ""))))
        if code in CODES.throttled:  # a frequency-limit code pauses the target whatever the HTTP status
            reset = parse_retry_after(header(answer, "x-ogw-ratelimit-reset"))
            return CODES.classify(code, msg, throttle_pause=reset or self.throttle_pause)
        failure = classify_http(answer, CODES.service)
        if failure is not None:
            return failure
        if code is None:
            return unexpected_answer(CODES.service, answer)
        return CODES.classify(code, msg, throttle_pause=self.throttle_pause)
