"""Delivery engine: one asyncio worker per target draining that target's jobs from the outbox.

Per attempt a worker takes the oldest due jobs of its target. When the backlog is larger than the
rate limit lets it send right now, it coalesces the due notifications into one digest message
(nothing is dropped, the robot is not flooded), once the burst is over (``digest_wait``). Outcomes: delivered → jobs done; retryable →
exponential backoff with jitter (never earlier than the service's retry_after) until the target's
retry_max_age, then dead letter; permanent → dead letter at once. ``pause`` stops the whole target
until retry_after (DingTalk blocks a robot ~10 minutes after 130101).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from agentmon.redact import redact_text
from receiver.channels.base import (
    Channel,
    Delivered,
    OutboundRequest,
    PermanentFailure,
    RetryableFailure,
    SendContext,
    SendResult,
)
from receiver.config import ReceiverConfig, TargetConfig
from receiver.metrics import ReceiverMetrics
from receiver.model import Notification
from receiver.ratelimit import TokenBucket
from receiver.store import Job, JobUpdate, Store, StoreUnavailable

log = logging.getLogger(__name__)

DEFAULT_PAUSE = 60.0  # seconds, when a channel asks to pause without saying how long
SEND_GRACE = 5.0  # seconds on top of the target timeout before a hung send() is abandoned


class ComposeFn(Protocol):
    def __call__(
        self,
        channel: Channel,
        templates: Any,
        target: TargetConfig,
        notifications: Sequence[Notification],
        *,
        on_template_error: Callable[[str], None],
    ) -> OutboundRequest: ...


@dataclass(frozen=True)
class Backoff:
    initial: float = 1.0
    maximum: float = 300.0

    def delay(self, attempts: int) -> float:
        """Exponential (×2) with jitter in [50 %, 100 %] of the nominal delay."""
        nominal = min(self.maximum, self.initial * 2 ** max(0, attempts - 1))
        return nominal * random.uniform(0.5, 1.0)


def ssl_context(target: TargetConfig) -> ssl.SSLContext:
    """Verification always on; ``ca_file`` adds a private CA."""
    return ssl.create_default_context(cafile=target.ca_file) if target.ca_file else ssl.create_default_context()


def make_session(context: ssl.SSLContext) -> aiohttp.ClientSession:
    """One pooled session per target; trust_env honours HTTP(S)_PROXY/NO_PROXY when no proxy_url is set."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, limit=4), trust_env=True)


