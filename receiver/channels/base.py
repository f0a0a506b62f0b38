"""The one contract every delivery channel implements (in the style of AlertManager's notify/).

A channel module holds one ``Channel`` subclass and is registered in ``receiver.channels.REGISTRY``
by its ``type`` (the ``type:`` of a target in the config). The engine never knows channel details:

1. the engine renders the channel's template blocks (``fields``) into a ``RenderedMessage``
   for some number of alerts (all of them first);
2. ``build()`` turns that into an ``OutboundRequest`` (pure: no I/O, so golden tests can call it);
3. ``oversize()`` says whether the request breaks the channel's size limit; if it does, the engine
   renders again with fewer alerts and a "…and N more" line, and as a last resort calls
   ``truncate()`` (UTF-8-safe cut) — a message the channel would reject for size is never sent;
4. ``send()`` performs the I/O and reports a ``SendResult``: ``Delivered``, ``RetryableFailure``
   (optionally with ``retry_after`` seconds and ``pause`` when the whole target is throttled) or
   ``PermanentFailure`` (with the service's reason) — the engine retries or dead-letters.

Adding a channel = one module here + its templates under ``receiver/templates/`` + a golden test.
"""

from __future__ import annotations

import abc
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp

from receiver.model import Notification


@dataclass(frozen=True)
class RateLimit:
    """Token bucket: ``messages`` per ``per_seconds``, bursting up to ``messages``."""

    messages: int
    per_seconds: float


@dataclass(frozen=True)
class RenderedMessage:
    """Template output for one notification (or digest): one string per template block."""

    fields: Mapping[str, str]
    # Structured extras a channel may need beyond text (mentions resolved from the people map,
    # the notification's status/severity for colours, links, idempotency key...).
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> str:
        return self.fields.get(name, "")


@dataclass(frozen=True)
class OutboundRequest:
    """What a channel sends. HTTP channels fill url/json/headers; others use ``payload``."""

    url: str = ""
    method: str = "POST"
    json: Any = None
    data: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    payload: Any = None  # non-HTTP channels (email: an EmailMessage; file: a dict)

    def body_bytes(self) -> bytes:
        """The exact body bytes that go on the wire (used by size checks and fakes)."""
        if self.data is not None:
            return self.data
        if self.json is not None:
            return json_dumps(self.json)
        return b""


@dataclass(frozen=True)
class Delivered:
    detail: str = ""


@dataclass(frozen=True)
class RetryableFailure:
    reason: str
    retry_after: float | None = None  # seconds, from Retry-After / retry_after / known throttle windows
    pause: bool = False  # the whole target is throttled (e.g. DingTalk 130101): stop sending until retry_after


@dataclass(frozen=True)
class PermanentFailure:
    reason: str


SendResult = Delivered | RetryableFailure | PermanentFailure


@dataclass
class SendContext:
    """Shared I/O resources handed to ``send()`` (one aiohttp session per target, timeouts)."""

    session: aiohttp.ClientSession | None
    timeout: float = 10.0
    proxy: str | None = None
    # TLS for non-HTTP channels (SMTP); built from the target's ca_file. HTTP sessions carry their own.
    ssl_context: ssl.SSLContext | None = None


class Channel(abc.ABC):
    """Base class of a channel. One instance per configured target."""

    #: value of ``type:`` in the target config
    type: ClassVar[str]
    #: template blocks the channel consumes, rendered from templates/<template>.<language>.j2
    fields: ClassVar[tuple[str, ...]] = ("title", "text")
    #: default template name (file ``receiver/templates/<template>.<lang>.j2``)
    template: ClassVar[str]
    #: default per-target rate limit (overridable per target with ``rate_limit:``)
    default_rate_limit: ClassVar[RateLimit] = RateLimit(60, 60.0)
    #: JSON-schema ``properties`` of the channel-specific target keys (merged into the config schema)
    options_schema: ClassVar[dict[str, Any]] = {}
    #: option names whose values are secrets (redacted on status pages, never logged)
    secret_options: ClassVar[tuple[str, ...]] = ()
    #: AlertManager-like default for send_resolved
    default_send_resolved: ClassVar[bool] = True

    def __init__(self, name: str, options: Mapping[str, Any]):
        self.name = name
        self.options = dict(options)

    def template_context(self, notifications: Sequence[Notification]) -> dict[str, Any]:
        """Extra template variables for this target (e.g. mentions resolved from a people map).

        Called once per message (one notification, or several for a digest); the result is merged
        into the template context and also handed to ``build()`` as ``RenderedMessage.meta``.
        """
        return {}

    @abc.abstractmethod
    def build(self, message: RenderedMessage) -> OutboundRequest:
        """Turn rendered text into the request the service expects. Pure, deterministic."""

    def oversize(self, request: OutboundRequest) -> str | None:
        """Return why ``request`` breaks the service's size limits, or None when it fits."""
        return None

    def truncate(self, message: RenderedMessage) -> RenderedMessage:
        """Last resort when even a one-alert message is too big: cut UTF-8-safely to fit."""
        return message

    @abc.abstractmethod
    async def send(self, ctx: SendContext, request: OutboundRequest) -> SendResult:
        """Perform the I/O and classify the answer. Must not raise for service errors."""

    def describe(self) -> dict[str, Any]:
        """Status-page view of the target with secrets redacted."""
        from agentmon.redact import redact_options

        return {"name": self.name, "type": self.type, **redact_options(self.options, self.secret_options)}


def json_dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON as the wire format (non-ASCII kept: DingTalk/WeCom count UTF-8 bytes)."""
    import json

    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
