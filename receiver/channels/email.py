"""SMTP e-mail channel (aiosmtplib): multipart/alternative text + HTML, one thread per alert group.

Transport security follows AlertManager's ``email_config``: port 465 (or ``force_implicit_tls``)
means implicit TLS, otherwise STARTTLS is required (``require_tls``, default true) — plaintext is
allowed only to a loopback smarthost. Certificates are always verified (``ca_file`` adds a CA).

Threading: every message of one AlertManager group carries ``In-Reply-To``/``References`` pointing
at a stable per-group root id and the same ``Thread-Topic``, so mail clients keep the group in one
thread; ``Message-ID`` is unique per notification (and stable across our retries, so an MTA can
drop a duplicate).

Answers: connection errors, timeouts and 4xx SMTP replies (421, 450, 451, 452) are retryable;
5xx replies (535 auth, 550, 553, 554...) are permanent and carry the server's message.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import ssl
from dataclasses import replace
from email.message import EmailMessage
from email.utils import formatdate, getaddresses
from typing import Any, ClassVar

import aiosmtplib

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
from receiver.channels.util import truncate_bytes

_RESERVED_HEADERS = {
    "from", "to", "subject", "message-id", "in-reply-to", "references", "thread-topic", "date",
    "content-type", "mime-version", "content-transfer-encoding",
}
DEFAULT_MAX_BYTES = 5 * 2**20
# connection-level trouble worth retrying; any other SMTPException is a protocol/config problem
_TRANSIENT = (
    aiosmtplib.SMTPConnectError,
    aiosmtplib.SMTPTimeoutError,
    aiosmtplib.SMTPServerDisconnected,
)


def parse_smarthost(value: str) -> tuple[str, int]:
    """``host:port`` / ``[v6]:port`` → (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"smarthost: {value!r} is not host:port (e.g. smtp.example.com:587)")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    p = int(port)
    if not 0 < p < 65536:
        raise ValueError(f"smarthost: port {p} out of range")
    return host, p


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _addresses(value: Any, what: str) -> list[str]:
    raw = [value] if isinstance(value, str) else list(value or [])
    out = [addr for _, addr in getaddresses([str(v) for v in raw]) if addr]
    bad = [a for a in out if "@" not in a]
    if not out or bad:
        raise ValueError(f"{what}: need e-mail addresses, got {raw!r}")
    return out


