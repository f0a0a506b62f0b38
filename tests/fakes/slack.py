"""Fake Slack incoming webhook: ``POST /services/T…/B…/…``.

Answers like Slack: 200 ``ok``; 400 ``invalid_payload``/``no_text``/``invalid_blocks``; 404
``no_service`` for an unknown hook; 410 ``channel_is_archived``; 429 with ``Retry-After`` when more
than ``rate_limit`` messages arrive within ``window`` seconds. Checks Block Kit limits: ≤ 50 blocks,
header plain_text ≤ 150 chars, section text ≤ 3000 chars.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web

from fakes.base import Answer, FakeService, Received


class FakeSlack(FakeService):
    name = "slack"

    def __init__(self, hooks: Iterable[str], *, archived: Iterable[str] = (), retry_after: int = 1, **kw: Any):
        super().__init__(**{"rate_limit": 1, "window": 1.0, "block_seconds": 0.0, **kw})
        self.hooks = set(hooks)
        self.archived = set(archived)
        self.retry_after = retry_after

    def routes(self) -> list[web.RouteDef]:
        return [self._route("/services/{path:.+}")]

    def send_url(self, hook: str) -> str:
        return f"{self.url}/services/{hook}"

    async def check(self, request: web.Request, record: Received) -> Answer:
        hook = request.match_info["path"]
        if hook in self.archived:
            return Answer(410, "channel_is_archived")
        if hook not in self.hooks:
            return Answer(404, "no_service")
        body = record.json
        if not isinstance(body, dict):
            return Answer(400, "invalid_payload")
        blocks = list(body.get("blocks") or [])
        for att in body.get("attachments") or []:
            blocks += att.get("blocks") or []
        if not body.get("text") and not blocks:
            return Answer(400, "no_text")
        if len(blocks) > 50 or not all(self._block_ok(b) for b in blocks):
            return Answer(400, "invalid_blocks")
        if self.throttled(hook):
            return Answer(429, "rate_limited", headers={"Retry-After": str(self.retry_after)})
        return Answer(200, "ok", accepted=True)

    @staticmethod
    def _block_ok(block: Any) -> bool:
        if not isinstance(block, dict):
            return False
        text = block.get("text")
        if block.get("type") == "header":
            return isinstance(text, dict) and text.get("type") == "plain_text" and 0 < len(text.get("text", "")) <= 150
        if block.get("type") == "section":
            return isinstance(text, dict) and text.get("type") in ("mrkdwn", "plain_text") and 0 < len(text.get("text", "")) <= 3000
        return block.get("type") in ("context", "divider", "actions")
