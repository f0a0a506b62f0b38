"""Push mode: for hosts Prometheus cannot scrape, PUT the same exposition to a Pushgateway
periodically (``PUT /metrics/job/<job>/instance/<instance>``). A failed push is logged and simply
retried at the next interval; PUT replaces the whole group, so series that vanished disappear."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from urllib.parse import quote

import aiohttp
from yarl import URL

from exporter.config import PushSettings
from exporter.scrape import Scraper

log = logging.getLogger("exporter.push")


def _segment(label: str, value: str) -> str:
    """A grouping-key path segment; values with '/' (or empty) use the Pushgateway's base64 form."""
    if not value or "/" in value:
        encoded = base64.urlsafe_b64encode(value.encode()).decode() or "="
        return f"{label}@base64/{encoded}"
    return f"{label}/{quote(value, safe='')}"


def push_url(settings: PushSettings) -> str:
    base = settings.gateway_url.rstrip("/")
    return f"{base}/metrics/{_segment('job', settings.job)}/{_segment('instance', settings.instance)}"


class Pusher:
    def __init__(self, scraper: Scraper, settings: PushSettings):
        self.scraper = scraper
        self.settings = settings
        self.url = push_url(settings)
        self.display_url = str(URL(self.url).with_user(None))  # never log credentials
        self.pushes = 0
        self.failures = 0
        self._task: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None

    async def push_once(self) -> bool:
        budget = min(self.scraper.config.scrape_timeout, max(0.5, self.settings.interval * 0.8))
        exp = await self.scraper.scrape(False, budget)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=max(1.0, self.settings.interval)))
        try:
            async with self._session.put(self.url, data=exp.body, headers={"Content-Type": exp.content_type}) as resp:
                if resp.status >= 300:
                    text = (await resp.text())[:300]
                    raise RuntimeError(f"HTTP {resp.status}: {text.strip()}")
        except (TimeoutError, aiohttp.ClientError, RuntimeError) as exc:
            self.failures += 1
            log.warning("push to Pushgateway failed; retrying next interval",
                        extra={"url": self.display_url, "err": f"{type(exc).__name__}: {exc}"})
            return False
        self.pushes += 1
        log.debug("pushed", extra={"url": self.display_url, "series": exp.series})
        return True

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.push_once()
            except Exception:  # never let the loop die
                log.exception("push failed unexpectedly")
            await asyncio.sleep(max(0.0, self.settings.interval - (loop.time() - started)))

    def start(self) -> None:
        log.info("push mode on", extra={"url": self.display_url, "interval": self.settings.interval})
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None
