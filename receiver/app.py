"""aiohttp application: AlertManager ingest, operational endpoints and the JSON API.

Reply semantics (why AlertManager behaves well with us): 200 only after the notification is
committed to the outbox; 503 when it cannot be committed, so AlertManager retries; 4xx only for
requests that can never succeed (bad JSON, schema, unknown route, too large, unauthorized).
"""

from __future__ import annotations

import asyncio
import functools
import html
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agentmon.configload import ConfigError
from agentmon.redact import redact_text, redact_url
from receiver.auth import authorized, challenge
from receiver.compose import notification_to_dict, request_body_text
from receiver.ingest import IngestError, ingest, prepare
from receiver.runtime import Runtime
from receiver.store import StoreUnavailable

log = logging.getLogger(__name__)

RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)
READ_CHUNK = 64 * 1024


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, default=str), status=status,
        content_type="application/json", headers=headers,
    )


def _error(status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return _json({"status": "error", "errorType": error_type, "error": message}, status, headers)


def _limit(request: web.Request, default: int, maximum: int = 1000) -> int:
    try:
        return max(1, min(maximum, int(request.query.get("limit", default))))
    except ValueError:
        raise web.HTTPBadRequest(text="limit must be an integer") from None


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None:
        if request.content_length > limit:
            raise IngestError(413, "too_large", f"body of {request.content_length} bytes exceeds max_body_bytes ({limit})")
        try:
            return await request.content.readexactly(request.content_length)
        except asyncio.IncompleteReadError:
            raise IngestError(400, "not_json", "the body is shorter than its Content-Length") from None
    chunks, size = [], 0  # chunked upload: count while reading
    async for chunk in request.content.iter_chunked(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise IngestError(413, "too_large", f"body exceeds max_body_bytes ({limit} bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_auth(rt: Runtime, request: web.Request, route: str | None = None) -> web.Response | None:
    cfg = rt.config
    auth = cfg.auth_for_route(route) if route is not None else cfg.auth
    if authorized(auth, request.headers.get("Authorization")):
        return None
    rt.metrics.rejected.labels(reason="unauthorized").inc()
    log.warning("unauthorized request", extra={"path": request.path, "remote": request.remote})
    return _error(401, "unauthorized", "missing or wrong credentials (Bearer token or HTTP Basic)",
                  {"WWW-Authenticate": challenge(auth)} if auth else None)


# -- ingest ----------------------------------------------------------------------------------------


async def post_alerts(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    cfg = rt.config  # one snapshot for the whole request, even if a reload happens meanwhile
    route = request.match_info["route"]
    denied = _check_auth(rt, request, route if route in cfg.routes else None)
    if denied:
        return denied
    try:
        if route not in cfg.routes:
            known = ", ".join(f"/alerts/{r}" for r in sorted(cfg.routes))
            raise IngestError(404, "unknown_route", f"unknown route {route!r}: configured routes are {known}")
        body = await _read_body(request, cfg.max_body_bytes)
        notification = prepare(body, request.headers.get("Content-Type"), route)
    except IngestError as exc:
        rt.metrics.rejected.labels(reason=exc.reason).inc()
        log.info("notification refused", extra={"route": route, "status": exc.status, "reason": exc.reason, "err": exc.message})
        return _error(exc.status, exc.reason, exc.message)
    targets, skipped = rt.targets_for(notification)
    try:
        result = await rt.store.accept(notification, targets, skipped, dedup_window=cfg.dedup_window)
    except StoreUnavailable as exc:
        rt.metrics.rejected.labels(reason="store_unavailable").inc()
        log.error("cannot store notification, asking the sender to retry", extra={"route": route, "err": str(exc)})
        return _error(503, "store_unavailable", f"the notification could not be stored, retry later: {exc}")
    if result.duplicate:
        rt.metrics.deduplicated.labels(route=route).inc()
        log.info("duplicate notification acknowledged", extra={"route": route, "duplicate_of": result.duplicate_of})
        return _json({"status": "success", "deduplicated": True, "duplicate_of": result.duplicate_of})
    rt.metrics.received_child(route, notification.status).inc()
    rt.engine.wake(targets)
    log.debug("notification accepted", extra={"route": route, "id": notification.id, "targets": targets})
    return _json({
        "status": "success", "id": notification.id, "deduplicated": False,
        "targets": targets, "skipped": [t for t, _ in skipped],
    })


# -- API -------------------------------------------------------------------------------------------

ApiHandler = Callable[[Runtime, web.Request], Awaitable[web.Response]]


def _api(handler: ApiHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Wrap an API/operational handler: inbound auth first, an unavailable store answers 503."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.Response:
        rt = request.app[RUNTIME]
        denied = _check_auth(rt, request)
        if denied:
            return denied
        try:
            return await handler(rt, request)
        except StoreUnavailable as exc:
            return _error(503, "store_unavailable", str(exc))

    return wrapped


@_api
async def api_status(rt: Runtime, request: web.Request) -> web.Response:
    try:
        stats = await rt.store.queue_stats()
        counts = await rt.store.counts()
        store = {"path": str(rt.store.path), "available": True, **counts}
    except StoreUnavailable as exc:
        stats, store = {}, {"path": str(rt.store.path), "available": False, "error": str(exc)}
    now = time.time()
    workers = rt.engine.status()
    queues = {
        name: {"pending": stats.get(name, (0, None))[0],
               "oldest_age_seconds": round(now - stats[name][1], 3) if name in stats else 0.0,
               **workers.get(name, {})}
        for name in set(rt.config.targets) | set(stats)
    }
    return _json({"status": "success", "data": {
        "version": rt.version,
        "started_at": rt.started_at,
        "config": rt.config.describe(rt.registry or _registry_of(rt)),
        "last_reload_error": rt.last_reload_error,
        "queues": queues,
        "store": store,
    }})


def _registry_of(rt: Runtime) -> dict[str, type]:
    return {type(c).type: type(c) for c in rt.loaded.channels.values()}


@_api
async def api_dead_letters(rt: Runtime, request: web.Request) -> web.Response:
    rows = await rt.store.dead_letters(_limit(request, 100))
    for row in rows:
        row["reason"] = redact_text(row["reason"] or "")
    return _json({"status": "success", "data": rows})


@_api
async def api_retry_dead_letters(rt: Runtime, request: web.Request) -> web.Response:
    job = request.query.get("job_id")
    try:
        count = await rt.store.retry_dead(int(job) if job else None)
    except ValueError:
        return _error(400, "bad_data", "job_id must be an integer")
    rt.engine.wake(rt.config.targets)
    return _json({"status": "success", "data": {"requeued": count}})


@_api
async def api_notifications(rt: Runtime, request: web.Request) -> web.Response:
    rows = await rt.store.recent_notifications(_limit(request, 50))
    for row in rows:
        for d in row["deliveries"]:
            d["last_error"] = redact_text(d["last_error"]) if d["last_error"] else None
    return _json({"status": "success", "data": rows})


@_api
async def api_render(rt: Runtime, request: web.Request) -> web.Response:
    """POST an AlertManager payload, get back exactly what ``?target=`` would receive (nothing sent)."""
    name = request.query.get("target", "")
    if name not in rt.config.targets:
        known = ", ".join(sorted(rt.config.targets))
        return _error(400, "bad_data", f"unknown target {name!r} (?target= one of: {known})")
    try:
        body = await _read_body(request, rt.config.max_body_bytes)
        notification = ingest(body, request.headers.get("Content-Type"), "render")
    except IngestError as exc:
        return _error(exc.status, exc.reason, exc.message)
    try:
        req = rt.render(name, [notification])
    except Exception as exc:
        return _error(422, "render_failed", f"{type(exc).__name__}: {redact_text(str(exc))}")
    return _json({"status": "success", "data": {
        "target": name,
        "channel": rt.config.targets[name].type,
        "method": req.method,
        "url": redact_url(req.url) if req.url else "",
        "json": req.json,
        "body": request_body_text(req),
        "notification": notification_to_dict(notification),
    }})


# -- operational endpoints -------------------------------------------------------------------------


async def metrics(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    try:
        rt.metrics.set_queue(await rt.store.queue_stats(), {n: t.type for n, t in rt.config.targets.items()})
    except StoreUnavailable:
        pass  # counters still useful; queue gauges keep their last values
    return web.Response(body=generate_latest(rt.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="alert-receiver is Healthy.\n")


async def ready(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    if rt.running and rt.store.is_open:
        return web.Response(text="alert-receiver is Ready.\n")
    return web.Response(text="alert-receiver is not ready: the outbox is not open.\n", status=503)


@_api
async def reload(rt: Runtime, request: web.Request) -> web.Response:
    try:
        await rt.reload()
    except ConfigError as exc:
        return web.Response(text=f"failed to reload config: {exc}\n", status=500)
    return web.Response(text="config reloaded\n")


async def landing(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    cfg = rt.config.describe(rt.registry or _registry_of(rt))
    e = html.escape
    routes = "".join(
        f"<tr><td><code>POST /alerts/{e(r)}</code></td><td>{e(', '.join(ts))}</td></tr>" for r, ts in cfg["routes"].items()
    )
    targets = "".join(
        f"<tr><td>{e(n)}</td><td>{e(t['type'])}</td><td><code>{e(json.dumps({k: v for k, v in t.items() if k not in ('name', 'type')}, ensure_ascii=False))}</code></td></tr>"
        for n, t in cfg["targets"].items()
    )
    links = "".join(
        f'<li><a href="{p}">{p}</a></li>'
        for p in ("/metrics", "/-/healthy", "/-/ready", "/api/v1/status", "/api/v1/notifications?limit=20",
                  "/api/v1/dead-letters")
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>alert-receiver</title></head>
<body><h1>alert-receiver {e(rt.version)}</h1>
<p>AlertManager webhook receiver. Point an AlertManager <code>webhook_configs</code> url at a route below.</p>
<ul>{links}</ul>
<h2>Routes</h2><table border="1" cellpadding="4"><tr><th>endpoint</th><th>targets</th></tr>{routes}</table>
<h2>Targets</h2><table border="1" cellpadding="4"><tr><th>name</th><th>type</th><th>settings (secrets redacted)</th></tr>{targets}</table>
</body></html>"""
    return web.Response(text=page, content_type="text/html")


def build_app(rt: Runtime, *, manage_runtime: bool = True) -> web.Application:
    """The aiohttp app; with ``manage_runtime`` the runtime is started/stopped with the app."""
    # bodies are size-checked against max_body_bytes while streaming (413), not by aiohttp
    app = web.Application(client_max_size=2**40)
    app[RUNTIME] = rt
    app.router.add_get("/", landing)
    app.router.add_post("/alerts/{route}", post_alerts)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    app.router.add_put("/-/reload", reload)
    app.router.add_get("/api/v1/status", api_status)
    app.router.add_get("/api/v1/dead-letters", api_dead_letters)
    app.router.add_post("/api/v1/dead-letters/retry", api_retry_dead_letters)
    app.router.add_get("/api/v1/notifications", api_notifications)
    app.router.add_post("/api/v1/render", api_render)
    if manage_runtime:

        async def lifecycle(app: web.Application):
            await rt.start()
            yield
            await rt.stop()

        app.cleanup_ctx.append(lifecycle)
    return app