class TargetWorker:
    """Sends one target's jobs, one message at a time, within its rate limit."""

    def __init__(
        self,
        target: TargetConfig,
        channel: Channel,
        *,
        store: Store,
        metrics: ReceiverMetrics,
        compose: ComposeFn,
        templates: Any,
        backoff: Backoff,
        max_digest: int,
        digest_wait: tuple[float, float] = (0.0, 0.0),
    ):
        self.target = target
        self.channel = channel
        self.store = store
        self.metrics = metrics
        self.compose = compose
        self.templates = templates
        self.backoff = backoff
        self.max_digest = max_digest
        self.digest_wait = digest_wait  # (quiet, max) seconds
        self.bucket = TokenBucket(target.rate_limit or channel.default_rate_limit)
        self.wake_event = asyncio.Event()
        self.paused_until = 0.0
        self.sending = 0
        self.last_error: str | None = None
        self.session: aiohttp.ClientSession | None = None
        self.ssl = ssl_context(target)  # HTTP sessions and SMTP verify against the same CAs
        self.task: asyncio.Task | None = None
        self._stopping = False

    @property
    def name(self) -> str:
        return self.target.name

    def start(self) -> None:
        self.session = make_session(self.ssl)
        self.task = asyncio.create_task(self._run(), name=f"deliver:{self.name}")
        self.wake_event.set()  # resume whatever is pending from before a restart

    async def stop(self) -> None:
        """Stop the worker for sure: Python 3.11's wait_for can swallow a cancel that races with
        completion, so the loop also checks a flag and the cancel is repeated until the task ends."""
        self._stopping = True
        if self.task is not None:
            while not self.task.done():
                self.task.cancel()
                await asyncio.wait({self.task}, timeout=1.0)
        if self.session is not None:
            await self.session.close()

    def wake(self) -> None:
        self.wake_event.set()

    def status(self) -> dict[str, Any]:
        rl = self.bucket.limit
        return {
            "channel": self.target.type,
            "rate_limit": {"messages": rl.messages, "per_seconds": rl.per_seconds},
            "tokens_available": round(self.bucket.available(), 2),
            "paused_for_seconds": round(max(0.0, self.paused_until - time.time()), 1),
            "sending": self.sending,
            "last_error": self.last_error,
        }

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except StoreUnavailable as exc:
                log.error("outbox unavailable, delivery paused", extra={"target": self.name, "err": str(exc)})
                await asyncio.sleep(1.0)
            except Exception as exc:  # keep the worker alive whatever happens
                log.exception("delivery worker error", extra={"target": self.name, "err": redact_text(str(exc))})
                await asyncio.sleep(1.0)

    async def _step(self) -> None:
        now = time.time()
        if self.paused_until > now:
            await asyncio.sleep(self.paused_until - now)
            return
        wait = self.bucket.wait_time()
        if wait > 0:
            await asyncio.sleep(wait)
            return
        self.wake_event.clear()
        # more due than the rate limit can send now → one digest of the backlog, else the oldest job
        batch = await self.store.next_batch(self.name, now, int(self.bucket.available()), self.max_digest,
                                            quiet=self.digest_wait[0], max_wait=self.digest_wait[1])
        if batch.hold_until is not None:  # a burst is still arriving: one complete digest afterwards
            await asyncio.sleep(max(0.01, batch.hold_until - time.time()))
            return
        jobs = batch.jobs
        if not jobs:
            nxt = await self.store.next_attempt_at(self.name)
            timeout = None if nxt is None else max(0.01, nxt - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake_event.wait(), timeout)
            return
        await self.deliver(jobs)

    def _template_error(self, message: str) -> None:
        self.metrics.template_errors.labels(target=self.name).inc()
        log.warning("custom template failed, default used", extra={"target": self.name, "err": redact_text(message)})

    async def attempt(self, notifications: Sequence[Notification]) -> SendResult:
        """Compose and send one message for ``notifications`` (several → a digest)."""
        try:
            if len(notifications) > 1:  # a big digest renders for a while: keep the event loop answering
                request = await asyncio.to_thread(
                    self.compose, self.channel, self.templates, self.target, notifications,
                    on_template_error=self._template_error,
                )
            else:
                request = self.compose(
                    self.channel, self.templates, self.target, notifications, on_template_error=self._template_error
                )
        except Exception as exc:
            return PermanentFailure(f"cannot compose the message: {type(exc).__name__}: {redact_text(str(exc))}")
        self.bucket.take()
        ctx = SendContext(session=self.session, timeout=self.target.timeout, proxy=self.target.proxy_url,
                          ssl_context=self.ssl)
        try:
            return await asyncio.wait_for(self.channel.send(ctx, request), self.target.timeout + SEND_GRACE)
        except TimeoutError:
            return RetryableFailure(f"send did not finish within {self.target.timeout + SEND_GRACE:g}s")
        except Exception as exc:
            return RetryableFailure(f"channel error: {type(exc).__name__}: {redact_text(str(exc))}")

    async def deliver(self, jobs: Sequence[Job]) -> SendResult:
        self.sending = len(jobs)
        try:
            result = await self.attempt([j.notification for j in jobs])
        finally:
            self.sending = 0
        await self.store.update_jobs(self._outcome(jobs, result))
        return result

    def _outcome(self, jobs: Sequence[Job], result: SendResult) -> list[JobUpdate]:
        now = time.time()
        labels = {"target": self.name, "channel": self.target.type}
        digest = len(jobs) > 1
        ids = [j.notification_id for j in jobs]
        if isinstance(result, Delivered):
            self.metrics.deliveries.labels(outcome="delivered", **labels).inc()
            if digest:
                self.metrics.digests.labels(**labels).inc()
            for j in jobs:
                self.metrics.latency.labels(**labels).observe(max(0.0, now - j.notification.received_at.timestamp()))
            self.last_error = None
            log.info("delivered", extra={**labels, "notifications": len(jobs), "digest": digest})
            return [JobUpdate(j.id, "delivered", j.attempts + 1, now, None, digest) for j in jobs]
        reason = redact_text(result.reason)
        self.last_error = reason
        if isinstance(result, PermanentFailure):
            self.metrics.deliveries.labels(outcome="permanent_failure", **labels).inc()
            self.metrics.dead_letters.labels(**labels).inc(len(jobs))
            log.error("permanent failure, dead letter", extra={**labels, "reason": reason, "notifications": ids})
            return [JobUpdate(j.id, "dead", j.attempts + 1, now, f"permanent failure: {reason}", digest) for j in jobs]
        self.metrics.deliveries.labels(outcome="retryable_failure", **labels).inc()
        retry_after = result.retry_after or 0.0
        if result.pause:
            self.paused_until = now + (result.retry_after or DEFAULT_PAUSE)
            self.bucket.drain()
            log.warning("target paused", extra={**labels, "seconds": round(self.paused_until - now, 1), "reason": reason})
        updates = []
        for j in jobs:
            attempts = j.attempts + 1
            deadline = j.created_at + self.target.retry_max_age
            if now >= deadline:
                self.metrics.dead_letters.labels(**labels).inc()
                why = (f"gave up after {attempts} attempts in {now - j.created_at:.0f}s "
                       f"(retry_max_age {self.target.retry_max_age:g}s); last error: {reason}")
                log.error("retries exhausted, dead letter", extra={**labels, "notification": j.notification_id, "reason": why})
                updates.append(JobUpdate(j.id, "dead", attempts, now, why, digest))
                continue
            self.metrics.retries.labels(**labels).inc()
            delay = max(self.backoff.delay(attempts), retry_after)
            updates.append(JobUpdate(j.id, "pending", attempts, min(now + delay, deadline), reason))
        log.warning("delivery failed, will retry", extra={**labels, "reason": reason, "notifications": len(jobs)})
        return updates


