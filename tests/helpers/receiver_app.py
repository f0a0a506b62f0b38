"""pytest fixture: an in-process receiver (test channels, compose stand-in) behind aiohttp's test client.

    async def test_x(receiver, sink):
        rt, client = await make_receiver(CONFIG.format(url=sink.url))
"""

from __future__ import annotations

import pytest

from helpers.receiver import REGISTRY, fake_compose, fake_templates, write_config
from helpers.sink import Sink
from receiver.app import build_app
from receiver.runtime import Runtime, load


@pytest.fixture
def sink():
    with Sink() as s:
        yield s


@pytest.fixture
def make_receiver(tmp_path, aiohttp_client):
    async def make(config_text: str, *, compose=fake_compose):
        path = write_config(tmp_path, config_text)
        loaded = load(path, registry=REGISTRY, templates_factory=fake_templates)
        rt = Runtime(path, tmp_path / "data", loaded, registry=REGISTRY, compose=compose,
                     templates_factory=fake_templates, synchronous="NORMAL")
        client = await aiohttp_client(build_app(rt))
        return rt, client

    return make
