"""ExporterServer over real loopback HTTP (port 0): endpoints, single-flight, in-flight cap, gzip,
scrape budget from the Prometheus header, reload (good and bad), large renders off the loop,
TLS + basic auth from an exporter-toolkit web config."""

from __future__ import annotations

import asyncio
import base64
import gzip
import os
import shutil
import ssl
import subprocess
import threading
import time
from pathlib import Path

import aiohttp
import bcrypt
import pytest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

import exporter.scrape as scrape_mod
from agentmon.configload import ConfigError
from agentmon.webconfig import load_web_config
from exporter.config import ExporterSettings, load_exporter_config
from exporter.scrape import scrape_budget
from exporter.server import ExporterServer, accepts_gzip

PROM_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
               "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


class FakeSource:
    """Stands in for exporter.business sources: records calls and budgets, optional delay/failure."""

    def __init__(self, delay: float = 0.0, up: int = 1, series: int = 1):
        self.delay, self.up, self.series = delay, up, series
        self.calls = 0
        self.budgets: list[float] = []
        self.closed = False

    async def collect(self, timeout: float):
        self.calls += 1
        self.budgets.append(timeout)
        await asyncio.sleep(self.delay)
        g = GaugeMetricFamily("agentmon_exchange_connected", "Connected.", labels=["exchange"])
        for i in range(self.series):
            g.add_metric([f"ex{i}"], 1)
        return [GaugeMetricFamily("agentmon_agent_up", "Up.", value=self.up), g]

    async def close(self):
        self.closed = True


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(text: str, name: str, **labels) -> float:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise AssertionError(f"{name}{labels} not found")


@pytest.fixture
async def make_server():
    servers: list[ExporterServer] = []

    async def make(source=None, **kw) -> ExporterServer:
        server_kw = {k: kw.pop(k) for k in ("source_factory", "web_config", "config_loader") if k in kw}
        settings = ExporterSettings(listen_address="127.0.0.1:0", **kw)
        server = ExporterServer(settings, source, **server_kw)
        await server.start()
        servers.append(server)
        return server

    yield make
    for s in servers:
        await s.stop()


async def get(server, path="/metrics", headers=None, **kw):
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        headers = {"Accept-Encoding": "identity", **(headers or {})}
        async with session.get(f"http://127.0.0.1:{server.port}{path}", headers=headers, **kw) as resp:
            return resp.status, dict(resp.headers), await resp.read()


async def post_reload(server) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.post(f"http://127.0.0.1:{server.port}/-/reload") as resp:
        return resp.status, await resp.text()


async def test_metrics_system_and_business(make_server):
    source = FakeSource(series=3)
    server = await make_server(source, collectors=("cpu", "memory", "loadavg"))
    status, headers, body = await get(server, headers={"Accept": PROM_ACCEPT})
    text = body.decode()
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    fams = families(text)
    assert "agentmon_cpu_seconds" in fams and "agentmon_load1" in fams
    assert sample(text, "agentmon_exchange_connected", exchange="ex2") == 1
    for collector in ("cpu", "memory", "loadavg", "agent"):
        assert sample(text, "agentmon_scrape_collector_success", collector=collector) == 1
        assert sample(text, "agentmon_scrape_collector_duration_seconds", collector=collector) >= 0
    assert "agentmon_filesystem_size_bytes" not in fams  # not enabled
    assert sample(text, "agentmon_config_last_reload_successful") == 1
    assert sample(text, "agentmon_exporter_build_info", version="0.1.0") == 1
    assert not any(s.name.endswith("_created") for f in fams.values() for s in f.samples)


async def test_business_down_reports_agent_failure_but_serves(make_server):
    server = await make_server(FakeSource(up=0), collectors=("loadavg",))
    status, _, body = await get(server)
    assert status == 200
    assert sample(body.decode(), "agentmon_scrape_collector_success", collector="agent") == 0
    assert sample(body.decode(), "agentmon_scrape_collector_success", collector="loadavg") == 1


