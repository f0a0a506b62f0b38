"""HTTP surface: auth, dedup, reload, status pages without secrets, store failures → 5xx, metrics."""

from __future__ import annotations

import asyncio
import base64
import re
from pathlib import Path

from helpers import receiver_app
from helpers.receiver import body, payload

make_receiver, sink = receiver_app.make_receiver, receiver_app.sink  # fixtures
JSON = {"Content-Type": "application/json"}
ROOT = Path(__file__).resolve().parents[1]

SECRET_TOKEN = "tok-9f8e7d6c5b4a"
SECRET_PASSWORD = "pw-1a2b3c4d5e"
TARGET_TOKEN = "target-secret-777"

AUTH_CONFIG = f"""
auth:
  bearer_token: {SECRET_TOKEN}
  basic_auth: {{username: alertmanager, password: {SECRET_PASSWORD}}}
routes:
  critical: [hook]
  team: {{targets: [hook], auth: {{bearer_token: team-only}}}}
targets:
  hook: {{type: testsink, url: "{{url}}?access_token={TARGET_TOKEN}", token: {TARGET_TOKEN}}}
"""


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_auth_bearer_basic_and_401(make_receiver, sink):
    rt, client = await make_receiver(AUTH_CONFIG.replace("{url}", sink.url))
    doc = body(payload())
    ok = [f"Bearer {SECRET_TOKEN}", basic("alertmanager", SECRET_PASSWORD), f"bearer {SECRET_TOKEN}"]
    bad = [None, "Bearer wrong", basic("alertmanager", "wrong"), basic("other", SECRET_PASSWORD), "Basic !!!",
           f"Token {SECRET_TOKEN}", "Bearer team-only"]
    for header in bad:
        headers = dict(JSON, **({"Authorization": header} if header else {}))
        resp = await client.post("/alerts/critical", data=doc, headers=headers)
        assert resp.status == 401, header
        assert "WWW-Authenticate" in resp.headers
        assert (await resp.json())["errorType"] == "unauthorized"
    assert await rt.store.counts() == {"notifications": 0}
    for i, header in enumerate(ok):
        resp = await client.post("/alerts/critical", data=body(payload(f"A{i}")), headers=dict(JSON, Authorization=header))
        assert resp.status == 200, header
    # per-route credentials replace the global ones
    resp = await client.post("/alerts/team", data=doc, headers=dict(JSON, Authorization=f"Bearer {SECRET_TOKEN}"))
    assert resp.status == 401
    resp = await client.post("/alerts/team", data=doc, headers=dict(JSON, Authorization="Bearer team-only"))
    assert resp.status == 200
    # the API is protected too; health and metrics are not
    assert (await client.get("/api/v1/status")).status == 401
    assert (await client.get("/metrics")).status == 200
    assert (await client.get("/-/healthy")).status == 200
    text = await (await client.get("/metrics")).text()
    assert f'alert_receiver_notifications_rejected_total{{reason="unauthorized"}} {len(bad) + 2}.0' in text


async def test_status_and_landing_pages_redact_secrets(make_receiver, sink):
    rt, client = await make_receiver(AUTH_CONFIG.replace("{url}", sink.url))
    auth = {"Authorization": f"Bearer {SECRET_TOKEN}"}
    status = await (await client.get("/api/v1/status", headers=auth)).text()
    landing = await (await client.get("/", headers=auth)).text()
    for page in (status, landing):
        for secret in (SECRET_TOKEN, SECRET_PASSWORD, TARGET_TOKEN, "team-only"):
            assert secret not in page
        assert "hook" in page and "critical" in page
    assert "/alerts/critical" in landing and "/metrics" in landing


async def test_duplicate_notification_acknowledged_not_redelivered(make_receiver, sink):
    rt, client = await make_receiver(f"""
routes: {{critical: [hook]}}
targets: {{hook: {{type: testsink, url: "{sink.url}"}}}}
dedup_window: 5m
""")
    doc = body(payload("HA", n_alerts=3))
    first = await (await client.post("/alerts/critical", data=doc, headers=JSON)).json()
    again = await client.post("/alerts/critical", data=doc, headers=JSON)  # the second AM of an HA pair
    assert again.status == 200
    dup = await again.json()
    assert dup["deduplicated"] is True and dup["duplicate_of"] == first["id"]
    resolved = await (await client.post("/alerts/critical", data=body(payload("HA", n_alerts=3, status="resolved")),
                                        headers=JSON)).json()
    assert resolved["deduplicated"] is False  # a status change is news
    assert await sink.async_wait_for(lambda s: len(s.delivered()) == 2, 10)
    await asyncio.sleep(0.2)
    assert sorted(sink.delivered_ids()) == sorted([first["id"], resolved["id"]])
    text = await (await client.get("/metrics")).text()
    assert 'alert_receiver_notifications_deduplicated_total{route="critical"} 1.0' in text
    assert 'alert_receiver_notifications_received_total{route="critical",status="firing"} 1.0' in text
    assert 'alert_receiver_notifications_received_total{route="critical",status="resolved"} 1.0' in text


async def test_dedup_window_zero_disables(make_receiver, sink):
    rt, client = await make_receiver(f"""
routes: {{critical: [hook]}}
targets: {{hook: {{type: testsink, url: "{sink.url}"}}}}
dedup_window: 0
""")
    for _ in range(2):
        assert not (await (await client.post("/alerts/critical", data=body(payload()), headers=JSON)).json())["deduplicated"]


