"""Embedding: an aiohttp "agent" app starts the exporter in its own loop with a provider and its own
collectors; the exporter is scraped over real HTTP."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from exporter.demo_agent import DemoAgent
from exporter.embed import EmbeddedExporter, validate_agent_config

EXPORTER_KEY = web.AppKey("exporter", EmbeddedExporter)
ORDERS_KEY = web.AppKey("orders", Counter)


def agent_app(*, provider_kind: str = "sync", **exporter_kwargs) -> web.Application:
    """A minimal agent: its own HTTP API, its own metrics registry, and the embedded exporter."""
    sim = DemoAgent(seed=5, flap_interval=0)
    registry = CollectorRegistry(auto_describe=False)
    orders = Counter("myagent_strategy_orders", "Orders placed by the strategy.", registry=registry)

    async def async_stats():
        await asyncio.sleep(0)
        return sim.stats()

    provider = {"sync": sim.stats, "async": async_stats}[provider_kind]

    async def exporter_ctx(app: web.Application):
        exporter = EmbeddedExporter(listen_address="127.0.0.1:0", system_collectors=("loadavg",), **exporter_kwargs)
        exporter.set_provider(provider)
        exporter.add_collector(registry)
        await exporter.start()
        app[EXPORTER_KEY] = exporter
        yield
        await exporter.stop()

    async def place_order(request: web.Request) -> web.Response:
        request.app[ORDERS_KEY].inc()
        return web.json_response({"ok": True})

    app = web.Application()
    app[ORDERS_KEY] = orders
    app.cleanup_ctx.append(exporter_ctx)
    app.router.add_post("/order", place_order)
    return app


async def scrape(url: str) -> dict[tuple[str, tuple], float]:
    async with aiohttp.ClientSession() as session, session.get(url, headers={"X-Prometheus-Scrape-Timeout-Seconds": "5"}) as resp:
        assert resp.status == 200
        text = await resp.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


@pytest.mark.parametrize("provider_kind", ["sync", "async"])
async def test_embedded_exporter_serves_provider_and_own_collectors(aiohttp_client, provider_kind):
    client = await aiohttp_client(agent_app(provider_kind=provider_kind))
    exporter = client.app[EXPORTER_KEY]
    assert (await client.post("/order")).status == 200
    assert (await client.post("/order")).status == 200
    m = await scrape(exporter.url)
    assert m[("agentmon_agent_up", ())] == 1.0
    assert m[("agentmon_exchange_connected", (("exchange", "binance"),))] == 1.0
    assert ("agentmon_records_collected_total", (("data_type", "trades"), ("exchange", "okx"))) in m
    assert m[("agentmon_agent_info", (("agent_id", "demo-agent-1"), ("version", "1.4.2-demo")))] == 1.0
    assert m[("myagent_strategy_orders_total", ())] == 2.0
    assert m[("agentmon_scrape_collector_success", (("collector", "agent"),))] == 1.0
    assert ("agentmon_load1", ()) in m
    assert not any(name.startswith("agentmon_cpu") for name, _ in m)
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{exporter.port}/-/healthy") as resp:
        assert resp.status == 200


async def test_agent_config_in_code_enables_per_symbol(aiohttp_client):
    client = await aiohttp_client(agent_app(agent_config={"per_symbol": {"enabled": True, "max_series": 2}}))
    m = await scrape(client.app[EXPORTER_KEY].url)
    symbols = [labels for name, labels in m if name == "agentmon_position_symbol_unrealized_pnl"]
    assert len(symbols) == 2
    dropped = m[("agentmon_agent_mapping_errors_total", (("metric", "agentmon_position_symbol_unrealized_pnl"),))]
    assert dropped > 0


async def test_failing_provider_keeps_the_rest_of_the_scrape():
    def broken():
        raise RuntimeError("state lock poisoned")

    registry = CollectorRegistry(auto_describe=False)
    Counter("myagent_ticks", "Ticks.", registry=registry).inc(3)
    async with EmbeddedExporter(listen_address="127.0.0.1:0", provider=broken, collectors=[registry],
                                system_collectors=()) as exporter:
        m = await scrape(exporter.url)
    assert m[("agentmon_agent_up", ())] == 0.0
    assert m[("myagent_ticks_total", ())] == 3.0
    assert not any(name.startswith("agentmon_exchange_") for name, _ in m)


async def test_config_file_agent_section_and_reload(tmp_path):
    cfg = tmp_path / "exporter.yml"
    cfg.write_text("agent:\n  per_symbol: {enabled: false}\n")
    sim = DemoAgent(seed=2, flap_interval=0)
    async with EmbeddedExporter(listen_address="127.0.0.1:0", provider=sim.stats, config_file=str(cfg),
                                system_collectors=()) as exporter:
        before = await scrape(exporter.url)
        cfg.write_text("agent:\n  per_symbol: {enabled: true}\n")
        async with aiohttp.ClientSession() as s, s.post(f"http://127.0.0.1:{exporter.port}/-/reload") as resp:
            assert resp.status == 200, await resp.text()
        after = await scrape(exporter.url)
    assert not any(n == "agentmon_position_symbol_unrealized_pnl" for n, _ in before)
    assert any(n == "agentmon_position_symbol_unrealized_pnl" for n, _ in after)
    assert after[("agentmon_agent_up", ())] == 1.0


def test_invalid_agent_config_is_rejected_with_key_path():
    bad = {"mapping": [{"name": "x_total", "type": "counter", "help": "h", "path": "a[*].b", "labels": {"l": "c[*].d"}}]}
    assert any(p.startswith("agent.mapping[0].labels.l:") for p in validate_agent_config(bad))
    with pytest.raises(ValueError, match=r"agent\.timeout"):
        EmbeddedExporter(agent_config={"timeout": -1})


async def test_registration_after_start_is_refused():
    exporter = EmbeddedExporter(listen_address="127.0.0.1:0", provider=lambda: {}, system_collectors=())
    await exporter.start()
    try:
        with pytest.raises(RuntimeError):
            exporter.set_provider(lambda: {})
        with pytest.raises(TypeError):
            EmbeddedExporter().add_collector(object())
    finally:
        await exporter.stop()
