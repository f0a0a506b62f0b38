"""Fake Feishu/Lark custom bot: ``POST /open-apis/bot/v2/hook/<token>``.

Checks the token (19001), signature in the body with a ±1 hour window (19021), keyword (19024),
JSON shape and body ≤ 20 KB (19002), and frequency: ``rate_limit`` per ``window`` (default
100/min) plus 5 per second → 11232 "frequency limited". HTTP 200 with ``code`` always.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections import defaultdict, deque
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from fakes.base import Answer, FakeService, Received


def expected_sign(secret: str, timestamp: str) -> str:
    return base64.b64encode(hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256).digest()).decode()


def _err(code: int, msg: str) -> Answer:
    return Answer(200, {"code": code, "data": {}, "msg": msg})


class FakeFeishu(FakeService):
    """``tokens`` maps hook token → ``{"secret": …, "keywords": [...]}``."""

    name = "feishu"

    def __init__(self, tokens: Mapping[str, Mapping[str, Any]], *, max_bytes: int = 20_000, per_second: int = 5, **kw: Any):
        super().__init__(**{"rate_limit": 100, "window": 60.0, "block_seconds": 0.0, **kw})
        self.tokens = {t: dict(v) for t, v in tokens.items()}
        self.max_bytes = max_bytes
        self.per_second = per_second
        self._second: dict[str, deque[float]] = defaultdict(deque)

    def routes(self) -> list[web.RouteDef]:
        return [self._route("/open-apis/bot/v2/hook/{token}")]

    def send_url(self, token: str) -> str:
        return f"{self.url}/open-apis/bot/v2/hook/{token}"

    async def check(self, request: web.Request, record: Received) -> Answer:
        token = request.match_info["token"]
        bot = self.tokens.get(token)
        if bot is None:
            return _err(19001, "param invalid: incoming webhook access token invalid")
        body = record.json
        if not isinstance(body, dict):
            return _err(19002, "params error, msg_type need")
        if bot.get("secret"):
            ts, sig = str(body.get("timestamp", "")), body.get("sign", "")
            if not ts.isdigit() or abs(self.now() - int(ts)) > 3600 or sig != expected_sign(bot["secret"], ts):
                return _err(19021, "sign match fail or timestamp is not within one hour from current time")
        content = self._content(body)
        if content is None:
            return _err(19002, "params error, card invalid")
        if len(record.body) > self.max_bytes:
            return _err(19002, f"params error, request body exceeds {self.max_bytes} bytes")
        if bot.get("keywords") and not any(k in content for k in bot["keywords"]):
            return _err(19024, "Key Words Not Found")
        if self._too_fast(token) or self.throttled(token):
            return _err(11232, "frequency limited psm[lark.oapi.app_platform_runtime]appID[1]")
        return Answer(200, {"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"}, accepted=True)

    def _too_fast(self, token: str) -> bool:
        now, q = self.now(), self._second[token]
        while q and q[0] <= now - 1.0:
            q.popleft()
        if len(q) >= self.per_second:
            return True
        q.append(now)
        return False

    @staticmethod
    def _content(body: dict[str, Any]) -> str | None:
        if body.get("msg_type") == "text":
            text = (body.get("content") or {}).get("text")
            return text if isinstance(text, str) and text else None
        if body.get("msg_type") != "interactive":
            return None
        card = body.get("card")
        if not isinstance(card, dict) or not isinstance(card.get("elements"), list) or not card["elements"]:
            return None
        parts = [str(((card.get("header") or {}).get("title") or {}).get("content", ""))]
        for el in card["elements"]:
            if not isinstance(el, dict) or "tag" not in el:
                return None
            text = el.get("text") or {}
            if el["tag"] == "div" and not (isinstance(text, dict) and text.get("tag") in ("lark_md", "plain_text")):
                return None
            parts.append(str(text.get("content", "")))
        return "\n".join(parts)
