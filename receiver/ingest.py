"""Turn an HTTP body into a ``Notification``, or refuse it with a status and a clear reason.

Tolerant the way real AlertManager/Grafana/legacy payloads require (see docs/receiver.md):
unknown fields are kept in ``extra``, ``receiver`` is un-escaped (AM applies regexp.QuoteMeta),
timestamps may carry nanoseconds and any offset, Go's zero time means "no end", numeric (even
beyond int64) ``groupKey`` becomes its exact decimal string (Python ints are unbounded), missing
fingerprints are computed like AlertManager does and missing statuses are derived.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import orjson

from receiver.model import Alert, Notification

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "alertmanager-webhook.schema.json").read_text("utf-8"))
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

_KNOWN_TOP = {
    "version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels", "commonLabels",
    "commonAnnotations", "externalURL", "alerts",
}
_KNOWN_ALERT = {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
_JSON_TYPES = ("application/json", "text/json")

PROMETHEUS_ARRAY_HINT = (
    "the body is a JSON array, not an AlertManager webhook notification (a JSON object with an "
    "'alerts' list). This is what Prometheus itself sends to AlertManager's /api/v2/alerts: point "
    "Prometheus at AlertManager (alerting.alertmanagers) and give AlertManager a receiver with "
    "webhook_configs: [{url: 'http://<this host>/alerts/<route>'}]"
)


@dataclass
class IngestError(Exception):
    """A refused request: HTTP status, the ``reason`` label of the rejected metric, a message."""

    status: int
    reason: str
    message: str

    def __str__(self) -> str:
        return self.message


def check_content_type(content_type: str | None) -> None:
    """JSON (or no content type at all, as some hand-written senders do) is accepted; forms are not."""
    if not content_type:
        return
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime in _JSON_TYPES or mime.endswith("+json"):
        return
    raise IngestError(
        415, "wrong_content_type",
        f"unsupported Content-Type {mime!r}: send the notification as application/json "
        "(with curl: -H 'Content-Type: application/json')",
    )


def _decode(body: bytes) -> str:
    bom = 3 if body.startswith(b"\xef\xbb\xbf") else 0  # bytes.decode("utf-8-sig") runs a Python-level codec
    try:
        text = (body[3:] if bom else body).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IngestError(400, "not_json", f"the body is not valid JSON: not UTF-8 at byte {exc.start + bom}") from None
    if not text.strip():
        raise IngestError(400, "not_json", "the body is empty: expected an AlertManager webhook notification (JSON)")
    return text


def _loads(text: str) -> Any:
    """orjson (several times faster), except where it is not exact: it turns an integer beyond 64 bits
    into a float, and a legacy numeric ``groupKey`` can be that big, so a top-level float (which no
    AlertManager field is) means parsing again with the json module. The stored payload is the raw
    text either way. The json module also words the error message."""
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    else:
        if not (isinstance(doc, dict) and any(type(v) is float for v in doc.values())):
            return doc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise IngestError(
            400, "not_json", f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None


def parse_json(body: bytes) -> Any:
    """Decode UTF-8 JSON; integers of any size stay exact (Python ints)."""
    return _loads(_decode(body))


def validate(doc: Any) -> None:
    if isinstance(doc, list):
        raise IngestError(400, "json_array", PROMETHEUS_ARRAY_HINT)
    if not isinstance(doc, dict):
        raise IngestError(400, "schema", f"the body is a JSON {type(doc).__name__}, expected an object with an 'alerts' list")
    if conforms(doc):  # fast path; the full JSON Schema runs only to explain a refusal
        return
    errors = list(_VALIDATOR.iter_errors(doc))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        where = _format_path(err.absolute_path)
        if err.validator == "required":
            raise IngestError(400, "schema", f"payload does not match the AlertManager webhook schema: {where or 'top level'}: {err.message}")
        raise IngestError(
            400, "schema", f"payload does not match the AlertManager webhook schema: field {where or '<root>'}: {err.message}"
        )


_SCALARS = (str, int, float, bool)
_STATUSES = ("firing", "resolved", None)


def _kv_ok(value: Any) -> bool:
    return value is None or (isinstance(value, dict) and all(type(v) in _SCALARS for v in value.values()))


def _opt_str(obj: Mapping[str, Any], key: str) -> bool:
    v = obj.get(key)
    return v is None or type(v) is str


def conforms(doc: Any) -> bool:
    """Hand-written equivalent of alertmanager-webhook.schema.json, ~50x faster than jsonschema.

    It may only be *stricter* than the schema (a False falls through to the real validator, which
    either accepts or names the problem); tests check it never accepts what the schema refuses.
    """
    if type(doc) is not dict:
        return False
    alerts = doc.get("alerts")
    if type(alerts) is not list or not alerts:
        return False
    for key in ("version", "groupKey"):
        if key in doc and type(doc[key]) not in (str, int):
            return False
    t = doc.get("truncatedAlerts")
    if t is not None and (type(t) is not int or t < 0):
        return False
    if doc.get("status") not in _STATUSES or not (_opt_str(doc, "receiver") and _opt_str(doc, "externalURL")):
        return False
    if not (_kv_ok(doc.get("groupLabels")) and _kv_ok(doc.get("commonLabels")) and _kv_ok(doc.get("commonAnnotations"))):
        return False
    for a in alerts:
        if type(a) is not dict or "labels" not in a or not _kv_ok(a["labels"]) or not _kv_ok(a.get("annotations")):
            return False
        if a.get("status") not in _STATUSES:
            return False
        for key in ("startsAt", "endsAt", "generatorURL", "fingerprint"):
            if not _opt_str(a, key):
                return False
    return True


def _format_path(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# -- normalization ---------------------------------------------------------------------------------

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_SEP = 255


def fingerprint(labels: Mapping[str, str]) -> str:
    """AlertManager's alert fingerprint: FNV-1a 64 over sorted name/value pairs, 0xff-separated, 16 hex."""
    h = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for b in part.encode("utf-8"):
                h = ((h ^ b) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
            h = ((h ^ _SEP) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


_UNQUOTE = re.compile(r"\\(.)", re.S)


def unescape_receiver(name: str) -> str:
    """Undo Go's regexp.QuoteMeta (AM sends ``web\\.hook`` for receiver ``web.hook``)."""
    return _UNQUOTE.sub(r"\1", name)


def _kv(value: Mapping[str, Any] | None) -> dict[str, str]:
    if not value:
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


def _timestamp(value: str | None, where: str) -> datetime | None:
    """RFC 3339 with 0–9 fractional digits and any offset; Go's zero time (year 1) → None."""
    if not value:
        return None
    try:
        ts = datetime.fromisoformat(value.strip())
    except ValueError:
        raise IngestError(400, "schema", f"payload does not match the AlertManager webhook schema: field {where}: "
                          f"not an RFC 3339 timestamp: {value[:64]!r}") from None
    if ts.year <= 1:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _alert_status(raw: Mapping[str, Any], ends: datetime | None, group_status: str | None, now: datetime) -> str:
    """The alert's own status, else from endsAt (past → resolved), else the group's, else firing."""
    status = raw.get("status")
    if status is not None:
        return status
    if ends is not None:
        return "resolved" if ends <= now else "firing"
    return group_status or "firing"


def normalize(doc: Mapping[str, Any], route: str, *, now: datetime | None = None, id: str | None = None) -> Notification:
    """A validated payload → Notification (call ``validate`` first). ``now`` is the accept time."""
    now = now or datetime.now(UTC)
    group_status = doc.get("status")
    alerts: list[Alert] = []
    for i, raw in enumerate(doc["alerts"]):
        labels = _kv(raw.get("labels"))
        starts = _timestamp(raw.get("startsAt"), f"alerts[{i}].startsAt")
        ends = _timestamp(raw.get("endsAt"), f"alerts[{i}].endsAt")
        alerts.append(
            Alert(
                status=_alert_status(raw, ends, group_status, now),
                labels=labels,
                annotations=_kv(raw.get("annotations")),
                starts_at=starts,
                ends_at=ends,
                generator_url=raw.get("generatorURL") or "",
                fingerprint=raw.get("fingerprint") or fingerprint(labels),
                extra={k: v for k, v in raw.items() if k not in _KNOWN_ALERT},
            )
        )
    status = "firing" if any(a.status == "firing" for a in alerts) else "resolved"
    group_key = doc.get("groupKey")
    return Notification(
        id=id or new_id(),
        route=route,
        version=str(doc.get("version", "")),
        group_key="" if group_key is None else str(group_key),
        status=status,
        receiver=unescape_receiver(doc.get("receiver") or ""),
        group_labels=_kv(doc.get("groupLabels")),
        common_labels=_kv(doc.get("commonLabels")),
        common_annotations=_kv(doc.get("commonAnnotations")),
        external_url=doc.get("externalURL") or "",
        truncated_alerts=int(doc.get("truncatedAlerts") or 0),
        alerts=alerts,
        received_at=now,
        extra={k: v for k, v in doc.items() if k not in _KNOWN_TOP},
    )


@dataclass(frozen=True)
class Accepted:
    """A validated payload ready for the outbox: the raw JSON is stored as received (nothing the
    sender wrote is lost) and normalized into a ``Notification`` when it is delivered."""

    id: str
    route: str
    status: str  # firing | resolved (derived exactly as normalize() does)
    group_key: str
    dedup_key: str
    received_at: datetime
    raw: str  # the JSON text as received

    def notification(self) -> Notification:
        return restore(self.raw, self.route, self.id, self.received_at)


def restore(raw: str, route: str, id: str, received_at: datetime) -> Notification:
    """The stored form back into a Notification (same result as at accept time)."""
    return normalize(json.loads(raw), route, now=received_at, id=id)


def prepare(body: bytes, content_type: str | None, route: str, *, now: datetime | None = None) -> Accepted:
    """Everything ``ingest`` checks, without building the Notification (the fast accept path)."""
    check_content_type(content_type)
    text = _decode(body)
    doc = _loads(text)
    validate(doc)
    now = now or datetime.now(UTC)
    group_status = doc.get("status")
    firing = False
    alerts = []
    for i, a in enumerate(doc["alerts"]):
        starts_raw, ends_raw = a.get("startsAt"), a.get("endsAt")
        _timestamp(starts_raw, f"alerts[{i}].startsAt")
        ends = _timestamp(ends_raw, f"alerts[{i}].endsAt")
        status = _alert_status(a, ends, group_status, now)
        firing = firing or status == "firing"
        fp = a.get("fingerprint") or fingerprint(_kv(a.get("labels")))
        alerts.append((fp, status, starts_raw or "", "" if ends is None else ends_raw))
    status = "firing" if firing else "resolved"
    group_key = doc.get("groupKey")
    group_key = "" if group_key is None else str(group_key)
    key = orjson.dumps([route, group_key, status, sorted(alerts)])
    return Accepted(
        id=new_id(), route=route, status=status, group_key=group_key,
        dedup_key=hashlib.sha256(key).hexdigest(), received_at=now, raw=text,
    )


_ids = random.Random()  # seeded from os.urandom once; uuid4() reads urandom on every call


_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant


def new_id() -> str:
    """A random 128-bit id (uuid4 layout, hex) for a notification: the idempotency key downstream."""
    return f"{(_ids.getrandbits(128) & _UUID4_CLEAR) | _UUID4_SET:032x}"


def ingest(body: bytes, content_type: str | None, route: str, *, now: datetime | None = None) -> Notification:
    """Content type → JSON → schema → Notification; raises IngestError with status and reason."""
    check_content_type(content_type)
    doc = parse_json(body)
    validate(doc)
    return normalize(doc, route, now=now)
