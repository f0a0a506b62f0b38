"""End to end: a fault in the demo agent travels through the real pipeline to a delivered message.

demo agent → agent-exporter → Prometheus (our generated rules, 1 s scrape/eval, ``for`` = 1 s)
→ AlertManager (our alertmanager.yml, 1 s group_wait) → alert-receiver → generic webhook → sink.
The stack is the one ``make run`` starts (agentmon.devstack), with the ``fast`` profile.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from helpers.sink import Sink

from agentmon.devstack import PROFILES, Ports, Stack

pytestmark = pytest.mark.integration


def _alerts_of(rec) -> list[tuple[str, str, dict]]:
    """(notification status, alert status, labels) for every alert in one sink request."""
    doc = rec.json()
    notes = doc["notifications"] if doc.get("digest") else [doc]
    return [(n["status"], a["status"], a["labels"]) for n in notes for a in n["alerts"]]


def _delivered(sink: Sink, alertname: str, status: str = "firing", **labels: str) -> list:
    out = []
    for rec in sink.delivered():
        for _, a_status, lbls in _alerts_of(rec):
            if lbls.get("alertname") == alertname and a_status == status and all(
                lbls.get(k) == v for k, v in labels.items()
            ):
                out.append((rec, lbls))
    return out


def _post(url: str, method: str = "POST") -> dict:
    req = urllib.request.Request(url, method=method, data=b"" if method != "GET" else None)
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read() or b"{}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    run = tmp_path_factory.mktemp("stack")
    with Sink() as sink:
        user_cfg = run / "user-receiver.yml"
        user_cfg.write_text(yaml.safe_dump({"targets": {"sink": {"type": "webhook", "url": sink.url}}}))
        st = Stack(Path(run), PROFILES["fast"], Ports().resolve(any_free=True), receiver_config=user_cfg,
                   agent_args=("--flap-interval=0",))
        st.start()
        try:
            yield st, sink
        finally:
            st.stop()


def test_fault_fires_delivers_and_resolves(stack):
    st, sink = stack
    agent = st.url("agent")
    # The Watchdog heartbeat proves the whole path is up before we inject anything.
    assert sink.wait_for(lambda s: _delivered(s, "Watchdog"), timeout=60), "Watchdog never arrived"

    _post(f"{agent}/faults/disconnect?exchange=binance")
    try:
        assert sink.wait_for(lambda s: _delivered(s, "AgentMonExchangeDisconnected", exchange="binance"), timeout=45)
        rec, labels = _delivered(sink, "AgentMonExchangeDisconnected", exchange="binance")[0]
        assert labels["severity"] == "error" and labels["job"] == "agent-exporter"
        doc = rec.json()
        assert doc["route"] == "warning"  # error → the warning route of alertmanager.yml
        assert "binance" in doc["text"] and doc["idempotency_key"]
        # Other exchanges stayed connected: nothing fired for them.
        assert not _delivered(sink, "AgentMonExchangeDisconnected", exchange="okx")
    finally:
        _post(f"{agent}/faults/disconnect?exchange=binance", method="DELETE")
    assert sink.wait_for(
        lambda s: _delivered(s, "AgentMonExchangeDisconnected", status="resolved", exchange="binance"), timeout=45
    ), "the resolved message never arrived"


def test_higher_severity_inhibits_lower_for_same_instance(stack):
    st, sink = stack
    agent = st.url("agent")
    am = st.url("alertmanager")
    sink.reset()
    _post(f"{agent}/faults/disconnect")  # every exchange: emergency + per-exchange errors
    try:
        assert sink.wait_for(lambda s: _delivered(s, "AgentMonAllExchangesDisconnected"), timeout=45)
        rec, labels = _delivered(sink, "AgentMonAllExchangesDisconnected")[0]
        assert labels["severity"] == "emergency" and rec.json()["route"] == "critical"

        # AlertManager holds the per-exchange alerts as inhibited by the emergency one...
        def inhibited() -> list[dict]:
            with urllib.request.urlopen(f"{am}/api/v2/alerts?filter=alertname%3D%22AgentMonExchangeDisconnected%22",
                                        timeout=5) as resp:
                return [a for a in json.loads(resp.read()) if a["status"]["inhibitedBy"]]

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(inhibited()) < 2:
            time.sleep(0.5)
        assert len(inhibited()) >= 2, "per-exchange alerts are not inhibited"
        # ...and they are never delivered while it fires (several group intervals later).
        time.sleep(5)
        leaked = _delivered(sink, "AgentMonExchangeDisconnected")
        assert not leaked, "an inhibited alert was delivered: " + json.dumps(
            [{k: r.json().get(k) for k in ("status", "receivedAt", "alerts", "route")} | {"at": r.at} for r, _ in leaked]
        ) + f" emergency delivered at {rec.at}"
    finally:
        _post(f"{agent}/faults/disconnect", method="DELETE")


def test_every_dashboard_panel_query_returns_data(stack):
    """Each panel's PromQL (variables substituted) returns data from the real stack: no wrong metric names."""
    import urllib.parse

    from dashboards.generate import panel_queries

    st, _ = stack
    prom = st.url("prometheus")
    exporter_instance = f"127.0.0.1:{st.ports.exporter}"
    subs = {"instance": exporter_instance, "receiver_instance": f"127.0.0.1:{st.ports.receiver}", "exchange": ".+"}
    queries = panel_queries(subs)
    assert len(queries) > 20
    if _swap_total_bytes() == 0:  # a host without swap has no swap ratio: that panel is empty by design
        queries = [q for q in queries if "agentmon_swap_total_bytes" not in q[2]]

    def result(expr: str) -> list:
        url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as resp:
            doc = json.loads(resp.read())
        assert doc["status"] == "success", (expr, doc)
        return doc["data"]["result"]

    # rate() over $__rate_interval needs a few scrapes; recording rules a few evaluations.
    deadline = time.monotonic() + 60
    empty = queries
    while empty and time.monotonic() < deadline:
        empty = [(d, p, e) for d, p, e in empty if not result(e)]
        if empty:
            time.sleep(2)
    assert not empty, "panels without data:\n" + "\n".join(f"{d} / {p}: {e}" for d, p, e in empty)


def _swap_total_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("SwapTotal:"):
            return int(line.split()[1]) * 1024
    return 0
