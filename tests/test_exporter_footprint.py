"""What the serving process must not load: each of these cost RSS against the 40 MiB budget
(docs/exporter.md, Performance)."""

from __future__ import annotations

import os
import subprocess
import sys

_PROBE = (
    "import sys\n"
    "import exporter.cli\n"
    "from exporter.business import build_source\n"
    "build_source({'url': 'http://127.0.0.1:1/stats'}, 'agentmon')\n"
    "maps = open('/proc/self/maps').read()\n"
    "print(sorted(m for m in ('yaml', 'jsonschema', 'frozenlist._frozenlist') if m in sys.modules))\n"
    "print('libstdc++' in maps)\n"
)


def _run(env_extra: dict[str, str]) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "FROZENLIST_NO_EXTENSIONS"} | env_extra
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, env=env)
    return out.stdout.splitlines()


def test_cli_process_loads_no_yaml_no_validator_no_cxx_runtime():
    # PyYAML (default mapping), jsonschema (config validation runs in a child process) and
    # frozenlist's C++ extension (libstdc++, ~1 MiB) stay out of the serving process.
    assert _run({}) == ["[]", "False"]


def test_operator_choice_of_frozenlist_extension_is_kept():
    assert _run({"FROZENLIST_NO_EXTENSIONS": ""}) == ["['frozenlist._frozenlist']", "True"]
