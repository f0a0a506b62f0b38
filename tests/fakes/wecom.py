"""Fake WeCom group robot: ``POST /cgi-bin/webhook/send?key=…``.

Checks the key (93000), JSON shape (40008/44004), content size — markdown/markdown_v2 ≤ 4096
bytes, text ≤ 2048 bytes (40058) — and 20 messages a minute (45009, blocked ``block_seconds``).
Always HTTP 200.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web

from fakes.base import Answer, FakeService, Received

LIMITS = {"markdown": 4096, "markdown_v2": 4096, "text": 2048}


def _err(code: int, msg: str) -> Answer:
    return Answer(200, {"errcode": code, "errmsg": f"{msg}, hint: [1700000000_1_fake], from ip: 127.0.0.1"})


class FakeWeCom(FakeService):
    name = "wecom"

    def __init__(self, keys: Iterable[str], **kw: Any):
        super().__init__(**{"block_seconds": 60.0, **kw})
        self.keys = set(keys)

    def routes(self) -> list[web.RouteDef]:
        return [self._route("/cgi-bin/webhook/send")]

    def send_url(self, key: str) -> str:
        return f"{self.url}/cgi-bin/webhook/send?key={key}"

    async def check(self, request: web.Request, record: Received) -> Answer:
        key = request.query.get("key", "")
        if key not in self.keys:
            return _err(93000, "invalid webhook url")
        body = record.json
        if not isinstance(body, dict):
            return _err(40008, "invalid message type")
        msgtype = body.get("msgtype")
        if msgtype not in LIMITS:
            return _err(40008, "invalid message type")
        part = body.get(msgtype)
        if not isinstance(part, dict) or not isinstance(part.get("content"), str) or not part["content"]:
            return _err(44004, "empty content")
        for lst in ("mentioned_list", "mentioned_mobile_list"):
            if lst in part and not (isinstance(part[lst], list) and all(isinstance(x, str) for x in part[lst])):
                return _err(40008, f"invalid {lst}")
        size = len(part["content"].encode("utf-8"))
        if size > LIMITS[msgtype]:
            return _err(40058, f"{msgtype}.content exceed max length {LIMITS[msgtype]}")
        if self.throttled(key):
            return _err(45009, "api freq out of limit")
        return Answer(200, {"errcode": 0, "errmsg": "ok"}, accepted=True)
