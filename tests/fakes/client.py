"""The client side of the channel tests: an aiohttp session per test and the ``SendContext`` built on it.

Import as ``from fakes.client import ctx, session_fixture  # noqa: F401`` — the fixture is named
``session``; its Python name differs so test arguments do not shadow an import.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from receiver.channels.base import SendContext


@pytest.fixture(name="session")
async def session_fixture() -> AsyncIterator[aiohttp.ClientSession]:
    """One aiohttp client session per test, as each target gets one in the engine."""
    async with aiohttp.ClientSession() as s:
        yield s


def ctx(session: aiohttp.ClientSession) -> SendContext:
    """What ``send()`` gets in these tests."""
    return SendContext(session=session, timeout=5)
