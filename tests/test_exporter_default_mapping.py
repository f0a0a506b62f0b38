"""The packaged default mapping: the exporter reads default_mapping.json, generated from the
human-edited default_mapping.yaml. These fail when someone edits one and not the other."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from exporter.business import default_mapping_gen
from exporter.business.settings import (
    DEFAULT_MAPPING_JSON_PATH,
    DEFAULT_MAPPING_PATH,
    default_mapping_entries,
)


def test_json_twin_equals_the_yaml_source():
    from_yaml = yaml.safe_load(DEFAULT_MAPPING_PATH.read_text(encoding="utf-8"))
    from_json = json.loads(DEFAULT_MAPPING_JSON_PATH.read_text(encoding="utf-8"))
    # Compared as canonical JSON too: == alone would let 1 and 1.0 (or True and 1) pass.
    assert from_json == from_yaml
    assert json.dumps(from_json, sort_keys=True) == json.dumps(from_yaml, sort_keys=True)
    assert list(default_mapping_entries()) == from_yaml


def test_generator_check_passes_on_the_committed_files():
    assert default_mapping_gen.main(["--check"]) == 0
    assert DEFAULT_MAPPING_JSON_PATH.read_text(encoding="utf-8") == default_mapping_gen.render_json(
        DEFAULT_MAPPING_PATH.read_text(encoding="utf-8")
    )


def test_generator_check_reports_drift(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(default_mapping_gen, "HERE", tmp_path)
    (tmp_path / default_mapping_gen.JSON_NAME).write_text("[]\n")
    assert default_mapping_gen.main(["--check"]) == 1
    assert "out of date" in capsys.readouterr().err


def test_loading_the_default_mapping_does_not_import_yaml():
    code = (
        "import sys\n"
        "from exporter.business import build_source\n"
        "src = build_source({'url': 'http://127.0.0.1:1/stats'}, 'agentmon')\n"
        "assert src is not None and len(src.mapper.specs) > 10, src\n"
        "print('yaml' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
