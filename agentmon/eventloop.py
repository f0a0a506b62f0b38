"""Run a server's main coroutine on uvloop when it is installed, else on the asyncio loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """uvloop spends markedly less CPU per aiohttp request than the asyncio loop (the receiver's
    accept path, measured in bench/receiver_accept.py); behaviour is the same."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
