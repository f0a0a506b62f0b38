"""Ingest: every shared fixture accepted or refused with a reason; refusals store nothing."""

from __future__ import annotations

import json
import uuid

import pytest
from helpers import receiver_app
from helpers.receiver import FIXTURES, body, payload

from receiver.ingest import IngestError, fingerprint, ingest, new_id, prepare, unescape_receiver

CONFIG = """
routes:
  critical: [hook]
  warning: [hook]
targets:
  hook: {{type: testsink, url: "{url}"}}
max_body_bytes: 20000
"""
JSON = {"Content-Type": "application/json"}
make_receiver, sink = receiver_app.make_receiver, receiver_app.sink  # fixtures

FIXTURE_FILES = sorted(FIXTURES.glob("*.json"))


def test_fixtures_present():
    assert len(FIXTURE_FILES) == 17, "shared fixtures missing: expected ../shared/fixtures/alertmanager-payloads"


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.stem)
def test_every_shared_fixture_is_accepted_and_normalized(path):
    raw = path.read_bytes()
    doc = json.loads(raw)
    n = ingest(raw, "application/json", "critical")
    assert len(n.alerts) == len(doc["alerts"])
    assert n.status in ("firing", "resolved")
    assert n.status == ("firing" if any(a.status == "firing" for a in n.alerts) else "resolved")
    for a, src in zip(n.alerts, doc["alerts"], strict=True):
        assert a.status in ("firing", "resolved")
        assert len(a.fingerprint) == 16 and int(a.fingerprint, 16) >= 0
        if src.get("fingerprint"):
            assert a.fingerprint == src["fingerprint"]
        assert a.starts_at is None or a.starts_at.tzinfo is not None
        if src.get("endsAt", "").startswith("0001-01-01"):
            assert a.ends_at is None
        # unknown per-alert fields survive
        assert set(a.extra) == set(src) - {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
    assert isinstance(n.group_key, str)


def test_legacy_numeric_group_key_above_int64_is_exact():
    n = ingest((FIXTURES / "inCaller__prometheus_bot__simpe.json").read_bytes(), None, "r")
    assert n.group_key == "43434343434343434343"
    assert n.version == "3"
    prod = ingest((FIXTURES / "inCaller__prometheus_bot__production_example.json").read_bytes(), None, "r")
    assert (prod.version, prod.group_key) == ("0", "0")
    assert prod.alerts[0].extra == {"sendsAt": ""}
    # the accept path parses with orjson, which would turn that integer into a float
    assert prepare((FIXTURES / "inCaller__prometheus_bot__simpe.json").read_bytes(), None, "r").group_key == \
        "43434343434343434343"


def test_notification_ids_are_uuid4_hex():
    ids = {new_id() for _ in range(2000)}
    assert len(ids) == 2000
    for i in list(ids)[:200]:
        u = uuid.UUID(i)
        assert u.hex == i and u.version == 4 and u.variant == uuid.RFC_4122


def test_nanoseconds_and_offsets():
    n = ingest((FIXTURES / "prometheus-msteams__prometheus-msteams__prom_post_request.json").read_bytes(), None, "r")
    a = n.alerts[0]
    assert a.starts_at.utcoffset().total_seconds() == -5 * 3600
    assert (a.starts_at.hour, a.starts_at.microsecond) == (6, 873077)
    assert a.ends_at is None and a.status == "firing"  # zero endsAt, no status → firing


def test_missing_status_derived_from_group_and_end_time():
    noend = ingest((FIXTURES / "inCaller__prometheus_bot__noGenURL.json").read_bytes(), None, "r")
    assert {a.status for a in noend.alerts} == {"resolved"}  # group says resolved, alerts say nothing
    # without_mandatory_field: no top-level or alert status, endsAt in the past → resolved
    n = ingest((FIXTURES / "idealista__prom2teams__without_mandatory_field.json").read_bytes(), None, "r")
    assert n.status == "resolved" and n.alerts[0].status == "resolved"
    assert n.alerts[0].name == ""  # no alertname: accepted, templates show the labels


def test_computed_fingerprint_matches_alertmanager():
    # AlertManager (prometheus/common model.LabelSet.Fingerprint) for {alertname="up"} and {}
    assert fingerprint({}) == "cbf29ce484222325"
    n = ingest((FIXTURES / "idealista__prom2teams__without_fingerprint.json").read_bytes(), None, "r")
    assert n.alerts[0].fingerprint == fingerprint(n.alerts[0].labels)
    assert fingerprint({"a": "1", "b": "2"}) == fingerprint({"b": "2", "a": "1"})
    assert fingerprint({"a": "1"}) != fingerprint({"a": "2"})


def test_receiver_unescaped_and_unknown_fields_kept():
    doc = payload(notification_reason="first notification", routeLabels={"team": "ops"}, orgId=1, title="[FIRING:1]")
    doc["alerts"][0]["values"] = {"B": 1.5}
    n = ingest(body(doc), "application/json", "r")
    assert n.receiver == "web.hook"
    assert n.extra == {"notification_reason": "first notification", "routeLabels": {"team": "ops"}, "orgId": 1,
                       "title": "[FIRING:1]"}
    assert n.alerts[0].extra == {"values": {"B": 1.5}}
    assert unescape_receiver(r"team\-a\.b\*") == "team-a.b*"


def test_grafana_v1_superset_accepted():
    doc = payload(version="1", state="alerting", message="x")
    doc["alerts"][0].update(silenceURL="http://grafana/s", dashboardURL="", valueString="[ var='B' value=1 ]")
    n = ingest(body(doc), "application/json; charset=utf-8", "r")
    assert n.version == "1" and n.extra["state"] == "alerting"
    assert n.alerts[0].extra["silenceURL"] == "http://grafana/s"


@pytest.mark.parametrize(
    ("data", "ctype", "status", "reason", "needle"),
    [
        (b"{not json", "application/json", 400, "not_json", "not valid JSON"),
        (b"", "application/json", 400, "not_json", "empty"),
        (b"\xff\xfe", "application/json", 400, "not_json", "not UTF-8"),
        (b"{}", "application/x-www-form-urlencoded", 415, "wrong_content_type", "application/json"),
        (body([{"labels": {"alertname": "x"}}]), "application/json", 400, "json_array", "Prometheus"),
        (b'"hello"', "application/json", 400, "schema", "expected an object"),
        (b'{"version": "4"}', "application/json", 400, "schema", "'alerts' is a required property"),
        (body({"alerts": []}), "application/json", 400, "schema", "field alerts"),
        (body({"alerts": [{"annotations": {}}]}), "application/json", 400, "schema", "alerts[0]"),
        (body({"alerts": [{"labels": {"a": "b"}, "startsAt": 5}]}), "application/json", 400, "schema", "alerts[0].startsAt"),
        (body({"alerts": [{"labels": {"a": "b"}, "startsAt": "yesterday"}]}), None, 400, "schema", "alerts[0].startsAt"),
        (body({"status": "broken", "alerts": [{"labels": {}}]}), None, 400, "schema", "field status"),
    ],
    ids=["bad-json", "empty", "not-utf8", "form", "prometheus-array", "string", "no-alerts", "zero-alerts",
         "no-labels", "ts-type", "ts-format", "bad-status"],
)
def test_refusals_name_the_problem(data, ctype, status, reason, needle):
    with pytest.raises(IngestError) as e:
        ingest(data, ctype, "r")
    assert (e.value.status, e.value.reason) == (status, reason)
    assert needle in e.value.message


async def test_http_refusals_store_nothing(make_receiver, sink):
    rt, client = await make_receiver(CONFIG.format(url=sink.url))
    cases = [
        ("/alerts/critical", b"{oops", JSON, 400, "not_json"),
        ("/alerts/critical", b"{}", {"Content-Type": "text/plain"}, 415, "wrong_content_type"),
        ("/alerts/critical", body([{"labels": {}}]), JSON, 400, "json_array"),
        ("/alerts/nope", body(payload()), JSON, 404, "unknown_route"),
        ("/alerts/critical", body(payload(n_alerts=200)), JSON, 413, "too_large"),
        ("/alerts/critical", body({"alerts": [{"labels": "x"}]}), JSON, 400, "schema"),
    ]
    for path, data, headers, status, reason in cases:
        resp = await client.post(path, data=data, headers=headers)
        doc = await resp.json()
        assert resp.status == status, (path, status, doc)
        assert doc["status"] == "error" and doc["errorType"] == reason and doc["error"]
    unknown = await (await client.post("/alerts/nope", data=body(payload()), headers=JSON)).json()
    assert "/alerts/critical" in unknown["error"] and "/alerts/warning" in unknown["error"]
    assert await rt.store.counts() == {"notifications": 0}
    metrics = await (await client.get("/metrics")).text()
    for reason in ("not_json", "wrong_content_type", "json_array", "too_large", "schema"):
        assert f'alert_receiver_notifications_rejected_total{{reason="{reason}"}} 1.0' in metrics
    assert 'alert_receiver_notifications_rejected_total{reason="unknown_route"} 2.0' in metrics
    assert sink.requests == []


async def test_http_too_large_chunked_body_without_length(make_receiver, sink):
    rt, client = await make_receiver(CONFIG.format(url=sink.url))

    async def gen():
        for _ in range(10):
            yield b" " * 5000

    resp = await client.post("/alerts/critical", data=gen(), headers=JSON)
    assert resp.status == 413
    assert await rt.store.counts() == {"notifications": 0}


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.stem)
async def test_every_fixture_over_http(make_receiver, sink, path):
    rt, client = await make_receiver(CONFIG.format(url=sink.url).replace("max_body_bytes: 20000", ""))
    resp = await client.post("/alerts/critical", data=path.read_bytes(), headers=JSON)
    doc = await resp.json()
    assert resp.status == 200, doc
    assert doc["deduplicated"] is False and doc["targets"] == ["hook"]
    assert await sink.async_wait_for(lambda s: doc["id"] in s.delivered_ids(), 10)


