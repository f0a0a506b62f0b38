"""Notification ⇄ JSON-able dict: how the outbox stores notifications and the API shows them.

Field names are the dataclass names (snake_case); timestamps are ISO 8601 with offset, None for
AlertManager's zero time. ``notification_from_dict(notification_to_dict(n)) == n``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from receiver.model import Alert, Notification


def _ts(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def alert_to_dict(a: Alert) -> dict[str, Any]:
    return {
        "status": a.status,
        "labels": a.labels,
        "annotations": a.annotations,
        "starts_at": _ts(a.starts_at),
        "ends_at": _ts(a.ends_at),
        "generator_url": a.generator_url,
        "fingerprint": a.fingerprint,
        "extra": a.extra,
    }


def notification_to_dict(n: Notification) -> dict[str, Any]:
    return {
        "id": n.id,
        "route": n.route,
        "version": n.version,
        "group_key": n.group_key,
        "status": n.status,
        "receiver": n.receiver,
        "group_labels": n.group_labels,
        "common_labels": n.common_labels,
        "common_annotations": n.common_annotations,
        "external_url": n.external_url,
        "truncated_alerts": n.truncated_alerts,
        "alerts": [alert_to_dict(a) for a in n.alerts],
        "received_at": _ts(n.received_at),
        "extra": n.extra,
    }


def notification_from_dict(d: dict[str, Any]) -> Notification:
    return Notification(
        id=d["id"],
        route=d["route"],
        version=d["version"],
        group_key=d["group_key"],
        status=d["status"],
        receiver=d["receiver"],
        group_labels=d["group_labels"],
        common_labels=d["common_labels"],
        common_annotations=d["common_annotations"],
        external_url=d["external_url"],
        truncated_alerts=d["truncated_alerts"],
        alerts=[
            Alert(
                status=a["status"],
                labels=a["labels"],
                annotations=a["annotations"],
                starts_at=_parse_ts(a["starts_at"]),
                ends_at=_parse_ts(a["ends_at"]),
                generator_url=a["generator_url"],
                fingerprint=a["fingerprint"],
                extra=a.get("extra", {}),
            )
            for a in d["alerts"]
        ],
        received_at=_parse_ts(d["received_at"]),  # type: ignore[arg-type]
        extra=d.get("extra", {}),
    )
