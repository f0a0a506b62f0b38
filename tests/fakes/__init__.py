"""Local fakes of the IM services (aiohttp on 127.0.0.1, random port).

Each fake checks what the real service checks (token, signature and its time window, keyword,
size, JSON shape), answers the way it answers (errcodes in HTTP 200 bodies, throttling after 20
messages a minute with a block of configurable length, 429 + Retry-After, ``retry_after``), and
records every request. See ``tests/fakes/base.py`` for the shared machinery and how to start one.
"""

from fakes.base import FakeService, Received, running
from fakes.dingtalk import FakeDingTalk
from fakes.feishu import FakeFeishu
from fakes.slack import FakeSlack
from fakes.telegram import FakeTelegram
from fakes.wecom import FakeWeCom

__all__ = [
    "FakeDingTalk",
    "FakeFeishu",
    "FakeService",
    "FakeSlack",
    "FakeTelegram",
    "FakeWeCom",
    "Received",
    "running",
]
