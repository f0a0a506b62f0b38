"""The normalized notification: what ingest produces, the store persists and templates render.

AlertManager's webhook payload (v4) is normalized once at ingest (``receiver.ingest``) into these
types; everything downstream relies on them and never on the raw JSON shape. ``raw`` keeps unknown
fields so nothing the sender added is lost (Grafana's superset, ``routeLabels``...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class Alert:
    status: str  # "firing" | "resolved" (derived when the payload lacks it)
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime | None  # timezone-aware
    ends_at: datetime | None  # None for Go's zero time 0001-01-01T00:00:00Z
    generator_url: str
    fingerprint: str  # computed from the labels when the payload lacks it
    extra: dict[str, Any] = field(default_factory=dict)  # unknown per-alert fields, kept verbatim

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")


@dataclass
class Notification:
    """One AlertManager notification (one alert group) addressed to one route."""

    id: str  # stable id assigned at ingest (uuid4 hex); the idempotency key downstream
    route: str
    version: str
    group_key: str  # always a string, even when the payload sent a (huge) number
    status: str  # "firing" if any alert fires, else "resolved"
    receiver: str  # AlertManager receiver name, regex escaping removed
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    common_annotations: dict[str, str]
    external_url: str
    truncated_alerts: int
    alerts: list[Alert]
    received_at: datetime  # when we accepted it (UTC)
    extra: dict[str, Any] = field(default_factory=dict)  # unknown top-level fields, kept verbatim

    @property
    def firing(self) -> list[Alert]:
        return [a for a in self.alerts if a.status == "firing"]

    @property
    def resolved(self) -> list[Alert]:
        return [a for a in self.alerts if a.status == "resolved"]