def _variants():
    """Valid and invalid documents around every rule of the schema."""
    base = payload(n_alerts=2)
    yield base
    for path in FIXTURE_FILES:
        yield json.loads(path.read_bytes())
    bad_values = [None, 1, 1.5, True, "x", [], {}, {"a": 1}, {"a": None}, {"a": [1]}, -1, "firing"]
    for key in ("version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels", "commonLabels",
                "commonAnnotations", "externalURL", "alerts"):
        for value in bad_values:
            yield {**base, key: value}
    for key in ("status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"):
        for value in bad_values:
            yield {**base, "alerts": [{**base["alerts"][0], key: value}]}
    yield {**base, "alerts": [{k: v for k, v in base["alerts"][0].items() if k != "labels"}]}
    yield {**base, "alerts": ["not an object"]}


def test_fast_check_never_accepts_what_the_schema_refuses():
    from receiver.ingest import _VALIDATOR, conforms

    checked = agreed = 0
    for doc in _variants():
        checked += 1
        if conforms(doc):
            assert _VALIDATOR.is_valid(doc), doc
        agreed += conforms(doc) == _VALIDATOR.is_valid(doc)
    assert checked > 150 and agreed / checked > 0.95  # and it is rarely stricter than it needs to be


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.stem)
def test_stored_form_restores_the_same_notification(path):
    """The outbox keeps the payload as received; delivery normalizes it to what ingest would give."""
    from datetime import UTC, datetime

    from receiver.ingest import prepare

    now = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    acc = prepare(path.read_bytes(), "application/json", "critical", now=now)
    n = ingest(path.read_bytes(), "application/json", "critical", now=now)
    restored = acc.notification()
    assert restored == type(n)(**{**vars(n), "id": acc.id})
    assert acc.status == n.status and acc.group_key == n.group_key
    again = prepare(path.read_bytes(), "application/json", "critical", now=now)
    assert again.dedup_key == acc.dedup_key and again.id != acc.id
    other_route = prepare(path.read_bytes(), "application/json", "warning", now=now)
    assert other_route.dedup_key != acc.dedup_key
