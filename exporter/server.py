"""agent-exporter's aiohttp server: /metrics, the landing page, health/ready, reload; TLS + basic auth.

Usable standalone (exporter.cli) or inside an application's own asyncio loop (exporter.embed):

    server = ExporterServer(ExporterSettings(listen_address="127.0.0.1:0"), source)
    await server.start(); print(server.port); ...; await server.stop()
"""

from __future__ import annotations

import asyncio
import html
import logging
import sys
from collections.abc import Callable, Sequence

from aiohttp import web

from agentmon.cliflags import split_host_port
from agentmon.webconfig import WebConfig, WebGuard, load_web_config
from exporter.config import ExporterConfig, ExporterSettings, load_exporter_config
from exporter.render import wants_openmetrics
from exporter.scrape import BusinessSource, PromCollector, Scraper, scrape_budget

log = logging.getLogger("exporter.server")

SourceFactory = Callable[[dict | None], "BusinessSource | None"]
ConfigLoader = Callable[[str | None], ExporterConfig]


class ConfigFileInvalid(Exception):  # noqa: N818 - reads as a statement about the file
    """A config file with problems, as a loader that does not import agentmon.configload reports it
    (``str()``: one ``file:line: key.path: reason`` per line, like ConfigError)."""


def is_config_error(exc: BaseException) -> bool:
    """ConfigError (only possible once agentmon.configload was imported: checking never imports the
    validator stack) or ConfigFileInvalid."""
    if isinstance(exc, ConfigFileInvalid):
        return True
    configload = sys.modules.get("agentmon.configload")
    return configload is not None and isinstance(exc, configload.ConfigError)


def accepts_gzip(header: str | None) -> bool:
    """True when Accept-Encoding lists gzip with a non-zero q."""
    if not header:
        return False
    for part in header.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() != "gzip":
            continue
        q = 1.0
        for p in params.split(";"):
            k, _, v = p.strip().partition("=")
            if k.strip() == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        return q > 0
    return False


class ExporterServer:
    """The HTTP side of the exporter. ``source_factory`` (CLI) rebuilds the business source from the
    ``agent:`` section on reload; without it the given ``source`` is kept across reloads (embedding)."""

    def __init__(
        self,
        settings: ExporterSettings,
        source: BusinessSource | None = None,
        extra_collectors: Sequence[PromCollector] = (),
        *,
        source_factory: SourceFactory | None = None,
        web_config: WebConfig | None = None,
        config_loader: ConfigLoader = load_exporter_config,
    ):
        self.settings = settings
        self.scraper = Scraper(settings, source, extra_collectors)
        self.source_factory = source_factory
        self.config_loader = config_loader  # for reload; the CLI's runs validation in a child process
        self.web = WebGuard(web_config if web_config is not None else load_web_config(settings.web_config_file))
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._inflight = 0
        self._ready = False
        self._reload_lock = asyncio.Lock()
        self._pusher = None
        self.app = self._make_app()

    # -- app -----------------------------------------------------------------------------------
    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self.web.middleware()])
        path = self.settings.telemetry_path
        app.router.add_get("/", self.handle_landing)
        app.router.add_get(path, self.handle_metrics)
        app.router.add_get("/-/healthy", self.handle_healthy)
        app.router.add_get("/-/ready", self.handle_ready)
        app.router.add_post("/-/reload", self.handle_reload)
        return app

    async def handle_landing(self, request: web.Request) -> web.Response:
        path = html.escape(self.settings.telemetry_path)
        body = (
            "<!doctype html><html><head><title>agent-exporter</title></head><body>"
            "<h1>agent-exporter</h1><p>Prometheus exporter for the market-data agent.</p><ul>"
            f'<li><a href="{path}">{path}</a> &mdash; metrics</li>'
            '<li><a href="/-/healthy">/-/healthy</a> &mdash; liveness (never collects)</li>'
            '<li><a href="/-/ready">/-/ready</a> &mdash; readiness (never collects)</li>'
            "<li>POST /-/reload &mdash; reload the configuration file</li>"
            "</ul></body></html>"
        )
        return web.Response(text=body, content_type="text/html")

    async def handle_healthy(self, request: web.Request) -> web.Response:
        return web.Response(text="Healthy\n")

    async def handle_ready(self, request: web.Request) -> web.Response:
        if self._ready:
            return web.Response(text="Ready\n")
        return web.Response(status=503, text="Not ready\n")

    async def handle_reload(self, request: web.Request) -> web.Response:
        ok, message = await self.reload()
        return web.Response(status=200 if ok else 500, text=message + "\n")

    async def handle_metrics(self, request: web.Request) -> web.Response:
        cap = self.settings.max_requests
        if cap > 0 and self._inflight >= cap:
            return web.Response(status=503, text=f"too many concurrent scrapes (limit {cap})\n")
        self._inflight += 1
        try:
            budget = scrape_budget(
                request.headers.get("X-Prometheus-Scrape-Timeout-Seconds"), self.scraper.config.scrape_timeout
            )
            exp = await self.scraper.scrape(wants_openmetrics(request.headers.get("Accept")), budget)
            headers = {"Content-Type": exp.content_type}
            if accepts_gzip(request.headers.get("Accept-Encoding")):
                headers["Content-Encoding"] = "gzip"
                body = await self.scraper.gzipped(exp)
            else:
                body = exp.body
            return web.Response(body=body, headers=headers)
        finally:
            self._inflight -= 1

    # -- reload --------------------------------------------------------------------------------
    async def reload(self) -> tuple[bool, str]:
        """Load the config file (and the web config file) again; on any problem keep the running
        configuration and report why."""
        async with self._reload_lock:
            filename = self.settings.config_file
            web_file = self.settings.web_config_file
            try:
                config = await asyncio.to_thread(self.config_loader, filename)
                web_config = await asyncio.to_thread(load_web_config, web_file) if web_file else None
                if web_config is not None:
                    self.web.check_update(web_config)
                source = self.scraper.source
                if self.source_factory is not None:
                    source = self.source_factory(config.agent)
            except Exception as exc:
                self.scraper.reload_failed()
                if is_config_error(exc):
                    log.error("config reload failed; keeping the previous config", extra={"err": str(exc)})
                    return False, f"reload failed, previous config kept:\n{exc}"
                log.error("config reload failed; keeping the previous config",
                          extra={"err": f"{type(exc).__name__}: {exc}"})
                return False, f"reload failed, previous config kept: {type(exc).__name__}: {exc}"
            if web_config is not None:
                self.web.update(web_config)
            old = self.scraper.swap(config, source)
            self.settings.config = config
            if old is not None and old is not source:
                await old.close()
            log.info("config reloaded", extra={"file": filename or "<none>"})
            return True, "config reloaded"

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    async def start(self) -> None:
        host, port = split_host_port(self.settings.listen_address)
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=self.web.ssl_context, backlog=128)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self._port = sockets[0].getsockname()[1] if sockets else port
        self._ready = True
        if self.settings.push is not None:
            from exporter.push import Pusher

            self._pusher = Pusher(self.scraper, self.settings.push)
            self._pusher.start()
        scheme = "https" if self.web.ssl_context is not None else "http"
        log.info("listening", extra={"address": f"{scheme}://{host}:{self._port}{self.settings.telemetry_path}",
                                     "collectors": ",".join(self.settings.collectors),
                                     "auth": self.web.auth is not None})

    async def stop(self) -> None:
        self._ready = False
        if self._pusher is not None:
            await self._pusher.stop()
            self._pusher = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        source = self.scraper.source
        if source is not None:
            await source.close()
        self.scraper.close()
