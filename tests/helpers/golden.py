"""Golden-file comparison and deterministic fixture loading for template/channel tests.

``assert_golden(path, actual)`` compares ``actual`` (JSON-able) with the file; run the tests with
``UPDATE_GOLDEN=1`` to (re)write the files, then review the diff in git. A missing golden file
fails (so CI never silently accepts new output).

Fixtures go through the real ingest normalizer (``receiver.ingest.ingest``) with a fixed receive
time and a fixed notification id, so rendered output is byte-for-byte reproducible.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from receiver.ingest import IngestError, ingest
from receiver.model import Notification

REPO = Path(__file__).resolve().parents[2]
SHARED_FIXTURES = REPO / ".." / "shared" / "fixtures" / "alertmanager-payloads"
OWN_FIXTURES = REPO / "tests" / "fixtures" / "payloads"
GOLDEN_DIR = REPO / "tests" / "golden"

#: the clock of every golden render (and the ingest time of fixtures)
FIXED_NOW = datetime(2026, 11, 28, 9, 30, 0, tzinfo=UTC)
LANGUAGES = ("en", "zh")
#: golden renders use this zone (a non-UTC zone catches missing conversions)
GOLDEN_TZ = "Asia/Shanghai"


def updating() -> bool:
    return os.environ.get("UPDATE_GOLDEN", "") not in ("", "0", "false", "no")


def dumps(actual: Any) -> str:
    return json.dumps(actual, ensure_ascii=False, indent=2, sort_keys=True, default=str) + "\n"


#: strings (or JSON bodies) longer than this are stored as digest + head/tail, keeping goldens small
COMPACT_LIMIT = 12_000


def compact(obj: Any, limit: int = COMPACT_LIMIT) -> Any:
    """Replace huge strings/JSON values by ``{sha256, chars, head, tail}`` (still exact, via the hash)."""
    if isinstance(obj, str):
        if len(obj) <= limit:
            return obj
        return {"sha256": hashlib.sha256(obj.encode()).hexdigest(), "chars": len(obj), "head": obj[:3000], "tail": obj[-1000:]}
    if isinstance(obj, dict):
        return {k: compact(v, limit) for k, v in obj.items()}
    if isinstance(obj, list):
        dumped = json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str)
        if len(dumped) > limit:
            return {"sha256": hashlib.sha256(dumped.encode()).hexdigest(), "items": len(obj), "head": [compact(x, limit) for x in obj[:3]]}
        return [compact(x, limit) for x in obj]
    return obj


def assert_golden(path: Path, actual: Any) -> None:
    """Compare ``actual`` with the golden JSON file at ``path`` (rewrite it when UPDATE_GOLDEN=1)."""
    text = dumps(actual)
    if updating():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text("utf-8") != text:
            path.write_text(text, "utf-8")
        return
    if not path.exists():
        raise AssertionError(f"golden file {path} is missing; run with UPDATE_GOLDEN=1 and review it")
    expected = path.read_text("utf-8")
    if expected != text:
        import difflib

        diff = "".join(
            difflib.unified_diff(expected.splitlines(True), text.splitlines(True), str(path), "actual", n=2)
        )
        raise AssertionError(f"output differs from {path} (UPDATE_GOLDEN=1 rewrites it):\n{diff[:6000]}")


def fixture_paths(own_prefix: str = "") -> list[Path]:
    """The shared AlertManager fixtures plus ours in tests/fixtures/payloads whose name starts
    with ``own_prefix`` (``tpl_`` for the template tests, ``im_`` for the IM channels; '' = all)."""
    return sorted(SHARED_FIXTURES.glob("*.json")) + sorted(OWN_FIXTURES.glob(f"{own_prefix}*.json"))


def fixture_id(path: Path) -> str:
    return path.stem


def load_notification(path: Path, *, route: str = "golden", now: datetime = FIXED_NOW) -> Notification:
    """Ingest a fixture file with a deterministic id; raises ``IngestError`` when ingest refuses it."""
    n = ingest(path.read_bytes(), "application/json", route, now=now)
    nid = "n-" + hashlib.sha256(path.name.encode()).hexdigest()[:16]
    return replace(n, id=nid, received_at=now)


def try_load(path: Path) -> Notification | IngestError:
    try:
        return load_notification(path)
    except IngestError as exc:
        return exc
