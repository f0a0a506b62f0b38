"""Message composition: notification(s) + template + channel → one OutboundRequest that fits.

Steps (docs/templates.md): build the template context (one notification, or a digest of several),
render the channel's fields with the target's template (falling back to the built-in template
when a custom one fails, so an alert is never lost to a template bug), ``build()`` the request,
and if the channel says it is oversize, render again with fewer alerts and "…and N more" until it
fits; last resort is the channel's UTF-8-safe ``truncate()``. An oversize request is never returned.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any, Protocol

from agentmon.redact import redact_url
from receiver.channels.base import Channel, OutboundRequest, RenderedMessage
from receiver.model import Alert, Notification
from receiver.templating import (
    DEFAULT_TIME_FORMAT,
    SEVERITY_RANK,
    WORDS,
    TemplateProblem,
    Templates,
    build_alertmanager_url,
    build_silence_url,
    format_time,
    get_zone,
    highest_severity,
    importance_key,
    normalize_severity,
    short_duration,
    sorted_pairs,
)

log = logging.getLogger("receiver.compose")


class TargetLike(Protocol):
    """The parts of ``receiver.config.TargetConfig`` composition needs."""

    name: str
    type: str
    template: str | None
    language: str
    timezone: str | None


class MessageTooLarge(Exception):
    """Even a truncated one-alert message breaks the channel's size limit."""


# ---------------------------------------------------------------------------------------------
# Serialization (the webhook channel posts this; meta["notifications"])
# ---------------------------------------------------------------------------------------------

ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(dt: datetime | None) -> str:
    if dt is None:
        return ZERO_TIME
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def alert_to_dict(a: Alert) -> dict[str, Any]:
    return {
        "status": a.status,
        "labels": dict(a.labels),
        "annotations": dict(a.annotations),
        "startsAt": rfc3339(a.starts_at),
        "endsAt": rfc3339(a.ends_at),
        "generatorURL": a.generator_url,
        "fingerprint": a.fingerprint,
    }


def notification_to_dict(n: Notification) -> dict[str, Any]:
    """AlertManager webhook (v4) shape plus our ``id``, ``route`` and ``receivedAt``.

    A consumer that parses AlertManager webhooks parses this too; timestamps are normalized to
    UTC RFC3339, ``endsAt`` of firing alerts is Go's zero time like AlertManager sends it.
    """
    return {
        "version": "4",
        "id": n.id,
        "route": n.route,
        "groupKey": n.group_key,
        "status": n.status,
        "receiver": n.receiver,
        "groupLabels": dict(n.group_labels),
        "commonLabels": dict(n.common_labels),
        "commonAnnotations": dict(n.common_annotations),
        "externalURL": n.external_url,
        "truncatedAlerts": n.truncated_alerts,
        "alerts": [alert_to_dict(a) for a in n.alerts],
        "receivedAt": rfc3339(n.received_at),
    }


