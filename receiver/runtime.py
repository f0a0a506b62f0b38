"""The running receiver: current config, channels, templates, outbox and engine; atomic reload.

Config is loaded and checked completely (schema, channel options, templates) before anything is
swapped; a bad config on reload keeps the old one and sets the reload metric to 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentmon import __version__
from agentmon.configload import ConfigError, Problem
from receiver.channels.base import Channel, OutboundRequest
from receiver.config import ReceiverConfig, load_receiver_config
from receiver.engine import ComposeFn, Engine
from receiver.ingest import Accepted
from receiver.metrics import ReceiverMetrics
from receiver.model import Notification
from receiver.store import Store

log = logging.getLogger(__name__)

PRUNE_EVERY = 600.0  # seconds


@dataclass(frozen=True)
class Loaded:
    """Everything derived from one config file, built before it replaces the running one."""

    config: ReceiverConfig
    channels: Mapping[str, Channel]
    templates: Any


def default_compose() -> ComposeFn:
    from receiver.compose import compose

    return compose


def default_templates_factory(template_dir: str | None) -> Any:
    from receiver.templating import Templates

    return Templates(template_dir)


def load(
    path: str | Path,
    *,
    registry: Mapping[str, type[Channel]] | None = None,
    templates_factory: Callable[[str | None], Any] = default_templates_factory,
) -> Loaded:
    """Parse the config, instantiate channels and templates; raise ConfigError on any problem."""
    if registry is None:
        from receiver.channels import load_registry

        registry = load_registry()
    config = load_receiver_config(path, registry=registry)
    channels = {name: registry[t.type](name, t.options) for name, t in config.targets.items()}
    try:
        templates = templates_factory(config.template_dir)
    except ValueError as exc:
        raise ConfigError(str(path), [Problem(("template_dir",), str(exc))]) from None
    check = getattr(templates, "check", None)
    if check is not None:
        problems = []
        for name, t in config.targets.items():
            if t.template:
                for reason in check(t.template, t.language, channels[name].fields):
                    problems.append(Problem(("targets", name, "template"), reason))
        if problems:
            raise ConfigError(str(path), problems)
    return Loaded(config, channels, templates)


class Runtime:
    def __init__(
        self,
        config_path: str | Path,
        storage_path: str | Path,
        loaded: Loaded,
        *,
        registry: Mapping[str, type[Channel]] | None = None,
        compose: ComposeFn | None = None,
        templates_factory: Callable[[str | None], Any] = default_templates_factory,
        synchronous: str = "FULL",
    ):
        self.config_path = Path(config_path)
        self.registry = registry
        self.templates_factory = templates_factory
        self.compose = compose or default_compose()
        self.loaded = loaded
        self.metrics = ReceiverMetrics(__version__)
        self.metrics.reloaded(True)
        self.metrics.init_targets({n: t.type for n, t in loaded.config.targets.items()})
        self.store = Store(storage_path, synchronous=synchronous, dedup_horizon=loaded.config.dedup_window)
        self.engine = Engine(self.store, self.metrics, self.compose)
        self.started_at = time.time()
        self.last_reload_error: str | None = None
        self._reload_lock = asyncio.Lock()
        self._prune_task: asyncio.Task | None = None
        self.running = False

    @property
    def config(self) -> ReceiverConfig:
        return self.loaded.config

    @property
    def version(self) -> str:
        return __version__

    async def start(self) -> None:
        """Open the outbox and start delivering (pending jobs from before a restart resume)."""
        if not self.store.is_open:
            self.store.open()
        await self.engine.apply(self.config, self.loaded.channels, self.loaded.templates)
        await self._retire_removed_targets()
        self._prune_task = asyncio.create_task(self._prune_loop(), name="prune")
        self.running = True
        log.info("receiver started", extra={"routes": list(self.config.routes), "targets": list(self.config.targets)})

    async def stop(self) -> None:
        self.running = False
        if self._prune_task:
            self._prune_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prune_task
        await self.engine.stop()
        await self.store.close()

    async def reload(self) -> None:
        """Load the config file again; on error keep the running config and re-raise ConfigError."""
        async with self._reload_lock:
            try:
                loaded = await asyncio.to_thread(
                    load, self.config_path, registry=self.registry, templates_factory=self.templates_factory
                )
            except ConfigError as exc:
                self.metrics.reloaded(False)
                self.last_reload_error = str(exc)
                log.error("reload failed, keeping the running config", extra={"err": str(exc)})
                raise
            await self.engine.apply(loaded.config, loaded.channels, loaded.templates)
            self.store.dedup_horizon = max(self.store.dedup_horizon, loaded.config.dedup_window)
            self.loaded = loaded
            await self._retire_removed_targets()
            self.metrics.init_targets({n: t.type for n, t in loaded.config.targets.items()})
            self.metrics.reloaded(True)
            self.last_reload_error = None
            log.info("config reloaded", extra={"routes": list(loaded.config.routes), "targets": list(loaded.config.targets)})

    def targets_for(self, n: Notification | Accepted) -> tuple[list[str], list[tuple[str, str]]]:
        """(targets to deliver to, [(skipped target, why)]) for notification ``n`` on its route."""
        send, skipped = [], []
        for name in self.config.routes.get(n.route, ()):
            target = self.config.targets[name]
            channel = self.loaded.channels[name]
            send_resolved = target.send_resolved if target.send_resolved is not None else channel.default_send_resolved
            if n.status == "resolved" and not send_resolved:
                skipped.append((name, "send_resolved is false and every alert is resolved"))
            else:
                send.append(name)
        return send, skipped

    def render(self, target_name: str, notifications: list[Notification]) -> OutboundRequest:
        """What ``target_name`` would receive for ``notifications`` (no I/O)."""
        target = self.config.targets[target_name]
        channel = self.loaded.channels[target_name]
        return self.compose(channel, self.loaded.templates, target, notifications,
                            on_template_error=lambda m: log.warning("custom template failed, default used",
                                                                    extra={"target": target_name, "err": m}))

    async def _retire_removed_targets(self) -> None:
        """Jobs waiting for a target the config no longer has would wait forever, unseen."""
        for target, count in (await self.store.retire_targets(self.config.targets)).items():
            log.warning("target no longer configured: its pending jobs are now dead letters",
                        extra={"target": target, "jobs": count})

    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_EVERY)
            try:
                await self.prune()
            except Exception as exc:  # never let housekeeping kill the process
                log.error("prune failed", extra={"err": str(exc)})

    async def prune(self) -> int:
        """Delete what retention and dead_letter_retention allow, in chunks (the loop stays responsive)."""
        total, now = 0, time.time()
        while removed := await self.store.prune(now - self.config.retention, now - self.config.dead_letter_retention):
            total += removed
            if removed < 5000:
                break
        if total:
            log.info("pruned old notifications", extra={"count": total})
        return total
