"""Business sources over real HTTP (the demo agent and local aiohttp fakes) and in-process providers:
agent_up, timeouts, faults, headers, connection reuse, single flight, mapping-error counter."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web

from agentmon.procs import free_port
from exporter.business import BusinessSource, build_source
from exporter.demo_agent import DemoAgent, create_app

GUARD = 5.0  # a collect() that hangs fails the test instead of the suite


def values(families):
    """{(name, sorted labels): value} over every sample."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def up(families) -> float:
    return values(families)[("ns_agent_up", ())]


async def collect(source: BusinessSource, timeout: float = 2.0):
    return await asyncio.wait_for(source.collect(timeout), GUARD)


@pytest.fixture
async def demo(aiohttp_server):
    agent = DemoAgent(seed=1, flap_interval=0)
    server = await aiohttp_server(create_app(agent))
    return agent, f"http://127.0.0.1:{server.port}/stats"


@pytest.fixture
async def http_source():
    sources = []

    def make(url, **cfg):
        src = build_source({"url": url, **cfg}, "ns")
        sources.append(src)
        return src

    yield make
    for src in sources:
        await src.close()


async def test_demo_agent_maps_to_business_metrics(demo, http_source):
    _, url = demo
    src = http_source(url)
    assert isinstance(src, BusinessSource)
    fams = await collect(src)
    v = values(fams)
    assert up(fams) == 1.0
    assert v[("ns_exchange_connected", (("exchange", "binance"),))] == 1.0
    assert ("ns_records_collected_total", (("data_type", "trades"), ("exchange", "okx"))) in v
    assert v[("ns_agent_mapping_errors_total", (("metric", "ns_cache_entries"),))] == 0.0
    assert v[("ns_agent_fetch_duration_seconds", ())] >= 0.0
    assert not any(name == "ns_position_symbol_unrealized_pnl" for name, _ in v)


@pytest.mark.parametrize("fault", ["http_500", "malformed"])
async def test_agent_faults_give_agent_up_0_with_reason_logged(demo, http_source, caplog, fault):
    agent, url = demo
    agent.faults.set(fault, {})
    src = http_source(url)
    with caplog.at_level(logging.WARNING, logger="exporter.business"):
        fams = await collect(src)
    assert up(fams) == 0.0
    assert [f.name for f in fams] == ["ns_agent_up", "ns_agent_fetch_duration_seconds", "ns_agent_mapping_errors"]
    reason = {"http_500": "HTTP 500", "malformed": "malformed JSON"}[fault]
    assert any(reason in getattr(r, "reason", "") for r in caplog.records)
    agent.faults.clear()
    assert up(await collect(src)) == 1.0


async def test_slow_agent_is_cut_at_the_scrape_timeout(demo, http_source):
    agent, url = demo
    agent.faults.set("slow", {"seconds": 30})
    src = http_source(url, timeout=10)
    fams = await collect(src, timeout=0.3)
    assert up(fams) == 0.0
    assert values(fams)[("ns_agent_fetch_duration_seconds", ())] < GUARD


async def test_config_timeout_caps_a_larger_scrape_timeout(demo, http_source):
    agent, url = demo
    agent.faults.set("slow", {"seconds": 30})
    src = http_source(url, timeout=0.3)
    assert up(await collect(src, timeout=60)) == 0.0


async def test_agent_down_connection_refused(http_source, caplog):
    src = http_source(f"http://127.0.0.1:{free_port()}/stats")
    with caplog.at_level(logging.WARNING, logger="exporter.business"):
        assert up(await collect(src)) == 0.0
        assert up(await collect(src)) == 0.0
    down = [r for r in caplog.records if r.getMessage() == "agent stats source down"]
    assert len(down) == 1 and "connection error" in down[0].reason  # same reason again: not repeated


async def test_non_object_document_is_agent_down(aiohttp_server, http_source):
    app = web.Application()
    app.router.add_get("/stats", _array)
    server = await aiohttp_server(app)
    assert up(await collect(http_source(f"http://127.0.0.1:{server.port}/stats"))) == 0.0


async def _array(request):
    return web.json_response([1, 2])


async def _big(request):
    return web.json_response({"pad": "x" * 5000})


async def test_oversized_document_is_refused(aiohttp_server, http_source):
    app = web.Application()
    app.router.add_get("/stats", _big)
    server = await aiohttp_server(app)
    src = http_source(f"http://127.0.0.1:{server.port}/stats", max_body_bytes=1024)
    assert up(await collect(src)) == 0.0


