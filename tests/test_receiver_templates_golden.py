"""Golden output of the built-in email, webhook and file templates for every payload fixture.

Each fixture goes through the real ingest normalizer, is rendered in en and zh with a fixed clock
and timezone, and the rendered fields plus the built request are compared with
tests/golden/<channel>/<fixture>.<lang>.json (``UPDATE_GOLDEN=1`` rewrites them).
"""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from helpers.golden import (
    FIXED_NOW,
    GOLDEN_DIR,
    GOLDEN_TZ,
    LANGUAGES,
    assert_golden,
    compact,
    fixture_id,
    fixture_paths,
    try_load,
)

from receiver.channels.base import Channel, OutboundRequest
from receiver.channels.email import EmailChannel
from receiver.channels.file import FileChannel
from receiver.channels.webhook import WebhookChannel
from receiver.compose import compose_message
from receiver.config import TargetConfig
from receiver.ingest import IngestError
from receiver.templating import Templates

#: fixtures the ingest normalizer is expected to refuse (R's business; asserted, never skipped silently)
EXPECTED_REFUSED: set[str] = set()


def channels() -> dict[str, Channel]:
    return {
        "email": EmailChannel("mail", {"smarthost": "127.0.0.1:25", "from": "Alerts <alerts@example.com>", "to": ["ops@example.com"]}),
        "webhook": WebhookChannel("hook", {"url": "http://127.0.0.1:9/hook", "headers": {"X-Team": "md"}}),
        "file": FileChannel("log", {"path": "-"}),
    }


def request_view(req: OutboundRequest) -> Any:
    if isinstance(req.payload, EmailMessage):
        msg = req.payload
        parts = list(msg.iter_parts()) if msg.is_multipart() else [msg]
        return {"headers": [[k, str(v)] for k, v in msg.items()], "parts": [p.get_content_type() for p in parts]}
    if req.url:
        return {"url": req.url, "method": req.method, "headers": dict(req.headers), "json": req.json}
    return req.payload


@pytest.mark.parametrize("path", fixture_paths("tpl_"), ids=fixture_id)
def test_golden(path: Path) -> None:
    loaded = try_load(path)
    if isinstance(loaded, IngestError):
        assert path.name in EXPECTED_REFUSED, f"ingest refused {path.name}: {loaded}"
        return
    assert path.name not in EXPECTED_REFUSED
    templates = Templates(clock=lambda: FIXED_NOW)
    for channel_name, channel in channels().items():
        for lang in LANGUAGES:
            target = TargetConfig(name=channel.name, type=channel.type, options={}, language=lang, timezone=GOLDEN_TZ)
            errors: list[str] = []
            msg, req = compose_message(channel, templates, target, [loaded], on_template_error=errors.append)
            assert errors == []
            assert channel.oversize(req) is None
            actual = compact({"fields": dict(msg.fields), "request": request_view(req)})
            assert_golden(GOLDEN_DIR / channel_name / f"{path.stem}.{lang}.json", actual)


def test_every_fixture_has_golden_files() -> None:
    """No stale goldens: each golden file belongs to a fixture (renamed fixtures leave none behind)."""
    stems = {p.stem for p in fixture_paths("tpl_")}
    for channel_name in channels():
        for f in (GOLDEN_DIR / channel_name).glob("*.json"):
            assert f.name.rsplit(".", 2)[0] in stems, f"stale golden file {f}"