async def test_failing_collector_never_fails_the_scrape(make_server, monkeypatch):
    import psutil

    def boom(*a, **k):
        raise OSError("disk gone")

    monkeypatch.setattr(psutil, "disk_io_counters", boom)
    server = await make_server(None, collectors=("diskstats", "loadavg"))
    status, _, body = await get(server)
    text = body.decode()
    assert status == 200
    assert sample(text, "agentmon_scrape_collector_success", collector="diskstats") == 0
    assert sample(text, "agentmon_scrape_collector_success", collector="loadavg") == 1
    assert "agentmon_disk_read_bytes_total" not in text


async def test_single_flight_shares_one_collection(make_server):
    source = FakeSource(delay=0.3)
    server = await make_server(source, collectors=("loadavg",))
    results = await asyncio.gather(*(get(server) for _ in range(8)))
    assert all(status == 200 for status, _, _ in results)
    assert len({body for _, _, body in results}) == 1  # the very same exposition
    assert source.calls == 1
    assert server.scraper.collections == 1
    await get(server)  # the next scrape collects again
    assert server.scraper.collections == 2


async def test_in_flight_cap_answers_503(make_server):
    server = await make_server(FakeSource(delay=0.4), collectors=("loadavg",), max_requests=2)
    results = await asyncio.gather(*(get(server) for _ in range(5)))
    statuses = sorted(status for status, _, _ in results)
    assert statuses.count(200) == 2 and statuses.count(503) == 3


async def test_health_and_ready_never_collect(make_server):
    source = FakeSource()
    server = await make_server(source)
    for path in ("/-/healthy", "/-/ready", "/"):
        status, _, body = await get(server, path)
        assert status == 200, path
    assert b"/metrics" in (await get(server, "/"))[2]
    assert source.calls == 0 and server.scraper.collections == 0


