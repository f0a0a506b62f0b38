"""Demo agent: schema-conforming, realistic output; fault switches over HTTP and flags; the CLI."""

from __future__ import annotations

import json
import sys
import urllib.request

import aiohttp
import jsonschema
import pytest

from agentmon.procs import free_port, start_process
from exporter.business import AGENT_STATS_SCHEMA_PATH
from exporter.demo_agent import (
    DemoAgent,
    FaultError,
    agent_from_args,
    build_parser,
    create_app,
    parse_fault_flag,
)

VALIDATOR = jsonschema.Draft202012Validator(json.loads(AGENT_STATS_SCHEMA_PATH.read_text()))


class FakeClock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def make_agent(seed=7, **kw):
    clock = FakeClock()
    wall = FakeClock(1_764_320_000.0)
    agent = DemoAgent(seed=seed, clock=clock, wall=wall, **kw)

    def tick(seconds):
        clock.t += seconds
        wall.t += seconds
        return agent.stats()

    return agent, tick


def records(doc, exchange=None):
    return sum(n for ex in doc["exchanges"] if exchange in (None, ex["name"]) for n in ex["records"].values())


def by_name(doc, name):
    return next(ex for ex in doc["exchanges"] if ex["name"] == name)


def test_documents_validate_against_schema_under_every_fault():
    agent, tick = make_agent(flap_interval=5)
    for name, params in [(None, {}), ("stall", {}), ("disconnect", {"exchange": "okx"}), ("error_rate", {"ratio": 1})]:
        if name:
            agent.faults.set(name, params)
        for _ in range(5):
            VALIDATOR.validate(tick(3.0))
        agent.faults.clear()


def test_same_seed_same_documents():
    a, tick_a = make_agent(seed=3)
    b, tick_b = make_agent(seed=3)
    assert [tick_a(1.5) for _ in range(4)] == [tick_b(1.5) for _ in range(4)]
    _, tick_c = make_agent(seed=4)
    assert tick_c(1.5) != make_agent(seed=3)[1](1.5)


def test_records_grow_over_100_per_second_and_pnl_moves():
    _, tick = make_agent(flap_interval=0)
    first = tick(1.0)
    later = tick(10.0)
    assert (records(later) - records(first)) / 10.0 > 100
    assert by_name(later, "binance")["last_record_time_ms"] > by_name(first, "binance")["last_record_time_ms"]
    assert by_name(later, "binance")["pnl"] != by_name(first, "binance")["pnl"]
    assert later["cache"]["requests"] > first["cache"]["requests"] >= 0
    orders = by_name(later, "binance")["orders"]
    assert orders["submitted"] >= orders["filled"] + orders["cancelled"] + orders["rejected"] - 3
    assert orders["filled"] > 0


def test_connections_flap_and_reconnect():
    _, tick = make_agent(flap_interval=2.0)
    states = set()
    reconnects_before = sum(ex["connection"]["reconnects"] for ex in tick(0.1)["exchanges"])
    for _ in range(60):
        states |= {ex["connection"]["state"] for ex in tick(0.5)["exchanges"]}
    assert {"connected", "reconnecting"} <= states
    assert sum(ex["connection"]["reconnects"] for ex in tick(5.0)["exchanges"]) > reconnects_before


def test_stall_stops_only_the_selected_exchange():
    agent, tick = make_agent(flap_interval=0)
    tick(1.0)
    agent.faults.set("stall", {"exchange": "binance"})
    before = tick(0.0)
    after = tick(5.0)
    assert records(after, "binance") == records(before, "binance")
    assert by_name(after, "binance")["last_record_time_ms"] == by_name(before, "binance")["last_record_time_ms"]
    assert records(after, "okx") > records(before, "okx")
    agent.faults.clear("stall")
    assert records(tick(5.0), "binance") > records(after, "binance")


def test_disconnect_then_clear_reconnects_through_reconnecting():
    agent, tick = make_agent(flap_interval=0)
    tick(1.0)
    agent.faults.set("disconnect", {"exchange": "okx"})
    down = tick(2.0)
    okx = by_name(down, "okx")
    assert okx["connection"]["state"] == "disconnected"
    assert by_name(down, "binance")["connection"]["state"] == "connected"
    frozen = records(down, "okx")
    assert records(tick(3.0), "okx") == frozen
    agent.faults.clear("disconnect")
    assert by_name(tick(0.1), "okx")["connection"]["state"] == "reconnecting"
    back = by_name(tick(3.0), "okx")
    assert back["connection"]["state"] == "connected"
    assert back["connection"]["reconnects"] == okx["connection"]["reconnects"] + 1