def idempotency_key(notifications: Sequence[Notification]) -> str:
    """The notification id; for a digest, sha256 over the sorted ids (same set → same key)."""
    if len(notifications) == 1:
        return notifications[0].id
    return hashlib.sha256("\n".join(sorted(n.id for n in notifications)).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Context
# ---------------------------------------------------------------------------------------------


def _common(dicts: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    first = dicts[0]
    return {k: v for k, v in first.items() if all(d.get(k) == v for d in dicts[1:])}


def alert_view(
    a: Alert,
    *,
    common_labels: Mapping[str, str],
    several: bool,
    external_url: str,
    language: str,
    zone: Any,
    now: datetime,
) -> dict[str, Any]:
    """One alert as templates see it (docs/templates.md, "Alert")."""
    ann = a.annotations
    duration: timedelta | None = None
    if a.starts_at is not None:
        if a.status == "resolved" and a.ends_at is not None:
            duration = a.ends_at - a.starts_at
        elif a.status != "resolved":
            duration = now - a.starts_at
        if duration is not None and duration < timedelta(0):
            duration = timedelta(0)
    words = WORDS.get(language, WORDS["en"])
    duration_text = ""
    if duration is not None:
        d = short_duration(duration, language)
        duration_text = (words["lasted"] if a.status == "resolved" else words["firing_for"]).format(d=d)
    skip = {"alertname", "severity"}
    key_labels = [
        (k, v) for k, v in sorted(a.labels.items()) if k not in skip and not (several and common_labels.get(k) == v)
    ]
    return {
        "status": a.status,
        "labels": dict(a.labels),
        "annotations": dict(ann),
        "starts_at": a.starts_at,
        "ends_at": a.ends_at,
        "starts_at_local": format_time(a.starts_at.astimezone(zone), DEFAULT_TIME_FORMAT) if a.starts_at else "",
        "ends_at_local": format_time(a.ends_at.astimezone(zone), DEFAULT_TIME_FORMAT) if a.ends_at else "",
        "generator_url": a.generator_url,
        "fingerprint": a.fingerprint,
        "name": a.name,
        "severity": a.severity,
        "severity_level": normalize_severity(a.severity),
        "summary": ann.get("summary") or ann.get("message") or "",
        "description": ann.get("description", ""),
        "value": ann.get("value", ""),
        "runbook_url": ann.get("runbook_url") or ann.get("runbook") or "",
        "silence_url": build_silence_url(external_url, a.labels),
        "duration": duration,
        "duration_text": duration_text,
        "key_labels": key_labels,
        "label_pairs": sorted_pairs(a.labels),
    }


class MessageContext:
    """Everything about a message except how many alerts are shown (size fitting varies that)."""

    def __init__(
        self,
        notifications: Sequence[Notification],
        *,
        target_name: str,
        target_type: str,
        language: str,
        timezone: str | None,
        now: datetime,
        extra: Mapping[str, Any] | None = None,
    ):
        if not notifications:
            raise ValueError("compose needs at least one notification")
        self.notifications = list(notifications)
        self.language = language if language in WORDS else "en"
        self.timezone = timezone or "UTC"
        zone = get_zone(self.timezone)
        first = self.notifications[0]
        all_alerts = [a for n in self.notifications for a in n.alerts]
        is_digest = len(self.notifications) > 1
        if is_digest:
            common_labels = _common([a.labels for a in all_alerts])
            common_annotations = _common([a.annotations for a in all_alerts])
            group_labels = _common([n.group_labels for n in self.notifications])
        else:
            common_labels, common_annotations = dict(first.common_labels), dict(first.common_annotations)
            group_labels = dict(first.group_labels)
        external_url = next((n.external_url for n in self.notifications if n.external_url), "")
        several = len(all_alerts) > 1
        ordered = sorted(
            (
                (
                    alert_view(
                        a,
                        common_labels=common_labels,
                        several=several,
                        external_url=n.external_url or external_url,
                        language=self.language,
                        zone=zone,
                        now=now,
                    ),
                    (ni, ai),
                )
                for ni, n in enumerate(self.notifications)
                for ai, a in enumerate(n.alerts)
            ),
            key=lambda pair: importance_key(pair[0]),
        )
        self.views = [v for v, _ in ordered]
        self.refs = [r for _, r in ordered]  # (notification index, alert index) of each view
        firing_count = sum(1 for a in all_alerts if a.status == "firing")
        any_firing = firing_count > 0 or any(n.status == "firing" and not n.alerts for n in self.notifications)
        self.status = "firing" if any_firing else "resolved"
        self.severity = highest_severity(a.severity for a in all_alerts)
        self.truncated_alerts = sum(n.truncated_alerts for n in self.notifications)
        self.ids = [n.id for n in self.notifications]
        digest = None
        if is_digest:
            by_name = Counter(a.name for a in all_alerts)
            by_sev = Counter(normalize_severity(a.severity) for a in all_alerts)
            digest = {
                "count": len(self.notifications),
                "notifications": [
                    {
                        "id": n.id,
                        "status": n.status,
                        "group_key": n.group_key,
                        "group_labels": dict(n.group_labels),
                        "common_labels": dict(n.common_labels),
                        "alert_count": len(n.alerts),
                    }
                    for n in self.notifications
                ],
                "counts_by_alertname": sorted(by_name.items(), key=lambda kv: (-kv[1], kv[0])),
                "counts_by_severity": sorted(by_sev.items(), key=lambda kv: (-SEVERITY_RANK.get(kv[0], 0), kv[0])),
                "top_alerts": self.views,
            }
        self.base: dict[str, Any] = {
            **(extra or {}),
            "status": self.status,
            "counts": {"firing": firing_count, "resolved": len(all_alerts) - firing_count, "total": len(all_alerts)},
            "total_alerts": len(all_alerts),
            "truncated_alerts": self.truncated_alerts,
            "group_labels": group_labels,
            "common_labels": common_labels,
            "common_annotations": common_annotations,
            "external_url": external_url,
            "alertmanager_url": build_alertmanager_url(external_url, first.receiver),
            "receiver": first.receiver,
            "group_key": first.group_key,
            "notification_id": first.id,
            "notification_ids": self.ids,
            "severity": self.severity,
            "target": {"name": target_name, "type": target_type},
            "language": self.language,
            "timezone": self.timezone,
            "now": now,
            "digest": digest,
        }

    def shown_notifications(self, shown: int) -> list[dict[str, Any]]:
        """The notifications as dicts with only the ``shown`` alerts; dropped ones are counted in
        ``truncatedAlerts`` (AlertManager's own field for alerts left out)."""
        keep = set(self.refs[:shown])
        out = []
        for ni, n in enumerate(self.notifications):
            d = notification_to_dict(n)
            kept = [a for ai, a in enumerate(d["alerts"]) if (ni, ai) in keep]
            d["truncatedAlerts"] = n.truncated_alerts + len(d["alerts"]) - len(kept)
            d["alerts"] = kept
            out.append(d)
        return out

    def context(self, shown: int) -> dict[str, Any]:
        """The template context showing the ``shown`` most important alerts."""
        alerts = self.views[:shown]
        omitted = len(self.views) - len(alerts)
        ctx = dict(self.base)
        ctx.update(
            alerts=alerts,
            firing=[a for a in alerts if a["status"] == "firing"],
            resolved=[a for a in alerts if a["status"] == "resolved"],
            omitted=omitted,
            more=omitted + self.truncated_alerts,
        )
        if ctx["digest"] is not None:
            ctx["digest"] = {**ctx["digest"], "top_alerts": alerts}
        return ctx


def build_context(
    notifications: Sequence[Notification],
    *,
    target: TargetLike,
    now: datetime,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Full template context with every alert shown (for previews and tests)."""
    mc = MessageContext(
        notifications,
        target_name=target.name,
        target_type=target.type,
        language=target.language,
        timezone=target.timezone,
        now=now,
        extra=extra,
    )
    return mc.context(len(mc.views))


# ---------------------------------------------------------------------------------------------
# compose
# ---------------------------------------------------------------------------------------------


def compose(
    channel: Channel,
    templates: Templates,
    target: TargetLike,
    notifications: Sequence[Notification],
    *,
    on_template_error: Callable[[str], None] = lambda reason: None,
) -> OutboundRequest:
    """Render ``notifications`` (one, or several as a digest) for ``channel`` into a request that fits."""
    return _Composer(channel, templates, target, notifications, on_template_error).run()[1]


def compose_message(
    channel: Channel,
    templates: Templates,
    target: TargetLike,
    notifications: Sequence[Notification],
    *,
    on_template_error: Callable[[str], None] = lambda reason: None,
) -> tuple[RenderedMessage, OutboundRequest]:
    """Like ``compose`` but also returns the final RenderedMessage (tests, previews)."""
    return _Composer(channel, templates, target, notifications, on_template_error).run()


class _Composer:
    def __init__(
        self,
        channel: Channel,
        templates: Templates,
        target: TargetLike,
        notifications: Sequence[Notification],
        on_template_error: Callable[[str], None],
    ):
        self.channel = channel
        self.templates = templates
        self.target = target
        self.notifications = list(notifications)
        self.on_template_error = on_template_error
        self.channel_ctx = dict(channel.template_context(self.notifications) or {})
        self.mc = MessageContext(
            self.notifications,
            target_name=target.name,
            target_type=target.type,
            language=getattr(target, "language", None) or "en",
            timezone=getattr(target, "timezone", None),
            now=templates.clock(),
            extra=self.channel_ctx,
        )
        self.template = getattr(target, "template", None) or channel.template

    def render(self, shown: int) -> RenderedMessage:
        ctx = self.mc.context(shown)
        try:
            fields = self.templates.render(self.template, self.mc.language, self.channel.fields, ctx)
        except TemplateProblem as exc:
            if self.template == self.channel.template:
                raise  # the built-in template is broken: a bug, not user input
            reason = f"target {self.target.name!r}: custom template {self.template!r} failed, using the default: {exc}"
            log.warning("%s", reason)
            self.on_template_error(reason)
            self.template = self.channel.template
            fields = self.templates.render(self.template, self.mc.language, self.channel.fields, ctx)
        meta = {
            **self.channel_ctx,
            "context": self.channel_ctx,
            "status": self.mc.status,
            "severity": self.mc.severity,
            "notification_ids": list(self.mc.ids),
            "idempotency_key": idempotency_key(self.notifications),
            "group_key": self.notifications[0].group_key,
            "notifications": [notification_to_dict(n) for n in self.notifications],
            "notifications_shown": self.mc.shown_notifications(len(ctx["alerts"])),
            "digest": len(self.notifications) > 1,
            "shown_alerts": len(ctx["alerts"]),
            "omitted": ctx["omitted"],
            "target": {"name": self.target.name, "type": self.target.type},
            "language": self.mc.language,
        }
        return RenderedMessage(fields=fields, meta=meta)

    def attempt(self, shown: int) -> tuple[RenderedMessage, OutboundRequest, str | None]:
        msg = self.render(shown)
        req = self.channel.build(msg)
        return msg, req, self.channel.oversize(req)

    def run(self) -> tuple[RenderedMessage, OutboundRequest]:
        total = len(self.mc.views)
        msg, req, why = self.attempt(total)
        if why is None:
            return msg, req
        log.info("target %r: message oversize with %d alerts (%s); shrinking", self.target.name, total, why)
        best: tuple[RenderedMessage, OutboundRequest] | None = None
        lo, hi = 1, total - 1
        while lo <= hi:  # largest number of shown alerts that fits
            mid = (lo + hi) // 2
            m, r, w = self.attempt(mid)
            if w is None:
                best, lo = (m, r), mid + 1
            else:
                hi = mid - 1
        if best is not None:
            return best
        # Not even one alert fits: cut the text of the smallest message.
        m, _, w = self.attempt(min(total, 1))
        cut = self.channel.truncate(m)
        req = self.channel.build(cut)
        why = self.channel.oversize(req)
        if why is not None:
            raise MessageTooLarge(
                f"target {self.target.name!r} ({self.channel.type}): message does not fit even truncated: {why}"
            )
        return cut, req


# ---------------------------------------------------------------------------------------------
# Preview (CLI: alert-receiver template preview)
# ---------------------------------------------------------------------------------------------


def request_body_text(req: OutboundRequest) -> str:
    """The body a channel would send, readable: JSON pretty-printed, an e-mail decoded part by part."""
    if isinstance(req.payload, EmailMessage):
        return email_preview(req.payload)
    if req.json is not None:
        return json.dumps(req.json, ensure_ascii=False, indent=2)
    if req.data is not None:
        try:
            return json.dumps(json.loads(req.data), ensure_ascii=False, indent=2)
        except ValueError:
            return req.data.decode("utf-8", "replace")
    return json.dumps(req.payload, ensure_ascii=False, indent=2, default=str) if req.payload is not None else ""


def render_preview(channel: Channel, templates: Templates, target: TargetLike, notification: Notification) -> str:
    """What ``channel`` would receive for ``notification``: the MIME message for e-mail, the JSON
    body (pretty, preceded by ``POST <url>`` with secrets redacted) for HTTP channels."""
    errors: list[str] = []
    _, req = compose_message(channel, templates, target, [notification], on_template_error=errors.append)
    head = "".join(f"# template error: {e}\n" for e in errors)
    if req.url and not isinstance(req.payload, EmailMessage):
        head += f"{req.method} {redact_url(req.url)}\n\n"
    return head + request_body_text(req)


def email_preview(msg: EmailMessage) -> str:
    """Headers (decoded) and each MIME part decoded — the wire form is quoted-printable."""
    lines = [f"{k}: {v}" for k, v in msg.items()]
    parts = list(msg.iter_parts()) if msg.is_multipart() else [msg]
    for part in parts:
        lines += ["", f"--- {part.get_content_type()} ---", part.get_content().rstrip("\n")]
    return "\n".join(lines) + "\n"
