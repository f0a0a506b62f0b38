"""Generic webhook channel: POST our normalized notification(s) as JSON to any URL.

Body (one notification): the AlertManager webhook v4 shape (``compose.notification_to_dict``)
plus ``idempotency_key``, ``title``/``text`` (rendered from the ``webhook`` template — short,
SMS-friendly) and ``target``. A digest of several notifications is
``{"version": "4", "digest": true, "status", "idempotency_key", "title", "text", "target",
"notifications": [...]}``. Header ``Idempotency-Key`` repeats the key so the far end can drop
duplicates (retries, HA AlertManagers).

Signing (``hmac_secret``): ``X-AgentMon-Timestamp: <unix seconds>`` and
``X-AgentMon-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>`` — the far end
recomputes it over the raw body, compares in constant time and rejects stale timestamps (replay).

Answers: 2xx delivered; 408, 429 and 5xx retryable (Retry-After honoured); other 4xx permanent
with the status and a body excerpt. SMS gateways are reached through this channel.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import replace
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
from receiver.channels.util import HttpAnswer, http_send, parse_retry_after, truncate_bytes

SIGNATURE_HEADER = "X-AgentMon-Signature"
TIMESTAMP_HEADER = "X-AgentMon-Timestamp"
USER_AGENT = "agentmon-alert-receiver"
_RESERVED_HEADERS = {"content-type", "content-length", "idempotency-key", SIGNATURE_HEADER.lower(), TIMESTAMP_HEADER.lower()}


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-AgentMon-Signature`` value for ``body`` sent at ``timestamp`` (documented for verifiers)."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, now: float | None = None, tolerance: float = 300) -> bool:
    """Reference verifier for the far end: signature matches and the timestamp is fresh."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance and hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookChannel(Channel):
    type = "webhook"
    template = "webhook"
    fields = ("title", "text")
    default_rate_limit: ClassVar[RateLimit] = RateLimit(60, 60.0)
    default_send_resolved = True
    required_options: ClassVar[tuple[str, ...]] = ("url",)
    secret_options = ("hmac_secret", "headers")
    options_schema: ClassVar[dict[str, Any]] = {
        "url": {"type": "string", "pattern": "^https?://", "description": "where to POST"},
        "headers": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "extra HTTP headers (e.g. Authorization); values are treated as secrets",
        },
        "hmac_secret": {"type": "string", "minLength": 16, "description": "enables X-AgentMon-Signature"},
        "max_bytes": {"type": "integer", "minimum": 256, "description": "refuse bodies above this size (shrinks the message)"},
    }

    def __init__(self, name: str, options: dict[str, Any]):
        super().__init__(name, options)
        self.url = str(options.get("url") or "")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("url: required, an http:// or https:// URL")
        headers = options.get("headers") or {}
        bad = sorted(k for k in headers if k.lower() in _RESERVED_HEADERS)
        if bad:
            raise ValueError(f"headers: {', '.join(bad)} is set by the channel and cannot be overridden")
        self.headers = {str(k): str(v) for k, v in headers.items()}
        self.hmac_secret = options.get("hmac_secret") or None
        self.max_bytes = int(options["max_bytes"]) if options.get("max_bytes") else None

    def build(self, message: RenderedMessage) -> OutboundRequest:
        meta = message.meta
        key = str(meta.get("idempotency_key", ""))
        # only the alerts that fit (the rest counted in truncatedAlerts, as AlertManager does)
        notifications = list(meta.get("notifications_shown") or meta.get("notifications", ()))
        extras = {"idempotency_key": key, "title": message["title"], "text": message["text"], "target": self.name}
        if len(notifications) == 1:
            body: dict[str, Any] = {**notifications[0], **extras}
        else:
            body = {"version": "4", "digest": True, "status": meta.get("status", ""), **extras, "notifications": notifications}
        headers = {"User-Agent": USER_AGENT, **self.headers, "Idempotency-Key": key}
        return OutboundRequest(url=self.url, json=body, headers=headers)

    def oversize(self, request: OutboundRequest) -> str | None:
        if self.max_bytes is None:
            return None
        size = len(request.body_bytes())
        return f"body is {size} bytes, max_bytes is {self.max_bytes}" if size > self.max_bytes else None

    def truncate(self, message: RenderedMessage) -> RenderedMessage:
        """Cut the rendered text (UTF-8-safe); the structured alert data is what the far end needs."""
        return replace(message, fields={**message.fields, "text": truncate_bytes(message["text"], 200)})

    async def send(self, ctx: SendContext, request: OutboundRequest) -> SendResult:
        body = request.body_bytes()
        headers = dict(request.headers)
        if self.hmac_secret:
            ts = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = ts
            headers[SIGNATURE_HEADER] = sign(self.hmac_secret, ts, body)
        answer = await http_send(ctx, replace(request, data=body, json=None, headers=headers))
        if isinstance(answer, RetryableFailure):
            return answer
        return classify(answer)


def classify(answer: HttpAnswer) -> SendResult:
    if 200 <= answer.status < 300:
        return Delivered(f"HTTP {answer.status}")
    excerpt = redact_text(answer.text.strip())[:300]
    reason = f"webhook answered HTTP {answer.status}" + (f": {excerpt}" if excerpt else "")
    if answer.status in (408, 429) or answer.status >= 500:
        retry_after = parse_retry_after(next((v for k, v in answer.headers.items() if k.lower() == "retry-after"), None))
        return RetryableFailure(reason, retry_after=retry_after)
    return PermanentFailure(reason)
