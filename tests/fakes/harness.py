"""Test helpers shared by the IM channel tests: compose a fixture for a channel, golden bodies.

Composition goes through the real ``receiver.compose`` with the built-in templates, a fixed clock
and deterministic notification ids (``helpers.golden``), so golden files are byte-for-byte stable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.golden import (
    FIXED_NOW,
    GOLDEN_DIR,
    GOLDEN_TZ,
    OWN_FIXTURES,
    SHARED_FIXTURES,
    assert_golden,
    load_notification,
)

from agentmon.redact import redact_url
from receiver.channels import load_registry
from receiver.channels.base import Channel, OutboundRequest, RenderedMessage
from receiver.compose import compose_message
from receiver.model import Notification
from receiver.templating import Templates

REGISTRY = load_registry()

#: payloads every IM channel is golden-tested with (ours + the shared 19-alert and long-summary ones)
GOLDEN_FIXTURES: tuple[Path, ...] = (
    OWN_FIXTURES / "im_zh_emoji_markdown.json",  # Chinese + emoji labels, markdown-breaking values
    OWN_FIXTURES / "im_resolved.json",
    OWN_FIXTURES / "im_mixed.json",  # firing and resolved in one group
    OWN_FIXTURES / "im_200_alerts.json",  # 200 alerts + truncatedAlerts: must shrink with "…and N more"
    SHARED_FIXTURES / "prometheus-msteams__prometheus-msteams__prom_post_request_too_large.json",  # 19 alerts
    SHARED_FIXTURES / "inCaller__prometheus_bot__big_output.json",  # 4,955-char summary
)
BIG = OWN_FIXTURES / "im_200_alerts.json"


@dataclass(frozen=True)
class Target:
    """What compose needs of a TargetConfig."""

    name: str
    type: str
    template: str | None = None
    language: str = "en"
    timezone: str = GOLDEN_TZ


def make_channel(type_: str, options: Mapping[str, Any], name: str = "t") -> Channel:
    return REGISTRY[type_](name, dict(options))


def templates() -> Templates:
    return Templates(clock=lambda: FIXED_NOW)


def notification(path: Path) -> Notification:
    return load_notification(path)


def compose_fixture(
    channel: Channel, path: Path | Sequence[Path], language: str = "en"
) -> tuple[RenderedMessage, OutboundRequest]:
    paths = [path] if isinstance(path, Path) else list(path)
    target = Target(channel.name, channel.type, language=language)
    return compose_message(channel, templates(), target, [notification(p) for p in paths])


def golden_view(request: OutboundRequest, message: RenderedMessage) -> dict[str, Any]:
    """What golden files hold: the exact body, the URL with secrets masked, and how many alerts fit."""
    return {
        "url": redact_url(request.url),
        "body": request.json,
        "body_bytes": len(request.body_bytes()),
        "shown_alerts": message.meta.get("shown_alerts"),
        "omitted": message.meta.get("omitted"),
    }


def check_golden(channel_type: str, channel: Channel, path: Path, language: str, suffix: str = "") -> OutboundRequest:
    message, request = compose_fixture(channel, path, language)
    assert channel.oversize(request) is None
    assert_golden(GOLDEN_DIR / channel_type / f"{path.stem}{suffix}.{language}.json", golden_view(request, message))
    return request


#: a digest: three notifications coalesced into one message (what a throttled target sends)
DIGEST = (GOLDEN_FIXTURES[0], GOLDEN_FIXTURES[2], GOLDEN_FIXTURES[1])


def check_golden_digest(channel_type: str, channel: Channel, language: str, suffix: str = "") -> OutboundRequest:
    message, request = compose_fixture(channel, DIGEST, language)
    assert message.meta["digest"] is True and channel.oversize(request) is None
    assert_golden(GOLDEN_DIR / channel_type / f"digest{suffix}.{language}.json", golden_view(request, message))
    return request