class Engine:
    """Owns the workers; ``apply()`` swaps targets on reload without losing pending jobs."""

    def __init__(self, store: Store, metrics: ReceiverMetrics, compose: ComposeFn):
        self.store = store
        self.metrics = metrics
        self.compose = compose
        self.workers: dict[str, TargetWorker] = {}

    async def apply(self, config: ReceiverConfig, channels: Mapping[str, Channel], templates: Any) -> None:
        backoff = Backoff(config.retry_initial_backoff, config.retry_max_backoff)
        for name in list(self.workers):
            worker = self.workers[name]
            new = config.targets.get(name)
            if new is None or new != worker.target or type(channels[name]) is not type(worker.channel):
                await worker.stop()
                del self.workers[name]
            else:
                worker.templates = templates
                worker.backoff = backoff
                worker.max_digest = config.max_digest_notifications
                worker.digest_wait = (config.digest_quiet, config.digest_max_wait)
        for name, target in config.targets.items():
            if name not in self.workers:
                worker = TargetWorker(
                    target, channels[name], store=self.store, metrics=self.metrics, compose=self.compose,
                    templates=templates, backoff=backoff, max_digest=config.max_digest_notifications,
                    digest_wait=(config.digest_quiet, config.digest_max_wait),
                )
                worker.start()
                self.workers[name] = worker

    def wake(self, targets: Iterable[str]) -> None:
        for name in targets:
            worker = self.workers.get(name)
            if worker is not None:
                worker.wake()

    async def stop(self) -> None:
        for worker in self.workers.values():
            await worker.stop()
        self.workers.clear()

    def status(self) -> dict[str, dict[str, Any]]:
        return {name: w.status() for name, w in self.workers.items()}