class EmailChannel(Channel):
    type = "email"
    template = "email"
    fields = ("subject", "text", "html")
    default_rate_limit: ClassVar[RateLimit] = RateLimit(30, 60.0)
    default_send_resolved = False  # AlertManager's email default
    required_options: ClassVar[tuple[str, ...]] = ("smarthost", "from", "to")
    secret_options = ("auth_password",)
    options_schema: ClassVar[dict[str, Any]] = {
        "smarthost": {"type": "string", "description": "SMTP server host:port"},
        "from": {"type": "string", "minLength": 3},
        "to": {
            "oneOf": [{"type": "string", "minLength": 3}, {"type": "array", "items": {"type": "string"}, "minItems": 1}],
            "description": "recipients (list, or one comma-separated string)",
        },
        "hello": {"type": "string", "description": "EHLO name (default: local host name)"},
        "auth_username": {"type": "string"},
        "auth_password": {"type": "string", "description": "secret; or auth_password_file"},
        "require_tls": {"type": "boolean", "description": "STARTTLS required (default true unless the smarthost is loopback)"},
        "force_implicit_tls": {"type": "boolean", "description": "TLS from the first byte (default: port 465)"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "max_bytes": {"type": "integer", "minimum": 1024, "description": f"message size limit (default {DEFAULT_MAX_BYTES})"},
    }

    def __init__(self, name: str, options: dict[str, Any]):
        super().__init__(name, options)
        self.host, self.port = parse_smarthost(str(options.get("smarthost") or ""))
        self.sender = _addresses(options.get("from"), "from")[0]
        self.recipients = _addresses(options.get("to"), "to")
        self.from_header = str(options.get("from"))
        self.hello = options.get("hello") or None
        self.username = options.get("auth_username") or None
        self.password = options.get("auth_password") or ""
        if self.username and not self.password:
            raise ValueError("auth_username is set but auth_password (or auth_password_file) is not")
        self.implicit_tls = bool(options.get("force_implicit_tls", self.port == 465))
        loopback = is_loopback(self.host)
        self.require_tls = bool(options.get("require_tls", not loopback))
        if not self.implicit_tls and not self.require_tls and not loopback:
            raise ValueError(
                f"require_tls: false is only allowed for a loopback smarthost, not {self.host!r} "
                "(credentials and alerts would cross the network in plain text)"
            )
        headers = options.get("headers") or {}
        bad = sorted(k for k in headers if k.lower() in _RESERVED_HEADERS)
        if bad:
            raise ValueError(f"headers: {', '.join(bad)} is set by the channel and cannot be overridden")
        self.headers = {str(k): str(v) for k, v in headers.items()}
        # the target-level ca_file normally arrives as SendContext.ssl_context; direct use (tests) via options
        self.ca_file = options.get("ca_file") or None
        self.max_bytes = int(options.get("max_bytes") or DEFAULT_MAX_BYTES)
        self.domain = self.sender.rsplit("@", 1)[1]

    # -- building ----------------------------------------------------------------------------

    def thread_root_id(self, group_key: str) -> str:
        digest = hashlib.sha256(f"{self.name}\0{group_key}".encode()).hexdigest()[:32]
        return f"<group-{digest}@{self.domain}>"

    def build(self, message: RenderedMessage) -> OutboundRequest:
        meta = message.meta
        key = str(meta.get("idempotency_key", "")) or "message"
        group_key = str(meta.get("group_key", ""))
        root = self.thread_root_id(group_key)
        msg = EmailMessage()
        msg["From"] = self.from_header
        msg["To"] = ", ".join(self.recipients)
        msg["Subject"] = " ".join(message["subject"].split()) or "alert"
        msg["Message-ID"] = f"<{key}.{hashlib.sha256(self.name.encode()).hexdigest()[:8]}@{self.domain}>"
        msg["In-Reply-To"] = root
        msg["References"] = root
        msg["Thread-Topic"] = _thread_topic(meta)
        msg["X-AgentMon-Status"] = str(meta.get("status", ""))
        msg["X-AgentMon-Notification"] = ", ".join(meta.get("notification_ids", ()))
        for k, v in self.headers.items():
            msg[k] = v
        msg.set_content(message["text"] or message["subject"], charset="utf-8")
        if message["html"]:
            msg.add_alternative(message["html"], subtype="html", charset="utf-8")
            msg.set_boundary(f"agentmon-{hashlib.sha256(key.encode()).hexdigest()[:24]}")
        return OutboundRequest(payload=msg, data=msg.as_bytes())

    def oversize(self, request: OutboundRequest) -> str | None:
        size = len(request.body_bytes())
        return f"message is {size} bytes, max_bytes is {self.max_bytes}" if size > self.max_bytes else None

    def truncate(self, message: RenderedMessage) -> RenderedMessage:
        """Cut the text part (UTF-8-safe) and drop HTML that would not fit (a cut tag soup helps nobody)."""
        room = max(256, self.max_bytes // 2 - 4096)
        html = message["html"] if len(message["html"].encode("utf-8")) <= room else ""
        return replace(message, fields={**message.fields, "text": truncate_bytes(message["text"], room), "html": html})

    # -- sending -----------------------------------------------------------------------------

    def tls_context(self, ctx: SendContext) -> ssl.SSLContext:
        given = getattr(ctx, "ssl_context", None)
        if isinstance(given, ssl.SSLContext):
            return given
        return ssl.create_default_context(cafile=self.ca_file) if self.ca_file else ssl.create_default_context()

    async def send(self, ctx: SendContext, request: OutboundRequest) -> SendResult:
        msg: EmailMessage = copy.deepcopy(request.payload)  # the request may be retried: keep it pristine
        if "Date" not in msg:
            msg["Date"] = formatdate(localtime=False, usegmt=True)
        tls = self.implicit_tls or self.require_tls
        smtp = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            local_hostname=self.hello,
            use_tls=self.implicit_tls,
            start_tls=self.require_tls and not self.implicit_tls,
            tls_context=self.tls_context(ctx) if tls else None,
            timeout=ctx.timeout,
        )
        where = f"{self.host}:{self.port}"
        try:
            async with smtp:
                if self.username:
                    await smtp.login(self.username, self.password)
                refused, _ = await smtp.send_message(msg, sender=self.sender, recipients=self.recipients)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            reason = f"SMTP {where} refused all recipients: {detail}"
            return RetryableFailure(reason) if any(400 <= c < 500 for c in codes) else PermanentFailure(reason)
        except aiosmtplib.SMTPResponseException as exc:
            reason = f"SMTP {where} answered {exc.code} {redact_text(exc.message)}"
            if isinstance(exc, aiosmtplib.SMTPAuthenticationError) or exc.code >= 500:
                return PermanentFailure(reason)
            return RetryableFailure(reason)
        except ssl.SSLCertVerificationError as exc:
            return PermanentFailure(f"SMTP {where}: TLS certificate not trusted: {exc.verify_message or exc}")
        except (*_TRANSIENT, OSError, TimeoutError) as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, ssl.SSLCertVerificationError):
                return PermanentFailure(f"SMTP {where}: TLS certificate not trusted: {cause.verify_message or cause}")
            return RetryableFailure(f"SMTP {where}: {type(exc).__name__}: {exc}")
        except aiosmtplib.SMTPException as exc:  # protocol/config: no STARTTLS, no AUTH offered...
            return PermanentFailure(f"SMTP {where}: {exc}")
        if refused:
            detail = "; ".join(f"{addr}: {resp.code} {resp.message}" for addr, resp in refused.items())
            return Delivered(f"accepted by {where}, some recipients refused: {detail}")
        return Delivered(f"accepted by {where} for {len(self.recipients)} recipient(s)")


def _thread_topic(meta: Any) -> str:
    notes = meta.get("notifications") or [{}]
    first = notes[0]
    labels = first.get("groupLabels") or {}
    if labels:
        return "alerts: " + " ".join(f"{k}={v}" for k, v in sorted(labels.items()))
    names = sorted({a.get("labels", {}).get("alertname", "") for a in first.get("alerts", [])} - {""})
    return "alerts: " + (" ".join(names) or str(meta.get("group_key", "")))