def test_error_rate_fault_makes_requests_fail():
    agent, tick = make_agent(flap_interval=0)
    base = by_name(tick(1.0), "bybit")["requests"]
    agent.faults.set("error_rate", {"ratio": 1.0, "exchange": "bybit"})
    now = by_name(tick(20.0), "bybit")["requests"]
    assert now["total"] - base["total"] > 10
    assert now["errors"] - base["errors"] == now["total"] - base["total"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("slow=2.5", ("slow", {"seconds": "2.5"})),
        ("stall=binance,okx", ("stall", {"exchange": "binance,okx"})),
        ("http_500", ("http_500", {})),
        ("error_rate?ratio=0.8&exchange=okx", ("error_rate", {"ratio": "0.8", "exchange": "okx"})),
    ],
)
def test_fault_flag_syntax(text, expected):
    assert parse_fault_flag(text) == expected


def test_bad_flags_are_rejected():
    with pytest.raises(FaultError):
        parse_fault_flag("malformed=1")
    args = build_parser().parse_args(["--fault", "stall=nowhere"])
    with pytest.raises(FaultError, match="unknown exchange"):
        agent_from_args(args)
    with pytest.raises(LookupError):
        agent_from_args(build_parser().parse_args(["--fault", "explode"]))
    agent = agent_from_args(build_parser().parse_args(["--fault", "slow=3", "--exchanges", "okx", "--seed", "1"]))
    assert agent.faults.active == {"slow": {"seconds": 3.0}}
    assert [ex.name for ex in agent.exchanges] == ["okx"]


async def test_http_fault_api(aiohttp_client):
    agent, _ = make_agent()
    client = await aiohttp_client(create_app(agent))
    assert (await client.get("/stats")).status == 200
    resp = await client.post("/faults/stall?exchange=okx")
    assert resp.status == 200 and (await resp.json())["active"] == {"stall": {"exchange": "okx"}}
    resp = await client.post("/faults/error_rate", json={"ratio": 0.9})
    assert (await resp.json())["active"]["error_rate"] == {"exchange": "", "ratio": 0.9}
    assert (await client.post("/faults/nope")).status == 404
    assert (await client.post("/faults/slow?seconds=abc")).status == 400
    assert (await client.post("/faults/slow?color=red")).status == 400
    listed = await (await client.get("/faults")).json()
    assert set(listed["active"]) == {"stall", "error_rate"}
    assert {"slow", "http_500", "malformed", "stall", "disconnect", "error_rate"} <= set(listed["available"])
    await client.post("/faults/stall?exchange=okx,binance")
    assert (await (await client.delete("/faults/stall?exchange=okx")).json())["active"]["stall"] == {"exchange": "binance"}
    assert (await (await client.delete("/faults/stall?exchange=binance")).json())["active"] == {
        "error_rate": {"exchange": "", "ratio": 0.9}}
    assert (await (await client.delete("/faults/error_rate?exchange=okx")).json())["active"] == {}
    await client.post("/faults/error_rate", json={"ratio": 0.9})
    assert (await (await client.delete("/faults")).json())["active"] == {}


async def test_http_500_and_malformed_and_slow(aiohttp_client):
    agent, _ = make_agent()
    client = await aiohttp_client(create_app(agent))
    await client.post("/faults/http_500")
    assert (await client.get("/stats")).status == 500
    await client.delete("/faults")
    await client.post("/faults/malformed")
    resp = await client.get("/stats")
    assert resp.status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(await resp.text())
    await client.delete("/faults")
    await client.post("/faults/slow?seconds=30")
    with pytest.raises(TimeoutError):
        await client.get("/stats", timeout=aiohttp.ClientTimeout(total=0.3))
    await client.delete("/faults/slow")
    VALIDATOR.validate(await (await client.get("/stats")).json())


def test_cli_serves_stats_and_help_documents_faults(tmp_path):
    port = free_port()
    proc = start_process(
        "demo-agent",
        [sys.executable, "-m", "exporter.demo_agent", "--web.listen-address", f"127.0.0.1:{port}", "--seed", "1",
         "--fault", "stall=coinbase"],
        log_dir=tmp_path, ready_url=f"http://127.0.0.1:{port}/-/healthy", timeout=20,
    )
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as resp:
            VALIDATOR.validate(json.load(resp))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/faults", timeout=5) as resp:
            assert json.load(resp)["active"] == {"stall": {"exchange": "coinbase"}}
    finally:
        proc.stop()
    help_text = build_parser().format_help()
    for word in ("/faults", "slow", "http_500", "malformed", "stall", "disconnect", "error_rate", "--seed"):
        assert word in help_text
