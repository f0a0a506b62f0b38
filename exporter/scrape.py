"""One scrape: run every enabled collector in isolation, await the business source, render — shared.

* Every scrape builds fresh families (no long-lived metric objects).
* Collectors that may block (filesystem while network mounts exist: statvfs on a dead server)
  run in a worker thread with the scrape's deadline; one still stuck from an earlier scrape is
  reported as failed instead of starting a second thread. The /proc readers (and filesystem on
  local disks) run inline (~0.5 ms together): a thread hop costs more than that.
* The business source is awaited concurrently with the scrape budget.
* Concurrent scrapes of the same format share one collection in flight (single-flight).
* Renders above ``render_thread_threshold`` series run in the worker thread, so the event loop is
  never blocked by a large business document.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import platform
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.collectors import SystemCollector, build_collectors
from exporter.collectors.timing import CollectorResult, FailureLog, run_timed, scrape_families
from exporter.config import ExporterConfig, ExporterSettings
from exporter.render import (
    OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    render_openmetrics,
    render_text,
    series_count,
)

log = logging.getLogger("exporter.scrape")

VERSION = "0.1.0"
GZIP_LEVEL = 1


class BusinessSource(Protocol):
    async def collect(self, timeout: float) -> list[Metric]: ...

    async def close(self) -> None: ...


class PromCollector(Protocol):
    """A prometheus_client-style collector (``collect()`` yields families), e.g. from an embedder."""

    def collect(self) -> Iterable[Metric]: ...


class ThreadedSource:
    """Runs a business source on a private event loop in its own thread.

    Why: mapping a big stats document (and json.loads of it) is CPU work inside the source; on the
    server's loop a 10k-series document would block /-/healthy and concurrent scrapes for ~100 ms.
    Used by the CLI for HTTP sources. Not for in-process providers: they read the agent's state and
    must stay on the agent's loop (exporter.embed passes its source directly)."""

    def __init__(self, source: BusinessSource, name: str = "agentmon-business"):
        self.source = source
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    async def collect(self, timeout: float) -> list[Metric]:
        fut = asyncio.run_coroutine_threadsafe(self.source.collect(timeout), self._loop)
        return await asyncio.wrap_future(fut)

    async def close(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.source.close(), self._loop))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.to_thread(self._thread.join, 10)
            if not self._thread.is_alive():
                self._loop.close()


def scrape_budget(header: str | None, cap: float) -> float:
    """Time for the business source: X-Prometheus-Scrape-Timeout-Seconds minus min(0.5 s, 10 %),
    never above ``cap`` (config ``scrape.timeout_seconds``); ``cap`` without a usable header."""
    try:
        t = float(header) if header else 0.0
    except ValueError:
        t = 0.0
    if not t > 0:
        return cap
    return max(0.01, min(cap, t - min(0.5, 0.1 * t)))


@dataclass
class Exposition:
    body: bytes
    content_type: str
    series: int
    _gzipped: bytes | None = field(default=None, repr=False)

    def gzipped(self) -> bytes:
        if self._gzipped is None:
            self._gzipped = gzip.compress(self.body, compresslevel=GZIP_LEVEL)
        return self._gzipped


@dataclass(frozen=True)
class _State:
    """What a scrape reads; replaced as a whole on reload so a scrape never sees half a config."""

    config: ExporterConfig
    collectors: tuple[SystemCollector, ...]
    source: BusinessSource | None


