"""Shared machinery of the IM fakes: server lifecycle, request log, throttling, scripted answers.

Start a fake in an async test::

    async with running(FakeDingTalk(tokens={"t1": {"secret": "SEC1"}})) as fake:
        url = fake.url + "/robot/send?access_token=t1"
        ...
        assert fake.delivered[0]["msgtype"] == "markdown"

or, from synchronous code (e.g. an end-to-end test driving subprocesses), in a thread::

    fake = FakeWeCom(keys={"k"}); fake.start_in_thread(); ...; fake.stop_thread()

Time: ``fake.advance(seconds)`` moves the fake's clock (throttle windows, signature windows)
without sleeping. ``fake.answer_next(status, body)`` forces the next answer (after recording the
request), to test how a channel classifies answers the fake would not produce on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web


@dataclass
class Received:
    """One request the fake got, and what it answered."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any
    status: int = 0
    answer: Any = None
    accepted: bool = False  # the service would have delivered it


@dataclass
class Answer:
    status: int
    body: Any  # dict → JSON, str → text/plain
    headers: dict[str, str] = field(default_factory=dict)
    accepted: bool = False


class FakeService:
    """Base class: subclasses implement ``check(request, record) -> Answer``."""

    name = "fake"

    def __init__(self, *, rate_limit: int = 20, window: float = 60.0, block_seconds: float = 600.0):
        self.rate_limit = rate_limit
        self.window = window
        self.block_seconds = block_seconds
        self.received: list[Received] = []
        self.offset = 0.0
        self._script: deque[Answer] = deque()
        self._sent: dict[str, deque[float]] = defaultdict(deque)
        self._blocked_until: dict[str, float] = {}
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port = 0

    # -- what tests use ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def delivered(self) -> list[Any]:
        """JSON bodies of the messages the service accepted, in order."""
        return [r.json for r in self.received if r.accepted]

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def answer_next(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._script.append(Answer(status, body, dict(headers or {})))

    # -- for subclasses ---------------------------------------------------------------------

    def throttled(self, robot: str) -> bool:
        """Count one message for ``robot``; True when it is over the limit or still blocked."""
        now = self.now()
        if self._blocked_until.get(robot, 0.0) > now:
            return True
        sent = self._sent[robot]
        while sent and sent[0] <= now - self.window:
            sent.popleft()
        if len(sent) >= self.rate_limit:
            # blocked; the block (DingTalk: 10 min) outlasts the window, so the count starts afresh
            self._blocked_until[robot] = now + self.block_seconds
            sent.clear()
            return True
        sent.append(now)
        return False

    async def check(self, request: web.Request, record: Received) -> Answer:  # pragma: no cover
        raise NotImplementedError

    def routes(self) -> list[web.RouteDef]:  # pragma: no cover
        raise NotImplementedError

    # -- server -----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        record = Received(request.method, request.path, dict(request.query), dict(request.headers), body, parsed)
        self.received.append(record)
        answer = self._script.popleft() if self._script else await self.check(request, record)
        record.status, record.answer, record.accepted = answer.status, answer.body, answer.accepted
        if isinstance(answer.body, str):
            return web.Response(status=answer.status, text=answer.body, headers=answer.headers)
        return web.json_response(answer.body, status=answer.status, headers=answer.headers)

    def _route(self, path: str) -> web.RouteDef:
        return web.post(path, self._handle)

    async def start(self) -> str:
        app = web.Application(client_max_size=10 * 2**20)
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start_in_thread(self) -> str:
        """Serve from a background thread with its own event loop (for synchronous tests)."""
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self.start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name=f"fake-{self.name}", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"fake {self.name} did not start")
        return self.url

    def stop_thread(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = self._thread = None


F = TypeVar("F", bound=FakeService)


@contextlib.asynccontextmanager
async def running(fake: F) -> AsyncIterator[F]:
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
