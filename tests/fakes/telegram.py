"""Fake Telegram Bot API: ``POST /bot<token>/sendMessage``.

Answers like the Bot API: ``{"ok":true,"result":{…}}``; 401 Unauthorized for an unknown token;
400 "chat not found", "message text is empty", "message is too long" (> 4096 characters after
entity parsing), "can't parse entities" for HTML Telegram rejects (unknown tags, unescaped
``<``/``&``, unbalanced tags); 403 "bot was blocked by the user"; 429 with
``parameters.retry_after`` beyond ``rate_limit`` messages per ``window`` seconds per chat.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from fakes.base import Answer, FakeService, Received

TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "span",
        "tg-spoiler", "tg-emoji", "blockquote"}
_TOKEN = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[a-z-]+\s*=\s*\"[^\"<>]*\")*)\s*>|&(#[0-9]+|#x[0-9a-fA-F]+|lt|gt|amp|quot);")


def visible_text(text: str) -> str:
    """Parse Telegram HTML; return the visible text or raise ValueError like "can't parse entities"."""
    out: list[str] = []
    stack: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(text):
        plain = text[pos:m.start()]
        for ch in "<&>":
            if ch in plain and ch != ">":
                raise ValueError(f"Unsupported start tag or unescaped {ch!r} at byte offset {len(text[:pos + plain.index(ch)].encode())}")
        out.append(plain)
        pos = m.end()
        if m.group(4):
            out.append(html.unescape(m.group(0)))
            continue
        closing, tag = m.group(1), m.group(2).lower()
        if tag not in TAGS:
            raise ValueError(f'Unsupported start tag "{tag}" at byte offset {len(text[:m.start()].encode())}')
        if closing:
            if not stack or stack[-1] != tag:
                raise ValueError(f'Can\'t find end tag corresponding to start tag "{tag}"')
            stack.pop()
        else:
            stack.append(tag)
    rest = text[pos:]
    if "<" in rest or "&" in rest:
        raise ValueError(f"Unsupported start tag or unescaped character at byte offset {len(text[:pos].encode())}")
    if stack:
        raise ValueError(f'Can\'t find end tag corresponding to start tag "{stack[-1]}"')
    out.append(rest)
    return "".join(out)


def _err(status: int, description: str, **parameters: Any) -> Answer:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return Answer(status, body)


class FakeTelegram(FakeService):
    name = "telegram"

    def __init__(self, tokens: Iterable[str], chats: Iterable[int | str], *, blocked: Iterable[int | str] = (),
                 retry_after: int = 3, **kw: Any):
        super().__init__(**{"rate_limit": 20, "window": 60.0, "block_seconds": 0.0, **kw})
        self.tokens = set(tokens)
        self.chats = {str(c) for c in chats}
        self.blocked = {str(c) for c in blocked}
        self.retry_after = retry_after
        self._message_id = 0

    def routes(self) -> list[web.RouteDef]:
        return [self._route("/bot{token}/sendMessage")]

    async def check(self, request: web.Request, record: Received) -> Answer:
        if request.match_info["token"] not in self.tokens:
            return _err(401, "Unauthorized")
        body = record.json
        if not isinstance(body, dict) or "chat_id" not in body:
            return _err(400, "Bad Request: chat_id is empty")
        chat = str(body["chat_id"])
        if chat in self.blocked:
            return _err(403, "Forbidden: bot was blocked by the user")
        if chat not in self.chats:
            return _err(400, "Bad Request: chat not found")
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            return _err(400, "Bad Request: message text is empty")
        if body.get("parse_mode") == "HTML":
            try:
                text = visible_text(text)
            except ValueError as exc:
                return _err(400, f"Bad Request: can't parse entities: {exc}")
        if len(text) > 4096:
            return _err(400, "Bad Request: message is too long")
        if self.throttled(chat):
            return _err(429, f"Too Many Requests: retry after {self.retry_after}", retry_after=self.retry_after)
        self._message_id += 1
        return Answer(200, {"ok": True, "result": {"message_id": self._message_id, "chat": {"id": body["chat_id"]}, "text": text}}, accepted=True)
