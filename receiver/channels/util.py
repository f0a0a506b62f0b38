"""Helpers shared by channel modules: UTF-8-safe truncation and an HTTP POST that never raises."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC

import aiohttp

from receiver.channels.base import OutboundRequest, RetryableFailure, SendContext

ELLIPSIS = "…"
MAX_ANSWER_BYTES = 256 * 1024


def truncate_bytes(text: str, limit: int, marker: str = ELLIPSIS) -> str:
    """Cut ``text`` so its UTF-8 encoding is at most ``limit`` bytes, never splitting a character."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    room = limit - len(marker.encode("utf-8"))
    if room <= 0:
        return marker.encode("utf-8")[:limit].decode("utf-8", "ignore")
    return raw[:room].decode("utf-8", "ignore") + marker


def truncate_chars(text: str, limit: int, marker: str = ELLIPSIS) -> str:
    """Cut ``text`` to at most ``limit`` characters (code points), the marker included."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(marker))] + marker


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    text: str
    headers: dict[str, str]


async def http_send(ctx: SendContext, request: OutboundRequest) -> HttpAnswer | RetryableFailure:
    """POST ``request``; connection errors and timeouts become a ``RetryableFailure``."""
    assert ctx.session is not None, "HTTP channels need a client session"
    headers = {"Content-Type": "application/json; charset=utf-8", **request.headers}
    try:
        async with ctx.session.request(
            request.method,
            request.url,
            data=request.body_bytes(),
            headers=headers,
            proxy=ctx.proxy,
            timeout=aiohttp.ClientTimeout(total=ctx.timeout),
        ) as resp:
            # Whole answer (bounded): some services echo the message back (Telegram), and a cut
            # JSON body would turn a success into a parse failure. Reasons quote an excerpt.
            raw = await resp.content.read(MAX_ANSWER_BYTES)
            return HttpAnswer(resp.status, raw.decode("utf-8", "replace"), dict(resp.headers))
    except TimeoutError:
        return RetryableFailure(f"timeout after {ctx.timeout:g}s")
    except aiohttp.ClientError as exc:
        return RetryableFailure(f"connection error: {type(exc).__name__}: {redact_url_in(str(exc))}")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form; HTTP dates are rare for webhooks)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from datetime import datetime
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(UTC)).total_seconds())


def redact_url_in(text: str) -> str:
    from agentmon.redact import redact_text

    return redact_text(text)
