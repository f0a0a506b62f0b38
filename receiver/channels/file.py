"""File/log channel: rendered messages as JSON lines to a file or stdout.

Needs no credentials, so it is the default target of ``make run``: a newcomer sees alerts arrive
without configuring a robot. Each line: ``{"time", "target", "status", "severity", "title",
"text", "notification_ids", "idempotency_key", "group_key", "omitted"}``.
"""

from __future__ import annotations

import asyncio
import errno
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

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

_PERMANENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EROFS}


class FileChannel(Channel):
    type = "file"
    template = "file"
    fields = ("title", "text")
    default_rate_limit: ClassVar[RateLimit] = RateLimit(1000, 1.0)
    default_send_resolved = True
    options_schema: ClassVar[dict[str, Any]] = {
        "path": {"type": "string", "minLength": 1, "description": "file to append JSON lines to; '-' = stdout (default)"},
    }

    def __init__(self, name: str, options: dict[str, Any]):
        super().__init__(name, options)
        self.path = str(options.get("path") or "-")
        self._lock = asyncio.Lock()

    def build(self, message: RenderedMessage) -> OutboundRequest:
        meta = message.meta
        line = {
            "target": self.name,
            "status": meta.get("status", ""),
            "severity": meta.get("severity", ""),
            "title": message["title"],
            "text": message["text"],
            "notification_ids": list(meta.get("notification_ids", ())),
            "idempotency_key": meta.get("idempotency_key", ""),
            "group_key": meta.get("group_key", ""),
            "omitted": meta.get("omitted", 0),
        }
        return OutboundRequest(payload=line)

    async def send(self, ctx: SendContext, request: OutboundRequest) -> SendResult:
        record = {"time": datetime.now(UTC).isoformat().replace("+00:00", "Z"), **request.payload}
        data = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        async with self._lock:
            try:
                if self.path == "-":
                    sys.stdout.write(data)
                    sys.stdout.flush()
                else:
                    await asyncio.to_thread(_append, Path(self.path), data)
            except OSError as exc:
                reason = f"cannot write {self.path}: {exc.strerror or exc}"
                if exc.errno in _PERMANENT_ERRNOS:
                    return PermanentFailure(reason)
                return RetryableFailure(reason)
        return Delivered(f"wrote {len(data.encode('utf-8'))} bytes to {'stdout' if self.path == '-' else self.path}")


def _append(path: Path, data: str) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(data)
