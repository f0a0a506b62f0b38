"""Bits shared by the IM channels (DingTalk, WeCom, Slack, Feishu, Telegram).

- ``color_of``: the colour word of a message (templating's ``severity_color`` of the worst firing
  alert, ``green`` when nothing fires), so each channel maps one word to its palette.
- ``shrink_field``: the last-resort cut that makes a request fit the service's size limit, found
  by bisection over ``build()`` + ``oversize()`` so JSON escaping and extra fields are accounted for.
- ``classify_http``: the HTTP-status part of answer classification every channel shares.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from receiver.channels.base import OutboundRequest, PermanentFailure, RenderedMessage, RetryableFailure
from receiver.channels.util import HttpAnswer, parse_retry_after, truncate_bytes
from receiver.model import Notification
from receiver.redact import redact_text
from receiver.templating import g_severity_color, highest_severity

#: every colour word ``color_of`` can return (templating's palette)
COLOR_WORDS = ("red", "orange", "yellow", "blue", "grey", "green")


def color_of(notifications: Sequence[Notification]) -> str:
    """``red|orange|yellow|blue|grey`` for the worst firing alert; ``green`` when nothing fires."""
    firing = [a for n in notifications for a in n.alerts if a.status == "firing"]
    if not firing:
        return "green"
    return g_severity_color(highest_severity(a.severity for a in firing), "firing")


def shrink_field(
    message: RenderedMessage,
    field_name: str,
    build: Callable[[RenderedMessage], OutboundRequest],
    oversize: Callable[[OutboundRequest], str | None],
) -> RenderedMessage:
    """Cut ``field_name`` (UTF-8-safe, with "…") to the longest prefix whose request fits."""
    text = message[field_name]

    def with_text(limit: int) -> RenderedMessage:
        return replace(message, fields={**message.fields, field_name: truncate_bytes(text, limit)})

    if oversize(build(message)) is None:
        return message
    lo, hi = 0, len(text.encode("utf-8"))  # lo always fits (or nothing does), hi does not
    if oversize(build(with_text(0))) is not None:
        return with_text(0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if oversize(build(with_text(mid))) is None:
            lo = mid
        else:
            hi = mid
    return with_text(lo)


def classify_http(answer: HttpAnswer, service: str) -> RetryableFailure | PermanentFailure | None:
    """Non-2xx statuses: 429 and 5xx are retryable (with Retry-After), anything else permanent.

    Returns None for 2xx, leaving the body to the channel.
    """
    if 200 <= answer.status < 300:
        return None
    body = redact_text(answer.text.strip())[:500]
    reason = f"{service} HTTP {answer.status}: {body}" if body else f"{service} HTTP {answer.status}"
    if answer.status == 429 or answer.status >= 500:
        return RetryableFailure(reason, retry_after=parse_retry_after(_header(answer, "Retry-After")))
    return PermanentFailure(reason)


def json_body(answer: HttpAnswer) -> dict[str, Any] | None:
    try:
        data = json.loads(answer.text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _header(answer: HttpAnswer, name: str) -> str | None:
    for key, value in answer.headers.items():
        if key.lower() == name.lower():
            return value
    return None


def positive_number(options: dict[str, Any], key: str, default: float) -> float:
    """A numeric option that must be > 0 (config schema checks the type; this checks sense)."""
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{key}: must be a positive number, got {value!r}")
    return value
