"""Bits shared by the IM channels (DingTalk, WeCom, Slack, Feishu, Telegram).

- ``color_of``: the colour word of a message (templating's ``severity_color`` of the worst firing
  alert, ``green`` when nothing fires), so each channel maps one word to its palette.
- ``shrink_field``: the last-resort cut that makes a request fit the service's size limit, found
  by bisection over ``build()`` + ``oversize()`` so JSON escaping and extra fields are accounted for.
- ``classify_http``: the HTTP-status part of answer classification every channel shares;
  ``post_checked`` = send + that part, for channels whose body matters only on 2xx.
- ``CodeTable``: services that answer 200 with a verdict code in the body (DingTalk/WeCom
  ``errcode``, Feishu ``code``) declare which codes throttle (pause the target) and which mean
  "busy" (retry later); 0 is delivered, any other code permanent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from agentmon.redact import redact_text
from receiver.channels.base import (
    Delivered,
    OutboundRequest,
    PermanentFailure,
    RenderedMessage,
    RetryableFailure,
    SendContext,
    SendResult,
)
from receiver.channels.util import HttpAnswer, http_send, parse_retry_after, truncate_bytes
from receiver.model import Notification
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
        return RetryableFailure(reason, retry_after=parse_retry_after(header(answer, "Retry-After")))
    return PermanentFailure(reason)


async def post_checked(
    ctx: SendContext, request: OutboundRequest, service: str
) -> HttpAnswer | RetryableFailure | PermanentFailure:
    """Send ``request``; the answer if it is 2xx, else the failure (connection error or status)."""
    answer = await http_send(ctx, request)
    if isinstance(answer, RetryableFailure):
        return answer
    return classify_http(answer, service) or answer


def unexpected_answer(service: str, answer: HttpAnswer) -> RetryableFailure:
    """A 2xx answer the channel cannot read (a proxy's page, a changed API): retried, never dropped."""
    return RetryableFailure(f"{service}: unexpected answer: {redact_text(answer.text[:300])}")


@dataclass(frozen=True)
class CodeTable:
    """How a service's verdict code in the answer body maps to a send result."""

    service: str  # starts every reason ("DingTalk errcode 130101: …")
    code_word: str = "errcode"  # how reasons name the code
    throttled: frozenset[int] = frozenset()  # the target is blocked: pause it for throttle_pause
    busy: frozenset[int] = frozenset()  # transient: retry this message after busy_retry_after
    ok_text: str = "ok"  # Delivered detail when the service sends no message

    def classify(
        self, code: Any, message: str, *, throttle_pause: float, busy_retry_after: float | None = None
    ) -> SendResult:
        """0 is delivered, throttled codes pause the target, busy codes retry, the rest is permanent."""
        if code == 0:
            return Delivered(message or self.ok_text)
        reason = f"{self.service} {self.code_word} {code}: {message}"
        if code in self.throttled:
            return RetryableFailure(reason, retry_after=throttle_pause, pause=True)
        if code in self.busy:
            return RetryableFailure(reason, retry_after=busy_retry_after)
        return PermanentFailure(reason)

    def classify_errcode_body(
        self, answer: HttpAnswer, *, throttle_pause: float, busy_retry_after: float | None = None
    ) -> SendResult:
        """A 2xx ``{"errcode": …, "errmsg": …}`` answer (DingTalk, WeCom)."""
        data = json_body(answer)
        if data is None or "errcode" not in data:
            return unexpected_answer(self.service, answer)
        message = redact_text(str(data.get("errmsg", "")))
        return self.classify(
            data.get("errcode"), message, throttle_pause=throttle_pause, busy_retry_after=busy_retry_after
        )


def json_body(answer: HttpAnswer) -> dict[str, Any] | None:
    try:
        data = json.loads(answer.text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def header(answer: HttpAnswer, name: str) -> str | None:
    """A response header, case-insensitively."""
    for key, value in answer.headers.items():
        if key.lower() == name.lower():
            return value
    return None


def required_url(options: dict[str, Any], what: str) -> str:
    """The ``url`` option, which must be http(s); ``what`` describes it in the error (with an example)."""
    url = str(options.get("url") or "")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"url: required, {what}")
    return url


def positive_number(options: dict[str, Any], key: str, default: float) -> float:
    """A numeric option that must be > 0 (config schema checks the type; this checks sense)."""
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{key}: must be a positive number, got {value!r}")
    return value
