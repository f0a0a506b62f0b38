"""Fake DingTalk custom robot: ``POST /robot/send?access_token=…[&timestamp=…&sign=…]``.

Checks, in the real robot's order as far as users report it: token (300001), signature and its
±1 hour window (310000), JSON shape (40035), size > 20,000 bytes (460101), keyword (310000),
then the 20-per-minute limit (130101, robot blocked for ``block_seconds``). Always HTTP 200.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from fakes.base import Answer, FakeService, Received

MORE = "more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"


def expected_sign(secret: str, timestamp: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _err(code: int, msg: str) -> Answer:
    return Answer(200, {"errcode": code, "errmsg": msg})


class FakeDingTalk(FakeService):
    """``tokens`` maps access_token → robot settings ``{"secret": "SEC…", "keywords": [...]}``."""

    name = "dingtalk"

    def __init__(self, tokens: Mapping[str, Mapping[str, Any]], *, max_bytes: int = 20_000, **kw: Any):
        super().__init__(**{"block_seconds": 600.0, **kw})
        self.tokens = {t: dict(v) for t, v in tokens.items()}
        self.max_bytes = max_bytes

    def routes(self) -> list[web.RouteDef]:
        return [self._route("/robot/send")]

    def send_url(self, token: str) -> str:
        return f"{self.url}/robot/send?access_token={token}"

    async def check(self, request: web.Request, record: Received) -> Answer:
        token = request.query.get("access_token", "")
        robot = self.tokens.get(token)
        if robot is None:
            return _err(300001, "token is not exist")
        secret = robot.get("secret")
        if secret:
            ts, sig = request.query.get("timestamp", ""), request.query.get("sign", "")
            if not ts.isdigit():
                return _err(310000, f"timestamp invalid, {MORE}")
            if abs(self.now() * 1000 - int(ts)) > 3600 * 1000:
                return _err(310000, f"timestamp expired, {MORE}")
            # aiohttp already URL-decoded the query; a sender that forgot to URL-encode its
            # Base64 ('+' became ' ') fails here exactly as with DingTalk.
            if not hmac.compare_digest(sig, expected_sign(secret, ts)):
                return _err(310000, f"sign not match, {MORE}")
        body = record.json
        if not isinstance(body, dict):
            return _err(40035, "缺少参数 json")
        content = self._content(body)
        if content is None:
            return _err(40035, f"缺少参数 {body.get('msgtype', 'msgtype')}")
        if len(record.body) > self.max_bytes:
            return _err(460101, f"message too long, exceed {self.max_bytes} bytes")
        keywords = robot.get("keywords") or []
        if keywords and not any(k in content for k in keywords):
            return _err(310000, f"keywords not in content, {MORE}")
        if self.throttled(token):
            return _err(130101, "send too fast, exceed 20 times per minute")
        return Answer(200, {"errcode": 0, "errmsg": "ok"}, accepted=True)

    @staticmethod
    def _content(body: dict[str, Any]) -> str | None:
        """The user-visible text of a valid message (what keywords are matched against)."""
        msgtype = body.get("msgtype")
        part = body.get(msgtype) if isinstance(msgtype, str) else None
        if not isinstance(part, dict):
            return None
        at = body.get("at", {})
        if not isinstance(at, dict) or not all(isinstance(at.get(k, []), list) for k in ("atMobiles", "atUserIds")):
            return None
        if msgtype == "text":
            return part.get("content") if isinstance(part.get("content"), str) and part["content"] else None
        if msgtype == "markdown":
            if not (isinstance(part.get("title"), str) and isinstance(part.get("text"), str) and part["text"]):
                return None
            return part["title"] + part["text"]
        if msgtype == "actionCard":
            if not isinstance(part.get("text"), str) or not (part.get("singleURL") or part.get("btns")):
                return None
            return part.get("title", "") + part["text"]
        return None


def fired_mentions(body: dict[str, Any]) -> set[str]:
    """Who DingTalk would actually notify: ``at`` entries also written as ``@x`` in the text."""
    at = body.get("at") or {}
    part = body.get(body.get("msgtype", ""), {})
    text = part.get("text") or part.get("content") or ""
    return {x for x in [*at.get("atMobiles", []), *at.get("atUserIds", [])] if f"@{x}" in text}

