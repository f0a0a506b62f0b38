"""StatsSource: fetch the stats document once per scrape, map it, and add the source's own
metrics (agent_up, fetch duration, mapping errors). Implements exporter.business.BusinessSource."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from agentmon.redact import redact_text
from exporter.business.fetchers import FetchError, StatsFetcher
from exporter.business.mapping import Mapper, MappingResult

log = logging.getLogger("exporter.business")


class LogThrottle:
    """At most one log line per key per ``interval`` seconds; tells how many were suppressed."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str) -> int | None:
        """None when suppressed, else the number of lines suppressed since the last one."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._suppressed.pop(key, 0)


class StatsSource:
    """One stats source (HTTP or provider) with its mapping. Overlapping collect() calls share one
    in-flight fetch, so a slow agent is asked once however many scrapes are waiting."""

    def __init__(
        self,
        fetcher: StatsFetcher,
        mapper: Mapper,
        *,
        max_timeout: float,
        log_interval: float = 60.0,
    ):
        self.fetcher = fetcher
        self.mapper = mapper
        self.max_timeout = max_timeout
        ns = mapper.namespace
        self._up_name = f"{ns}_agent_up" if ns else "agent_up"
        self._duration_name = f"{ns}_agent_fetch_duration_seconds" if ns else "agent_fetch_duration_seconds"
        self._errors_name = f"{ns}_agent_mapping_errors_total" if ns else "agent_mapping_errors_total"
        # Counter kept across scrapes; every mapped metric starts at 0 so rate() works from the start.
        self._mapping_errors: dict[str, float] = dict.fromkeys(mapper.metric_names, 0.0)
        self._throttle = LogThrottle(log_interval)
        self._inflight: asyncio.Task[MappingResult] | None = None
        self._last_failure: str | None = ""  # "" = no outcome yet, None = last fetch succeeded

    async def collect(self, timeout: float) -> list[Metric]:
        budget = self.max_timeout if not timeout or timeout <= 0 else min(timeout, self.max_timeout)
        started = time.perf_counter()
        result: MappingResult | None = None
        try:
            async with asyncio.timeout(budget):
                result = await asyncio.shield(self._shared_fetch(budget))
        except TimeoutError:
            self._note_failure(f"timeout after {budget:.3g}s")
        except FetchError as exc:
            self._note_failure(str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not take the scrape down; the message may hold a URL
            log.error("agent stats collection failed", extra={
                "source": self.fetcher.description, "err": f"{type(exc).__name__}: {redact_text(str(exc))[:300]}"})
            self._note_failure(f"internal error: {type(exc).__name__}")
        duration = time.perf_counter() - started
        if result is not None:
            self._note_success()
        return self._own_metrics(result is not None, duration) + (result.families if result else [])

    def _shared_fetch(self, timeout: float) -> asyncio.Task[MappingResult]:
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.get_running_loop().create_task(self._fetch_and_map(timeout))
            self._inflight.add_done_callback(_retrieve)
        return self._inflight

    async def _fetch_and_map(self, timeout: float) -> MappingResult:
        async with asyncio.timeout(timeout):
            doc = await self.fetcher.fetch(timeout)
        if not isinstance(doc, dict):
            raise FetchError(f"stats document must be a JSON object, got {type(doc).__name__}")
        result = self.mapper.apply(doc)
        for name, count in result.errors.items():
            self._mapping_errors[name] = self._mapping_errors.get(name, 0.0) + count
            suppressed = self._throttle.allow(name)
            if suppressed is not None:
                log.warning(
                    "agent stats mapping error",
                    extra={"metric": name, "reason": result.reasons.get(name, ""), "count": count,
                           "suppressed_lines": suppressed},
                )
        return result

    def _own_metrics(self, up: bool, duration: float) -> list[Metric]:
        errors = CounterMetricFamily(
            self._errors_name, "Missing keys, non-numeric values and dropped series in the agent's stats, per mapped metric.",
            labels=["metric"],
        )
        for name, count in self._mapping_errors.items():
            errors.add_metric([name], count)
        return [
            GaugeMetricFamily(self._up_name, "1 if the agent's stats source answered and parsed in this scrape.",
                              value=1.0 if up else 0.0),
            GaugeMetricFamily(self._duration_name, "Seconds taken to fetch and map the agent's stats document.",
                              value=duration),
            errors,
        ]

    def _note_failure(self, reason: str) -> None:
        if reason != self._last_failure:
            log.warning("agent stats source down", extra={"source": self.fetcher.description, "reason": reason})
        else:
            log.debug("agent stats source still down", extra={"source": self.fetcher.description, "reason": reason})
        self._last_failure = reason

    def _note_success(self) -> None:
        if self._last_failure:
            log.info("agent stats source up", extra={"source": self.fetcher.description})
        self._last_failure = None

    async def close(self) -> None:
        if self._inflight is not None and not self._inflight.done():
            self._inflight.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._inflight
        self._inflight = None
        await self.fetcher.close()


def _retrieve(task: asyncio.Task) -> None:
    """Mark a shared fetch's exception as seen when every waiter already gave up on it."""
    if not task.cancelled():
        task.exception()
