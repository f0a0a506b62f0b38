"""A local fake generic-webhook endpoint for receiver tests and benchmarks.

It runs its own event loop in a thread, so sync tests, async tests and subprocess-based tests can
all use it. It records every request (also the ones it fails) and can be told to answer with a
status (5xx, 4xx), to hang (so the client times out) or to recover — per request or from now on.

    with Sink() as sink:
        sink.fail_next(3, status=503)         # next three requests → 503, then 200
        sink.set_default(status=400, body="invalid_payload")
        sink.set_default(delay=30)            # hang: the sender's timeout fires
        sink.wait_for(lambda s: len(s.delivered_ids()) >= 10, timeout=20)
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Behaviour:
    status: int = 200
    body: str = "ok"
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int  # status we replied with (0 if the client gave up first)
    at: float  # time.time() when it arrived
    url: str = ""  # as requested (a proxy sees the absolute target URL)

    def json(self) -> Any:
        return json.loads(self.body)

    def notification_ids(self) -> list[str]:
        """Notification ids carried by a generic-webhook body (one notification or a digest)."""
        try:
            doc = self.json()
        except ValueError:
            return []
        if isinstance(doc, dict) and isinstance(doc.get("notifications"), list):
            return [n.get("id") for n in doc["notifications"] if isinstance(n, dict) and n.get("id")]
        if isinstance(doc, dict) and doc.get("id"):
            return [doc["id"]]
        return []

    def idempotency_key(self) -> str | None:
        for k, v in self.headers.items():
            if k.lower() == "idempotency-key":
                return v
        return None


class Sink:
    def __init__(self, host: str = "127.0.0.1", ssl_context=None):
        self.host = host
        self.ssl_context = ssl_context  # serve HTTPS with this context
        self.port = 0
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._script: deque[Behaviour] = deque()
        self._default = Behaviour()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._started = threading.Event()

    # -- control ----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{self.host}:{self.port}/hook"

    def set_default(self, status: int = 200, body: str = "ok", delay: float = 0.0, headers: dict | None = None) -> None:
        with self._lock:
            self._default = Behaviour(status, body, delay, headers or {})

    def fail_next(self, count: int, status: int = 503, body: str = "unavailable", delay: float = 0.0,
                  headers: dict | None = None) -> None:
        with self._lock:
            self._script.extend([Behaviour(status, body, delay, headers or {})] * count)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._script.clear()
            self._default = Behaviour()

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    def delivered(self) -> list[Recorded]:
        """Requests answered 2xx."""
        return [r for r in self.requests if 200 <= r.answered < 300]

    def delivered_ids(self) -> list[str]:
        """Notification ids of every 2xx-answered request, duplicates included."""
        return [i for r in self.delivered() for i in r.notification_ids()]

    def unique_delivered(self) -> set[str]:
        """What a consumer that drops repeated idempotency keys would keep."""
        return set(self.delivered_ids())

    def wait_for(self, predicate: Callable[[Sink], bool], timeout: float = 20.0, interval: float = 0.05) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(interval)
        return predicate(self)

    async def async_wait_for(self, predicate: Callable[[Sink], bool], timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            await asyncio.sleep(0.05)
        return predicate(self)

    # -- server -----------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        with self._lock:
            behaviour = self._script.popleft() if self._script else self._default
            rec = Recorded(request.path_qs, dict(request.headers), body, 0, time.time(), str(request.url))
            self._requests.append(rec)
        if behaviour.delay:
            await asyncio.sleep(behaviour.delay)
        rec.answered = behaviour.status
        return web.Response(status=behaviour.status, text=behaviour.body, headers=behaviour.headers)

    def start(self) -> Sink:
        self._thread = threading.Thread(target=self._serve, name="sink", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("sink did not start")
        return self

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        app = web.Application(client_max_size=2**30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, self.host, 0, ssl_context=self.ssl_context)
        loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._started.set()
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup())
        loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def __enter__(self) -> Sink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
