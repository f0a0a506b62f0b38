"""Receiver test kit: a minimal HTTP channel + compose stand-in (engine tests stay independent of
templates), config writing, and an app factory for aiohttp's test client."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Sequence
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
from receiver.channels.util import http_send, parse_retry_after
from receiver.compose import notification_to_dict
from receiver.ingest import fingerprint
from receiver.model import Notification

FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "alertmanager-payloads"


class SinkChannel(Channel):
    """POSTs {"notifications": [...]} with an Idempotency-Key; classifies answers like real channels."""

    type = "testsink"
    template = "none"
    default_rate_limit = RateLimit(1000, 1.0)
    required_options = ("url",)
    options_schema: ClassVar[dict[str, Any]] = {"url": {"type": "string"}, "token": {"type": "string"}}
    secret_options = ("token",)

    def build(self, message: RenderedMessage) -> OutboundRequest:  # not used: compose stand-in builds
        raise NotImplementedError

    async def send(self, ctx: SendContext, request: OutboundRequest) -> SendResult:
        answer = await http_send(ctx, request)
        if isinstance(answer, RetryableFailure):
            return answer
        if 200 <= answer.status < 300:
            return Delivered()
        if answer.status == 429 or answer.status >= 500:
            return RetryableFailure(f"HTTP {answer.status}: {answer.text[:100]}",
                                    retry_after=parse_retry_after(answer.headers.get("Retry-After")))
        return PermanentFailure(f"HTTP {answer.status}: {answer.text[:100]}")


class PausingSinkChannel(SinkChannel):
    """Like SinkChannel, but a 429 pauses the whole target (DingTalk 130101-style)."""

    type = "testsink-pause"

    async def send(self, ctx: SendContext, request: OutboundRequest) -> SendResult:
        result = await super().send(ctx, request)
        if isinstance(result, RetryableFailure) and result.reason.startswith("HTTP 429"):
            return RetryableFailure(result.reason, retry_after=result.retry_after, pause=True)
        return result


REGISTRY: dict[str, type[Channel]] = {"testsink": SinkChannel, "testsink-pause": PausingSinkChannel}


def fake_compose(channel: Channel, templates: Any, target: Any, notifications: Sequence[Notification], *,
                 on_template_error: Callable[[str], None]) -> OutboundRequest:
    """Stand-in for receiver.compose.compose: the notifications as JSON, keyed for idempotency."""
    key = notifications[0].id if len(notifications) == 1 else "digest-" + "-".join(sorted(n.id for n in notifications))
    return OutboundRequest(
        url=channel.options["url"],
        json={"target": target.name, "notifications": [notification_to_dict(n) for n in notifications]},
        headers={"Idempotency-Key": key},
    )


def fake_templates(template_dir: str | None) -> None:
    return None


def write_config(directory: Path, text: str, name: str = "receiver.yml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def payload(alertname: str = "HighLatency", *, status: str = "firing", n_alerts: int = 1, group_key: str | None = None,
            **extra: Any) -> dict[str, Any]:
    """A realistic AlertManager v4 webhook payload."""
    alerts = []
    for i in range(n_alerts):
        labels = {"alertname": alertname, "instance": f"host-{i}:9100", "severity": "critical", "job": "node"}
        alerts.append({
            "status": status,
            "labels": labels,
            "annotations": {"summary": f"{alertname} on host-{i}", "description": "p99 above 2s for 5m"},
            "startsAt": "2026-11-28T09:00:00.123456789Z",
            "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-28T09:30:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
            "fingerprint": fingerprint(labels),
        })
    return {
        "version": "4",
        "groupKey": group_key or f'{{}}:{{alertname="{alertname}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "web\\.hook",
        "groupLabels": {"alertname": alertname},
        "commonLabels": {"alertname": alertname, "severity": "critical"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
        **extra,
    }


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode()
