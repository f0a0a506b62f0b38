"""Run every benchmark module (or the ones named): ``python -m bench [exporter_scrape ...]``.

Each module has ``main(argv) -> int`` and prints its figures as ratios against a reference measured
in the same run (node_exporter, a bare aiohttp handler...). Results also go to bench/results/.
"""

from __future__ import annotations

import importlib
import sys

MODULES = ("exporter_scrape", "receiver_accept", "e2e_latency")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    names = [a for a in argv if not a.startswith("-")] or list(MODULES)
    rc = 0
    for name in names:
        try:
            mod = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.{name}":
                print(f"== {name}: not present, skipped", flush=True)
                continue
            raise
        print(f"== {name}", flush=True)
        rc |= int(mod.main([a for a in argv if a.startswith("-")]) or 0)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
