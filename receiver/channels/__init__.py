"""Channel registry: ``type:`` in a target's config → Channel class.

A channel module registers itself by being listed in ``CHANNEL_MODULES``; nothing else changes
when a channel is added.
"""

from __future__ import annotations

import importlib

from receiver.channels.base import Channel

CHANNEL_MODULES: tuple[str, ...] = (
    "receiver.channels.file",
    "receiver.channels.webhook",
    "receiver.channels.email",
    "receiver.channels.dingtalk",
    "receiver.channels.wecom",
    "receiver.channels.slack",
    "receiver.channels.feishu",
    "receiver.channels.telegram",
)


def load_registry() -> dict[str, type[Channel]]:
    """Import every channel module that exists and index its Channel subclasses by ``type``."""
    registry: dict[str, type[Channel]] = {}
    for modname in CHANNEL_MODULES:
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name == modname:  # channel not written yet
                continue
            raise
        for obj in vars(mod).values():
            if isinstance(obj, type) and issubclass(obj, Channel) and obj is not Channel and getattr(obj, "type", None):
                registry[obj.type] = obj
    return registry