async def test_gzip_level_1_when_accepted(make_server):
    server = await make_server(None, collectors=("cpu", "memory"))
    status, headers, body = await get(server, headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers.get("Content-Encoding") == "gzip"
    text = gzip.decompress(body).decode()
    assert "agentmon_cpu_seconds_total" in text
    _, headers, body = await get(server, headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "Content-Encoding" not in headers and body.startswith(b"# HELP")
    assert accepts_gzip("deflate, gzip;q=0.5") and not accepts_gzip("gzip;q=0") and not accepts_gzip(None)


async def test_openmetrics_only_when_text_not_accepted(make_server):
    server = await make_server(None, collectors=("loadavg",))
    _, headers, body = await get(server, headers={"Accept": "application/openmetrics-text;version=1.0.0"})
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


async def test_scrape_budget_from_prometheus_header(make_server, tmp_path):
    cfg = tmp_path / "exporter.yml"
    cfg.write_text("scrape:\n  timeout_seconds: 3\n")
    source = FakeSource()
    server = await make_server(source, collectors=("loadavg",), config=load_exporter_config(cfg))
    for header, expected in (("2", 1.8), ("10", 3.0), ("0.5", 0.45), (None, 3.0), ("junk", 3.0)):
        await get(server, headers={"X-Prometheus-Scrape-Timeout-Seconds": header} if header else {})
        assert source.budgets[-1] == pytest.approx(expected), header
    assert scrape_budget("10", 20) == pytest.approx(9.5)


async def test_large_output_rendered_off_the_event_loop(make_server, monkeypatch):
    threads = []
    real = scrape_mod.render_text

    def spy(fams):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(fams)

    monkeypatch.setattr(scrape_mod, "render_text", spy)
    server = await make_server(FakeSource(series=6000), collectors=("loadavg",))
    status, _, body = await get(server)
    assert status == 200 and body.count(b"agentmon_exchange_connected{") == 6000
    server2 = await make_server(FakeSource(series=10), collectors=("loadavg",))
    await get(server2)
    assert threads == [False, True]  # big: worker thread; small: inline


@pytest.mark.parametrize("isolated", [False, True], ids=["in-process", "child-process"])
async def test_reload_bad_config_keeps_old_then_good_config_applies(make_server, tmp_path, isolated):
    from exporter.cli import load_config_isolated

    cfg = tmp_path / "exporter.yml"
    cfg.write_text("collectors:\n  netdev:\n    device_exclude: '^lo$'\n")
    loader = {"config_loader": load_config_isolated} if isolated else {}
    server = await make_server(None, collectors=("netdev",), config_file=str(cfg), config=load_exporter_config(cfg),
                               **loader)
    _, _, body = await get(server)
    assert 'device="lo"' not in body.decode()

    cfg.write_text("collectors:\n  netdev:\n    device_exclude: '(['\n")
    status, msg = await post_reload(server)
    assert status == 500
    assert msg.startswith("reload failed, previous config kept:\n")
    assert "collectors.netdev.device_exclude" in msg and ":3:" in msg
    _, _, body = await get(server)
    text = body.decode()
    assert sample(text, "agentmon_config_last_reload_successful") == 0
    assert 'device="lo"' not in text  # old config still in force

    cfg.write_text("collectors:\n  netdev:\n    device_exclude: null\n    device_include: '^lo$'\n")
    assert (await post_reload(server))[0] == 200
    _, _, body = await get(server)
    text = body.decode()
    assert sample(text, "agentmon_config_last_reload_successful") == 1
    assert 'agentmon_network_receive_bytes_total{device="lo"}' in text


async def test_reload_rebuilds_the_business_source(make_server, tmp_path):
    cfg = tmp_path / "exporter.yml"
    cfg.write_text("{}\n")
    built: list[FakeSource] = []

    def factory(agent_cfg):
        built.append(FakeSource())
        return built[-1]

    first = FakeSource()
    server = await make_server(first, collectors=("loadavg",), config_file=str(cfg), source_factory=factory)
    ok, _ = await server.reload()
    assert ok and first.closed and server.scraper.source is built[0]


# -- TLS + basic auth ----------------------------------------------------------------------------

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl binary not installed")


def self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "server.crt", tmp / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@needs_openssl
async def test_tls_and_basic_auth(make_server, tmp_path):
    cert, key = self_signed(tmp_path)
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web-config.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {cert.name}\n  key_file: {key.name}\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
        "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
    )
    server = await make_server(FakeSource(), collectors=("loadavg",), web_config=load_web_config(web))
    ctx = ssl.create_default_context(cafile=str(cert))
    url = f"https://127.0.0.1:{server.port}/metrics"
    async with aiohttp.ClientSession() as session:
        async with session.get(url, ssl=ctx) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Basic realm=")
        for user, password in (("prometheus", "wrong"), ("nobody", "s3cret")):
            async with session.get(url, ssl=ctx, headers=basic(user, password)) as resp:
                assert resp.status == 401, user
        for _ in range(2):  # second time served from the bcrypt result cache
            async with session.get(url, ssl=ctx, headers=basic("prometheus", "s3cret")) as resp:
                assert resp.status == 200
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
                assert "agentmon_load1" in await resp.text()
        with pytest.raises(aiohttp.ClientConnectorError):  # untrusted certificate is refused
            async with session.get(url, ssl=ssl.create_default_context()):
                pass
    async with aiohttp.ClientSession() as session:  # plain HTTP to the TLS port fails
        with pytest.raises(aiohttp.ClientError):
            async with session.get(f"http://127.0.0.1:{server.port}/metrics") as resp:
                await resp.read()


def test_web_config_errors_name_the_key(tmp_path):
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  alice: not-a-bcrypt-hash\n")
    with pytest.raises(ConfigError) as err:
        load_web_config(web)
    assert "basic_auth_users.alice" in str(err.value) and ":2:" in str(err.value)
    web.write_text("tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n")
    with pytest.raises(ConfigError) as err:
        load_web_config(web)
    assert "tls_server_config.cert_file: file not found" in str(err.value)
    web.write_text("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: SSL3\n")
    with pytest.raises(ConfigError, match="tls_server_config.min_version"):
        load_web_config(web)


class BlockingSource(FakeSource):
    """A source whose collect() does synchronous CPU-like work (as mapping a huge document does)."""

    def __init__(self):
        super().__init__()
        self.threads: list[int] = []

    async def collect(self, timeout: float):
        self.threads.append(threading.get_ident())
        time.sleep(0.5)  # blocks whichever loop runs it
        return await super().collect(timeout)


async def test_threaded_source_keeps_the_server_loop_free(make_server):
    from exporter.scrape import ThreadedSource

    inner = BlockingSource()
    source = ThreadedSource(inner)
    server = await make_server(source, collectors=("loadavg",))
    scrape = asyncio.ensure_future(get(server))
    await asyncio.sleep(0.1)  # the scrape is now inside the blocking collect
    status, _, _ = await get(server, "/-/healthy")
    assert status == 200 and not scrape.done()  # answered while the source was still busy
    status, _, body = await scrape
    assert status == 200 and b'agentmon_exchange_connected{exchange="ex0"}' in body
    assert inner.threads and inner.threads[0] != threading.get_ident()
    await server.stop()
    assert inner.closed


async def test_hung_network_mount_times_out_without_piling_up_threads(monkeypatch):
    """statvfs on a dead NFS server blocks: the filesystem collector then runs in the worker thread,
    fails this scrape at the deadline, is skipped (not restarted) while still stuck, recovers after."""
    import psutil

    from exporter.scrape import Scraper

    Part = type(psutil.disk_partitions()[0]) if psutil.disk_partitions() else None
    assert Part is not None
    parts = [Part("/dev/sda1", "/", "ext4", "rw"), Part("nas:/export", "/mnt/nas", "nfs4", "rw")]
    monkeypatch.setattr(psutil, "disk_partitions", lambda all=False: parts)
    release = threading.Event()
    calls: list[str] = []

    def statvfs(path):
        calls.append(path)
        if path == "/mnt/nas":
            release.wait(10)
        return os.statvfs("/")

    scraper = Scraper(ExporterSettings(collectors=("filesystem", "loadavg")))
    fs = scraper._state.collectors[0]
    fs.statvfs = statvfs
    try:
        text = (await scraper.scrape(False, budget=0.3)).body.decode()
        assert sample(text, "agentmon_scrape_collector_success", collector="filesystem") == 0
        assert sample(text, "agentmon_scrape_collector_success", collector="loadavg") == 1
        n = len(calls)
        text = (await scraper.scrape(False, budget=0.3)).body.decode()
        assert sample(text, "agentmon_scrape_collector_success", collector="filesystem") == 0
        assert len(calls) == n  # still stuck: no second thread started
        release.set()
        for _ in range(50):  # the stuck thread finishes on its own
            if not scraper._system_busy:
                break
            await asyncio.sleep(0.05)
        text = (await scraper.scrape(False, budget=5)).body.decode()
        assert sample(text, "agentmon_scrape_collector_success", collector="filesystem") == 1
        assert 'mountpoint="/mnt/nas"' in text
    finally:
        release.set()
        scraper.close()


def test_filesystem_runs_inline_without_network_mounts(monkeypatch):
    import psutil

    from exporter.collectors.filesystem import FilesystemCollector

    Part = type(psutil.disk_partitions()[0])
    fs = FilesystemCollector("agentmon", statvfs=lambda p: os.statvfs("/"))
    assert fs.may_block  # unknown mount table: be careful on the first scrape
    monkeypatch.setattr(psutil, "disk_partitions", lambda all=False: [Part("/dev/sda1", "/", "ext4", "rw")])
    list(fs.collect())
    assert not fs.may_block
    monkeypatch.setattr(psutil, "disk_partitions", lambda all=False: [Part("srv:/x", "/x", "nfs", "rw")])
    list(fs.collect())
    assert fs.may_block


async def test_custom_telemetry_path_and_extra_collectors(make_server):
    """An embedder's own per-app CollectorRegistry (never the global one) rides along as a collector."""
    from prometheus_client import CollectorRegistry, Counter

    registry = CollectorRegistry(auto_describe=False)
    ticks = Counter("agent_ticks", "Loop ticks of the embedding agent.", registry=registry)
    ticks.inc(3)

    class Broken:
        name = "broken_extra"

        def collect(self):
            raise RuntimeError("no")

    settings = ExporterSettings(listen_address="127.0.0.1:0", collectors=("loadavg",), telemetry_path="/custom")
    server = ExporterServer(settings, None, extra_collectors=[registry, Broken()])
    await server.start()
    try:
        status, _, body = await get(server, "/custom")
        text = body.decode()
        assert status == 200 and sample(text, "agent_ticks_total") == 3
        assert "agent_ticks_created" not in text  # no _created series, even from live Counters
        assert sample(text, "agentmon_scrape_collector_success", collector="CollectorRegistry") == 1
        assert sample(text, "agentmon_scrape_collector_success", collector="broken_extra") == 0
        assert (await get(server, "/metrics"))[0] == 404
        assert b'href="/custom"' in (await get(server, "/"))[2]
    finally:
        await server.stop()


async def test_source_ignoring_its_budget_still_yields_agent_up_zero(make_server):
    class Stuck(FakeSource):
        async def collect(self, timeout):
            await asyncio.sleep(30)  # ignores the budget it was given

    class Raising(FakeSource):
        async def collect(self, timeout):
            raise RuntimeError("bug")

    for source in (Stuck(), Raising()):
        server = await make_server(source, collectors=("loadavg",))
        status, _, body = await get(server, headers={"X-Prometheus-Scrape-Timeout-Seconds": "0.5"})
        text = body.decode()
        assert status == 200
        assert sample(text, "agentmon_agent_up") == 0
        assert sample(text, "agentmon_scrape_collector_success", collector="agent") == 0
        assert sample(text, "agentmon_load1") >= 0


@needs_openssl
async def test_reload_rotates_certificate_and_users(make_server, tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    cert1, key1 = self_signed(first)
    cert2, key2 = self_signed(second)
    web = tmp_path / "web.yml"

    def write(cert, key, password: bytes):
        hashed = bcrypt.hashpw(password, bcrypt.gensalt(rounds=4)).decode()
        web.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
                       f"basic_auth_users:\n  prometheus: '{hashed}'\n")

    write(cert1, key1, b"old")
    server = await make_server(None, collectors=("loadavg",), web_config_file=str(web))
    url = f"https://127.0.0.1:{server.port}/metrics"

    async def status(cafile, password):
        ctx = ssl.create_default_context(cafile=str(cafile))
        async with aiohttp.ClientSession() as session, session.get(
            url, ssl=ctx, headers=basic("prometheus", password)
        ) as resp:
            return resp.status

    assert await status(cert1, "old") == 200
    write(cert2, key2, b"new")
    ok, msg = await server.reload()
    assert ok, msg
    assert await status(cert2, "new") == 200
    assert await status(cert2, "old") == 401
    with pytest.raises(aiohttp.ClientConnectorError):  # the old certificate is no longer served
        await status(cert1, "new")

    web.write_text("basic_auth_users:\n  prometheus: '$2b$04$invalid'\n")
    ok, msg = await server.reload()
    assert not ok and "basic_auth_users.prometheus" in msg
    assert await status(cert2, "new") == 200  # previous web config kept
