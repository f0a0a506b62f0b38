"""Write generated files, or check that the committed ones are current (the drift rule of mixins)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path


def write_or_check(files: Mapping[str, str], out_dir: Path, *, check: bool, generator: str) -> int:
    """Write ``files`` (name → content) under ``out_dir``; with ``check``, write nothing and return 1
    listing the files that differ from what ``generator`` would write."""
    stale = []
    for name, content in files.items():
        target = out_dir / name
        if not check:
            target.write_text(content)
        elif not target.exists() or target.read_text() != content:
            stale.append(str(target))
    if stale:
        print(f"out of date (run {generator}): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0
