"""Ways to get the stats document: over HTTP from the agent, or from an in-process provider.

A fetcher returns the parsed document or raises FetchError with a reason fit for a log line
(never a header value, never a URL credential)."""

from __future__ import annotations

import asyncio
import inspect
import json
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import aiohttp

from agentmon.redact import redact_text, redact_url

StatsProvider = Callable[[], Mapping[str, Any] | Awaitable[Mapping[str, Any]]]


class FetchError(Exception):
    """The stats document could not be obtained; ``str()`` is a short, secret-free reason."""


class StatsFetcher(Protocol):
    async def fetch(self, timeout: float) -> Any: ...
    async def close(self) -> None: ...
    @property
    def description(self) -> str: ...


class HttpStatsFetcher:
    """GET the agent's /stats with one kept-alive ClientSession (created on first use, in the
    running loop)."""

    def __init__(self, url: str, headers: Mapping[str, str] | None = None, *, max_body_bytes: int, ca_file: str | None = None):
        self.url = url
        self._headers = {"Accept": "application/json", **(headers or {})}
        self._max_body = max_body_bytes
        self._ssl = ssl.create_default_context(cafile=ca_file) if ca_file else None
        self._session: aiohttp.ClientSession | None = None

    @property
    def description(self) -> str:
        return redact_url(self.url)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=4, ssl=self._ssl if self._ssl is not None else True),
                headers=self._headers,
                auto_decompress=True,
            )
        return self._session

    async def fetch(self, timeout: float) -> Any:
        try:
            async with self._client().get(self.url, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                if not 200 <= resp.status < 300:
                    raise FetchError(f"HTTP {resp.status} {resp.reason or ''}".rstrip())
                body = await self._read_limited(resp)
        except TimeoutError:
            raise FetchError(f"timeout after {timeout:.3g}s") from None
        except aiohttp.ClientError as exc:
            raise FetchError(f"connection error: {type(exc).__name__}: {redact_text(str(exc))}") from None
        except ValueError as exc:  # aiohttp refuses some URL/header combinations before sending
            raise FetchError(f"invalid request: {redact_text(str(exc))}") from None
        try:
            return json.loads(body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise FetchError(f"malformed JSON: {exc}") from None

    async def _read_limited(self, resp: aiohttp.ClientResponse) -> bytes:
        if resp.content_length is not None and resp.content_length > self._max_body:
            raise FetchError(f"stats document too large ({resp.content_length} > {self._max_body} bytes)")
        chunks, size = [], 0
        async for chunk in resp.content.iter_chunked(65536):
            size += len(chunk)
            if size > self._max_body:
                raise FetchError(f"stats document too large (> {self._max_body} bytes)")
            chunks.append(chunk)
        return b"".join(chunks)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class ProviderStatsFetcher:
    """Call an in-process provider. Async providers are awaited under the timeout; sync providers
    run inline on the event loop (they must be quick: they read the agent's own state)."""

    def __init__(self, provider: StatsProvider):
        if not callable(provider):
            raise TypeError("provider must be a callable returning the stats document")
        self._provider = provider

    @property
    def description(self) -> str:
        return f"provider {getattr(self._provider, '__qualname__', type(self._provider).__name__)}"

    async def fetch(self, timeout: float) -> Any:
        try:
            result = self._provider()
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, timeout)
        except TimeoutError:
            raise FetchError(f"provider timed out after {timeout:.3g}s") from None
        except Exception as exc:  # the provider is user code: any failure means agent_up 0
            raise FetchError(f"provider raised {type(exc).__name__}: {redact_text(str(exc))[:200]}") from None
        return result

    async def close(self) -> None:
        return None