class Scraper:
    def __init__(
        self,
        settings: ExporterSettings,
        source: BusinessSource | None = None,
        extra_collectors: Sequence[PromCollector] = (),
    ):
        self.settings = settings
        self.ns = settings.namespace
        self.extra_collectors = tuple(extra_collectors)
        self._state = _State(settings.config, self._build(settings.config), source)
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="agentmon-collect")
        self._flights: dict[bool, asyncio.Future[Exposition]] = {}
        self._system_busy = False
        self.collections = 0  # collections actually run (tests check single-flight with it)
        self._failures = FailureLog()
        self.last_reload_ok = True
        self.last_reload_success = time.time()

    # -- config ------------------------------------------------------------------------------
    def _build(self, config: ExporterConfig) -> tuple[SystemCollector, ...]:
        return tuple(build_collectors(self.settings.collectors, self.ns, config.collector_options))

    @property
    def config(self) -> ExporterConfig:
        return self._state.config

    @property
    def source(self) -> BusinessSource | None:
        return self._state.source

    def swap(self, config: ExporterConfig, source: BusinessSource | None) -> BusinessSource | None:
        """Install a new config (and source) atomically; returns the previous source."""
        old = self._state.source
        self._state = _State(config, self._build(config), source)
        self.last_reload_ok = True
        self.last_reload_success = time.time()
        return old

    def reload_failed(self) -> None:
        self.last_reload_ok = False

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- collection --------------------------------------------------------------------------
    def _run_sync(self, items: Sequence[tuple[str, Any]], results: list[CollectorResult]) -> None:
        try:
            for name, collect in items:
                results.append(run_timed(name, collect))
        finally:
            self._system_busy = False

    def _start_sync(self, items: Sequence[tuple[str, Any]]) -> tuple[Future | None, list[CollectorResult]]:
        """Submit the thread-bound collectors; returns (future or None, the list they append to)."""
        if not items:
            return None, []
        if self._system_busy:
            log.warning("collectors still running from an earlier scrape; skipped")
            return None, [CollectorResult(name, error="still running") for name, _ in items]
        results: list[CollectorResult] = []
        self._system_busy = True
        return self._executor.submit(self._run_sync, items, results), results

    async def _finish_sync(
        self, items: Sequence[tuple[str, Any]], fut: Future | None, results: list[CollectorResult], deadline: float
    ) -> list[CollectorResult]:
        """Results of the thread-bound collectors; the ones not done by ``deadline`` count as failed."""
        if fut is None or fut.done():
            return list(results)
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(fut)), max(0.0, deadline - loop.time()))
        except TimeoutError:
            done = list(results)
            names = {r.name for r in done}
            late = [name for name, _ in items if name not in names]
            log.warning("collectors timed out", extra={"collectors": ",".join(late)})
            waited = time.perf_counter() - started
            return done + [CollectorResult(name, duration=waited, error="timeout") for name in late]
        return list(results)

    async def _collect_business(self, source: BusinessSource, budget: float) -> CollectorResult:
        """The source enforces ``budget`` itself; this is the backstop for one that does not (or
        raises): it then reports ``<ns>_agent_up 0`` itself, so alerts on agent_up still see a 0
        rather than a missing series."""
        t0 = time.perf_counter()
        try:
            families = list(await asyncio.wait_for(source.collect(budget), budget + 0.05))
        except Exception as exc:  # TimeoutError included; the source promises never to raise
            reason = "timeout" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            log.warning("business source failed", extra={"err": reason})
            up = GaugeMetricFamily(f"{self.ns}_agent_up", "1 if the agent's stats source answered and parsed in this scrape.",
                                   value=0.0)
            return CollectorResult("agent", [up], time.perf_counter() - t0, False, reason)
        up_name = f"{self.ns}_agent_up"
        success = True
        for fam in families:
            if fam.name == up_name and fam.samples:
                success = fam.samples[0].value == 1
                break
        return CollectorResult("agent", families, time.perf_counter() - t0, success)

    def _own_families(self) -> list[Metric]:
        ns = self.ns
        info = GaugeMetricFamily(
            f"{ns}_exporter_build_info", "agent-exporter build information; always 1.",
            labels=["version", "python_version"],
        )
        info.add_metric([VERSION, platform.python_version()], 1.0)
        return [
            GaugeMetricFamily(
                f"{ns}_config_last_reload_successful", "1 if the last config reload succeeded (0: old config kept).",
                value=1.0 if self.last_reload_ok else 0.0,
            ),
            GaugeMetricFamily(
                f"{ns}_config_last_reload_success_timestamp_seconds", "Time of the last successful config load, unix seconds.",
                value=self.last_reload_success,
            ),
            info,
        ]

    async def collect(self, budget: float | None = None) -> list[Metric]:
        """All families of one scrape (system, business, extra, scrape gauges, self metrics).

        Collectors that may block (statvfs) and embedders' collectors run in the worker thread,
        the business source is awaited, and the /proc readers run inline meanwhile (~0.4 ms)."""
        state = self._state
        budget = state.config.scrape_timeout if budget is None else budget
        self.collections += 1
        inline: list[tuple[str, Any]] = []
        threaded: list[tuple[str, Any]] = []
        for c in state.collectors:
            (threaded if getattr(c, "may_block", False) else inline).append((c.name, c.collect))
        threaded += [(getattr(c, "name", type(c).__name__), c.collect) for c in self.extra_collectors]
        deadline = asyncio.get_running_loop().time() + budget
        business_task = (
            asyncio.ensure_future(self._collect_business(state.source, budget)) if state.source is not None else None
        )
        # Inline first, then the thread: running Python in both at once only fights over the GIL.
        results = [run_timed(name, collect) for name, collect in inline]
        fut, sync_results = self._start_sync(threaded)
        results += await self._finish_sync(threaded, fut, sync_results, deadline)
        if business_task is not None:
            results.append(await business_task)
        self._failures.note(results)
        order = {c.name: i for i, c in enumerate(state.collectors)}
        results.sort(key=lambda r: order.get(r.name, len(order)))
        families: list[Metric] = []
        for r in results:
            families.extend(r.families)
        families.extend(scrape_families(self.ns, results))
        families.extend(self._own_families())
        return families

    async def _scrape(self, openmetrics: bool, budget: float | None) -> Exposition:
        families = await self.collect(budget)
        series = series_count(families)
        render = render_openmetrics if openmetrics else render_text
        if series > self.settings.render_thread_threshold:
            body = await asyncio.get_running_loop().run_in_executor(self._executor, render, families)
        else:
            body = render(families)
        return Exposition(body, OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE, series)

    async def scrape(self, openmetrics: bool = False, budget: float | None = None) -> Exposition:
        """Collect and render, joining a scrape of the same format already in flight."""
        fut = self._flights.get(openmetrics)
        if fut is None:
            fut = asyncio.ensure_future(self._scrape(openmetrics, budget))
            self._flights[openmetrics] = fut

            def done(f: asyncio.Future, key: bool = openmetrics) -> None:
                if self._flights.get(key) is f:
                    del self._flights[key]
                if not f.cancelled():
                    f.exception()  # retrieved: waiters may all have gone

            fut.add_done_callback(done)
        return await asyncio.shield(fut)

    async def gzipped(self, exp: Exposition) -> bytes:
        if exp._gzipped is None and len(exp.body) > 1_000_000:
            return await asyncio.get_running_loop().run_in_executor(self._executor, exp.gzipped)
        return exp.gzipped()
