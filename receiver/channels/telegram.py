"""Telegram bot: ``sendMessage`` with HTML parse mode.

Why HTML: it needs escaping of only ``&``, ``<`` and ``>`` (MarkdownV2 needs 18 characters), so a
label value can never break the message. The 4096-character limit applies after entity parsing;
we enforce it on the raw text (tags included), which is conservative. On 429 Telegram says how
long to wait in ``parameters.retry_after``. ``api_url`` is configurable because Telegram is often
reached through a relay.
"""

from __future__ import annotations

import html
import re
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
    RetryableFailure,
    SendContext,
    SendResult,
)
from receiver.channels.im import (
    classify_http,
    color_of,
    json_body,
    positive_number,
    shrink_field,
    unexpected_answer,
)
from receiver.channels.util import http_send
from receiver.mentions import MENTIONS_SCHEMA, MentionConfig, Mentions
from receiver.model import Notification

MAX_CHARS = 4096
_TOKEN = re.compile(r"^[0-9]+:[A-Za-z0-9_-]+$")
# http_send keeps only the first 2000 characters of an answer, and a successful sendMessage echoes
# the whole message back — so success is recognised from the start of the body.
_OK = re.compile(r'^\s*\{\s*"ok"\s*:\s*true\b')


def escape_html(text: str) -> str:
    """Telegram HTML escaping: & < > (and quotes, harmless in text, needed inside href)."""
    return html.escape(text, quote=True)


def mention_links(mentions: Mentions) -> str:
    """Numeric ids become ``tg://user`` links; ``@username`` entries are written as they are."""
    words = []
    for uid in mentions.user_ids:
        if uid.startswith("@"):
            words.append(escape_html(uid))
        else:
            words.append(f'<a href="tg://user?id={escape_html(uid)}">{escape_html(uid)}</a>')
    return " ".join(words)


def cut_html(text: str, limit: int) -> str:
    """Cut to ``limit`` characters without leaving a half tag/entity, then close open tags."""
    if len(text) <= limit:
        return text
    marker = "…"
    cut = text[: max(0, limit - len(marker) - 40)]  # room for closing tags
    lt, gt = cut.rfind("<"), cut.rfind(">")
    if lt > gt:
        cut = cut[:lt]
    amp, semi = cut.rfind("&"), cut.rfind(";")
    if amp > semi:
        cut = cut[:amp]
    stack: list[str] = []
    for m in re.finditer(r"<(/?)([a-z-]+)[^>]*>", cut):
        if m.group(1):
            if stack and stack[-1] == m.group(2):
                stack.pop()
        else:
            stack.append(m.group(2))
    return cut + marker + "".join(f"</{t}>" for t in reversed(stack))


class TelegramChannel(Channel):
    type = "telegram"
    template = "telegram"
    fields = ("text",)
    default_rate_limit = RateLimit(20, 60.0)  # 20 msgs/min in a group; ~1/s per chat
    secret_options = ("bot_token",)
    required_options = ("bot_token", "chat_id")
    options_schema: ClassVar[dict[str, Any]] = {
        "bot_token": {"type": "string", "description": "123456:ABC… from @BotFather"},
        "chat_id": {"type": ["integer", "string"], "description": "numeric chat id or @channelusername"},
        "api_url": {"type": "string", "description": "Bot API base URL (default https://api.telegram.org)"},
        "message_thread_id": {"type": "integer"},
        "disable_notification": {"type": "boolean"},
        "mentions": MENTIONS_SCHEMA,
        "max_chars": {"type": "integer", "minimum": 100, "maximum": MAX_CHARS},
    }

    def __init__(self, name: str, options: dict[str, Any]):
        super().__init__(name, options)
        self.token = str(options.get("bot_token") or "")
        if not _TOKEN.match(self.token):
            raise ValueError("bot_token: required, the token from @BotFather (digits:letters)")
        self.chat_id = options.get("chat_id")
        if self.chat_id in (None, ""):
            raise ValueError("chat_id: required (numeric id, e.g. -1001234567890, or @channelusername)")
        self.api_url = str(options.get("api_url") or "https://api.telegram.org").rstrip("/")
        if not self.api_url.startswith(("http://", "https://")):
            raise ValueError("api_url: must be an http(s) URL")
        self.mentions = MentionConfig.parse(options.get("mentions"))
        if self.mentions.uses_mobiles or self.mentions.uses_at_all:
            raise ValueError("mentions: Telegram mentions only user_ids (numeric ids or @usernames); no mobiles, no @all")
        self.max_chars = int(positive_number(self.options, "max_chars", MAX_CHARS))

    def template_context(self, notifications: Sequence[Notification]) -> dict[str, Any]:
        mentions = self.mentions.resolve(notifications)
        return {"color": color_of(notifications), "mentions": mentions.as_dict(), "mention_line": mention_links(mentions)}

    def build(self, message: RenderedMessage) -> OutboundRequest:
        text = message["text"].strip()
        mentions = mention_links(Mentions.from_meta(message.meta))
        if mentions and mentions not in text:
            text = f"{text}\n{mentions}"
        body: dict[str, Any] = {
            "chat_id": self.chat_id,
            "text": text,
            "parse_mode": "HTML",
            "disable_web_page_preview": True,
        }
        if "message_thread_id" in self.options:
            body["message_thread_id"] = self.options["message_thread_id"]
        if self.options.get("disable_notification"):
            body["disable_notification"] = True
        return OutboundRequest(url=f"{self.api_url}/bot{self.token}/sendMessage", json=body)

    def oversize(self, request: OutboundRequest) -> str | None:
        size = len(request.json["text"])
        if size > self.max_chars:
            return f"Telegram text is {size} characters, limit {self.max_chars}"
        return None

    def truncate(self, message: RenderedMessage) -> RenderedMessage:
        fitted = shrink_field(message, "text", self.build, self.oversize)
        # shrink_field cuts bytes blindly; redo the cut so no tag or entity is left half-open
        budget = len(fitted["text"])
        return RenderedMessage({**message.fields, "text": cut_html(message["text"], budget)}, message.meta)

    async def send(self, ctx: SendContext, request: OutboundRequest) -> SendResult:
        answer = await http_send(ctx, request)
        if isinstance(answer, RetryableFailure):
            return answer
        data = json_body(answer) or {}
        description = redact_text(str(data.get("description", "")))
        if answer.status == 429 or data.get("error_code") == 429:
            retry_after = (data.get("parameters") or {}).get("retry_after")
            return RetryableFailure(f"Telegram 429: {description}", retry_after=float(retry_after) if retry_after is not None else None)
        if data.get("ok") is True or (answer.status == 200 and _OK.match(answer.text)):
            return Delivered("ok")
        if answer.status in (400, 401, 403, 404) and description:
            migrate = (data.get("parameters") or {}).get("migrate_to_chat_id")
            hint = f" (the group moved: set chat_id to {migrate})" if migrate else ""
            return PermanentFailure(f"Telegram {answer.status}: {description}{hint}")
        failure = classify_http(answer, "Telegram")
        if failure is not None:
            return failure
        return unexpected_answer("Telegram", answer)