async def test_reload_good_and_bad(make_receiver, sink, tmp_path):
    rt, client = await make_receiver(f"""
routes: {{critical: [hook]}}
targets: {{hook: {{type: testsink, url: "{sink.url}"}}}}
""")
    cfg = Path(rt.config_path)
    cfg.write_text(f"""
routes: {{critical: [hook], extra: [other]}}
targets:
  hook: {{type: testsink, url: "{sink.url}"}}
  other: {{type: testsink, url: "{sink.url}/other"}}
""")
    resp = await client.post("/-/reload")
    assert resp.status == 200, await resp.text()
    resp = await client.post("/alerts/extra", data=body(payload()), headers=JSON)
    assert resp.status == 200
    assert await sink.async_wait_for(lambda s: any(r.path == "/hook/other" for r in s.delivered()), 10)
    text = await (await client.get("/metrics")).text()
    assert "alert_receiver_config_last_reload_successful 1.0" in text

    cfg.write_text("routes: {critical: [missing]}\ntargets:\n  hook: {type: nosuchchannel}\n")
    resp = await client.post("/-/reload")
    assert resp.status == 500
    err = await resp.text()
    assert "receiver.yml:3: targets.hook.type: unknown channel type 'nosuchchannel'" in err
    text = await (await client.get("/metrics")).text()
    assert "alert_receiver_config_last_reload_successful 0.0" in text
    # the old config keeps serving
    assert (await client.post("/alerts/extra", data=body(payload("Still")), headers=JSON)).status == 200
    assert set(rt.config.routes) == {"critical", "extra"}


async def test_store_full_or_closed_answers_503_and_recovers(make_receiver, sink):
    rt, client = await make_receiver(f"""
routes: {{critical: [hook]}}
targets: {{hook: {{type: testsink, url: "{sink.url}"}}}}
""")
    assert (await client.post("/alerts/critical", data=body(payload("Before")), headers=JSON)).status == 200
    # disk full: SQLite may not grow the database file any more (a per-connection limit, so on
    # the connection accepts are written with)
    pages = rt.store.accepts.conn.execute("PRAGMA page_count").fetchone()[0]
    rt.store.accepts.conn.execute(f"PRAGMA max_page_count = {pages}")
    big = payload("Full", n_alerts=50)
    resp = await client.post("/alerts/critical", data=body(big), headers=JSON)
    assert resp.status == 503
    err = await resp.json()
    assert err["errorType"] == "store_unavailable" and "full" in err["error"]
    rt.store.accepts.conn.execute("PRAGMA max_page_count = 1073741823")
    assert (await client.post("/alerts/critical", data=body(big), headers=JSON)).status == 200
    # store closed (I/O failure)
    await rt.store.close()
    resp = await client.post("/alerts/critical", data=body(payload("Closed")), headers=JSON)
    assert resp.status == 503
    assert (await client.get("/-/ready")).status == 503
    text = await (await client.get("/metrics")).text()
    assert 'alert_receiver_notifications_rejected_total{reason="store_unavailable"} 2.0' in text


async def test_api_notifications_and_render(make_receiver, sink):
    rt, client = await make_receiver(f"""
routes: {{critical: [hook]}}
targets: {{hook: {{type: testsink, url: "{sink.url}?access_token=SECRETX"}}}}
""")
    ids = [(await (await client.post("/alerts/critical", data=body(payload(f"N{i}")), headers=JSON)).json())["id"]
           for i in range(3)]
    assert await sink.async_wait_for(lambda s: len(s.delivered()) >= 1 and set(ids) <= set(s.delivered_ids()), 10)
    await asyncio.sleep(0.1)
    rows = (await (await client.get("/api/v1/notifications?limit=2")).json())["data"]
    assert [r["id"] for r in rows] == ids[:0:-1]
    assert rows[0]["deliveries"][0]["state"] == "delivered"
    assert rows[0]["notification"]["alerts"][0]["labels"]["alertname"] == "N2"
    resp = await client.post("/api/v1/render?target=hook", data=body(payload("Preview")), headers=JSON)
    out = await resp.json()
    assert resp.status == 200, out
    assert out["data"]["json"]["notifications"][0]["alerts"][0]["labels"]["alertname"] == "Preview"
    assert "SECRETX" not in out["data"]["url"]
    assert len(sink.requests) == len([r for r in sink.requests if r.notification_ids()[0] in ids])  # nothing sent
    bad = await client.post("/api/v1/render?target=nope", data=body(payload()), headers=JSON)
    assert bad.status == 400 and "hook" in (await bad.json())["error"]


async def test_metrics_match_the_contract(make_receiver, sink):
    rt, client = await make_receiver(f"""
routes: {{critical: [hook]}}
targets: {{hook: {{type: testsink, url: "{sink.url}"}}}}
""")
    text = await (await client.get("/metrics")).text()
    section = (ROOT / "docs" / "metrics.md").read_text().split("## Receiver", 1)[1]
    documented = set(re.findall(r"^\| `(alert_receiver_[a-z_]+)`", section, re.M))
    assert len(documented) == 14
    exposed = set(re.findall(r"^# TYPE (alert_receiver_[a-z_]+) (\w+)", text, re.M))
    names = {n for n, _ in exposed if not n.endswith("_created")}  # _created: prometheus_client extra
    assert documented == names
    assert "alert_receiver_build_info{version=" in text
    assert (await client.get("/-/ready")).status == 200