async def test_headers_sent_connection_reused_secrets_not_logged(aiohttp_server, http_source, caplog):
    seen = []

    async def stats(request):
        seen.append((request.headers.get("Authorization"), request.transport.get_extra_info("peername")))
        if len(seen) == 3:
            return web.Response(status=503, text="down for Bearer s3cr3t-token")
        return web.json_response({"cache": {"hits": 1, "requests": 2, "size_bytes": 3, "entries": 4}})

    app = web.Application()
    app.router.add_get("/stats", stats)
    server = await aiohttp_server(app)
    src = http_source(f"http://127.0.0.1:{server.port}/stats?token=qs-secret",
                      headers={"Authorization": "Bearer s3cr3t-token"})
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            await collect(src)
    assert [auth for auth, _ in seen] == ["Bearer s3cr3t-token"] * 3
    assert len({peer for _, peer in seen}) == 1, "one kept-alive connection for every scrape"
    ours = [r for r in caplog.records if r.name != "aiohttp.access"]  # the fake agent's own access log
    logged = " ".join(r.getMessage() + str(vars(r)) for r in ours)
    assert "agent stats source down" in logged
    for secret in ("s3cr3t-token", "qs-secret"):
        assert secret not in logged


async def test_overlapping_scrapes_share_one_fetch(aiohttp_server, http_source):
    calls = 0
    release = asyncio.Event()

    async def stats(request):
        nonlocal calls
        calls += 1
        await release.wait()
        return web.json_response({"cache": {"hits": 1, "requests": 2, "size_bytes": 3, "entries": 4}})

    app = web.Application()
    app.router.add_get("/stats", stats)
    server = await aiohttp_server(app)
    src = http_source(f"http://127.0.0.1:{server.port}/stats")
    scrapes = [asyncio.create_task(collect(src)) for _ in range(3)]
    await asyncio.sleep(0.1)
    release.set()
    results = await asyncio.gather(*scrapes)
    assert calls == 1
    assert all(up(r) == 1.0 for r in results)


async def test_mapping_errors_accumulate_across_scrapes_and_log_is_rate_limited(caplog):
    doc = {"schema_version": 1, "agent": {"id": "a", "version": "1", "start_time_ms": 1000},
           "exchanges": [{"name": "x", "requests": {"total": 1}}], "cache": {"hits": "lots"}}
    src = build_source(None, "ns", provider=lambda: doc)
    with caplog.at_level(logging.WARNING, logger="exporter.business"):
        for _ in range(3):
            fams = await collect(src)
    v = values(fams)
    assert up(fams) == 1.0
    assert v[("ns_exchange_requests_total", (("exchange", "x"),))] == 1.0
    assert v[("ns_agent_mapping_errors_total", (("metric", "ns_cache_hits_total"),))] == 3.0
    assert v[("ns_agent_mapping_errors_total", (("metric", "ns_exchange_request_errors_total"),))] == 3.0
    assert v[("ns_agent_mapping_errors_total", (("metric", "ns_agent_start_time_seconds"),))] == 0.0
    lines = [r for r in caplog.records if r.getMessage() == "agent stats mapping error" and r.metric == "ns_cache_hits_total"]
    assert len(lines) == 1 and "'lots'" in lines[0].reason
    await src.close()


async def test_sync_and_async_providers():
    doc = {"cache": {"hits": 5, "requests": 9, "size_bytes": 1, "entries": 1}}

    async def async_provider():
        await asyncio.sleep(0)
        return doc

    for provider in (lambda: doc, async_provider):
        src = build_source({"url": "http://127.0.0.1:1/ignored"}, "ns", provider=provider)
        fams = await collect(src)
        assert up(fams) == 1.0 and values(fams)[("ns_cache_hits_total", ())] == 5.0
        await src.close()


async def test_failing_slow_and_wrong_providers_give_agent_up_0():
    async def slow():
        await asyncio.sleep(30)

    def broken():
        raise RuntimeError("agent state unavailable")

    for provider in (slow, broken, lambda: "not a dict"):
        src = build_source(None, "ns", provider=provider)
        assert up(await collect(src, timeout=0.2)) == 0.0
        await src.close()


def test_no_url_and_no_provider_means_no_source():
    assert build_source(None, "ns") is None
    assert build_source({"per_symbol": {"enabled": True}}, "ns") is None


async def test_url_credentials_are_not_logged(http_source, caplog):
    src = http_source(f"http://user:pa55word@127.0.0.1:{free_port()}/stats")
    with caplog.at_level(logging.DEBUG):
        assert up(await collect(src)) == 0.0
    assert "agent stats source down" in caplog.text
    assert "pa55word" not in caplog.text + " ".join(str(vars(r)) for r in caplog.records)


def test_invalid_agent_config_raises():
    with pytest.raises(ValueError, match=r"agent\.mapping\[0\]\.path"):
        build_source({"url": "http://x/", "mapping": [{"name": "g", "type": "gauge", "help": "h", "path": "a..b"}]}, "ns")
