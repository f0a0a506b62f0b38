"""Generate ``default_mapping.json`` from ``default_mapping.yaml`` (the human-edited source).

Why a JSON twin: the running exporter reads the packaged default mapping on every start with an
``agent:`` section, and loading it as YAML imported PyYAML into the serving process for its whole
life (~0.55 MiB RSS against a 40 MiB budget); ``json`` is loaded there anyway. Edit the YAML, then

    python -m exporter.business.default_mapping_gen            # (re)write default_mapping.json
    python -m exporter.business.default_mapping_gen --check    # exit 1 if the JSON is out of date

tests/test_exporter_default_mapping.py fails when the two differ.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
YAML_PATH = HERE / "default_mapping.yaml"
JSON_NAME = "default_mapping.json"


def render_json(yaml_text: str) -> str:
    import yaml  # the generator's dependency only; the exporter reads the JSON

    entries = yaml.safe_load(yaml_text)
    # One entry per line: diffs of the generated file stay as readable as the YAML's.
    lines = ",\n".join("  " + json.dumps(e, ensure_ascii=False, separators=(", ", ": ")) for e in entries)
    return ("[\n" + lines + "\n]\n") if entries else "[]\n"


def main(argv: list[str] | None = None) -> int:
    from agentmon.generated import write_or_check

    ap = argparse.ArgumentParser(prog="python -m exporter.business.default_mapping_gen", description=__doc__)
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if the JSON is out of date")
    args = ap.parse_args(argv)
    files = {JSON_NAME: render_json(YAML_PATH.read_text(encoding="utf-8"))}
    return write_or_check(files, HERE, check=args.check, generator="python -m exporter.business.default_mapping_gen")


if __name__ == "__main__":
    raise SystemExit(main())
