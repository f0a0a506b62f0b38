"""Config file and CLI flags: schema errors name file, line and key path; regexes and the process
selector are checked; ${ENV} expansion; --config.check; node_exporter-style collector flags."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentmon.configload import ConfigError
from exporter.cli import build_parser, enabled_collectors, main, parse_duration
from exporter.collectors import DEFAULT_ENABLED
from exporter.config import load_exporter_config

EXAMPLES = Path(__file__).parents[1] / "examples"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "exporter.yml"
    p.write_text(text)
    return p


def error_of(path: Path, env=None) -> str:
    with pytest.raises(ConfigError) as err:
        load_exporter_config(path, env=env or {})
    return str(err.value)


def test_no_config_means_defaults():
    cfg = load_exporter_config(None)
    assert cfg.agent is None and cfg.scrape_timeout == 10
    assert cfg.collector_options["netdev"].device_exclude.pattern == "^lo$"
    assert cfg.collector_options["cpu"].per_cpu is True


def test_example_config_is_valid():
    cfg = load_exporter_config(EXAMPLES / "exporter.yml", env={})
    assert cfg.agent["url"] == "http://127.0.0.1:19101/stats"
    assert cfg.collector_options["process"].cmdline.pattern == "market-data-agent"
    cfg = load_exporter_config(EXAMPLES / "exporter.yml", env={"AGENT_STATS_URL": "http://10.0.0.5:19101/stats"})
    assert cfg.agent["url"] == "http://10.0.0.5:19101/stats"


def test_unknown_key_names_key_and_line(tmp_path):
    msg = error_of(write(tmp_path, "collectors:\n  cpu:\n    per_cpu: true\n    percpu: false\n"))
    assert f"{tmp_path / 'exporter.yml'}:4: collectors.cpu.percpu: unknown key 'percpu'" in msg


def test_unknown_collector_section(tmp_path):
    msg = error_of(write(tmp_path, "collectors:\n  gpu: {}\n"))
    assert ":2: collectors.gpu: unknown key 'gpu'" in msg


def test_wrong_type_names_key(tmp_path):
    msg = error_of(write(tmp_path, "scrape:\n  timeout_seconds: soon\n"))
    assert ":2: scrape.timeout_seconds:" in msg and "not of type 'number'" in msg


def test_bad_regex_names_key(tmp_path):
    msg = error_of(write(tmp_path, "collectors:\n  filesystem:\n    fs_types_exclude: '^(tmpfs'\n"))
    assert ":3: collectors.filesystem.fs_types_exclude: invalid regular expression" in msg


def test_two_process_selectors_rejected(tmp_path):
    msg = error_of(write(tmp_path, "collectors:\n  process:\n    pid: 1\n    name: agent\n"))
    assert "collectors.process.name: give only one process selector" in msg


def test_env_expansion_and_missing_env(tmp_path):
    p = write(tmp_path, "collectors:\n  process:\n    pidfile: ${AGENT_PIDFILE}\n")
    cfg = load_exporter_config(p, env={"AGENT_PIDFILE": "/run/agent.pid"})
    assert cfg.collector_options["process"].pidfile == "/run/agent.pid"
    assert "collectors.process.pidfile: environment variable AGENT_PIDFILE is not set" in error_of(p)


def test_agent_section_validated_by_business_schema(tmp_path):
    msg = error_of(write(tmp_path, "agent:\n  url: http://127.0.0.1:19101/stats\n  timeoutt: 3\n"))
    assert ":3: agent.timeoutt: unknown key" in msg
    msg = error_of(write(tmp_path, "agent:\n  url: ftp://x\n"))
    assert "agent.url" in msg


def test_agent_semantic_errors_are_reported_under_agent(tmp_path):
    msg = error_of(write(tmp_path, "agent:\n  url: http://127.0.0.1:1/stats\n  per_symbol:\n    include: '(['\n"))
    assert "agent.per_symbol.include" in msg


def test_cli_bad_config_exits_nonzero_naming_key(tmp_path, capsys):
    p = write(tmp_path, "collectors:\n  netdev:\n    device_exclude: '*lo'\n")
    assert main(["--config.file", str(p), "--web.listen-address", "127.0.0.1:0"]) == 1
    err = capsys.readouterr().err
    assert "collectors.netdev.device_exclude: invalid regular expression" in err and f"{p}:3" in err


def test_cli_config_check(tmp_path, capsys):
    assert main(["--config.file", str(EXAMPLES / "exporter.yml"), "--config.check"]) == 0
    assert "configuration OK" in capsys.readouterr().out
    p = write(tmp_path, "nope: 1\n")
    assert main(["--config.file", str(p), "--config.check"]) == 1
    assert "nope: unknown key" in capsys.readouterr().err


def test_cli_rejects_bad_flags(capsys):
    for argv in (["--web.listen-address", "nohost"], ["--metrics.namespace", "9bad"],
                 ["--web.telemetry-path", "/-/metrics"], ["--push.interval", "soon"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2, argv


def test_collector_flags_node_exporter_style():
    p = build_parser()
    assert enabled_collectors(p.parse_args([])) == DEFAULT_ENABLED
    assert "process" in DEFAULT_ENABLED and "cpu" in DEFAULT_ENABLED
    assert enabled_collectors(p.parse_args(["--no-collector.cpu", "--no-collector.process"])) == tuple(
        n for n in DEFAULT_ENABLED if n not in ("cpu", "process")
    )
    only = p.parse_args(["--collector.disable-defaults", "--collector.memory", "--collector.cpu"])
    assert enabled_collectors(only) == ("cpu", "memory")
    last_wins = p.parse_args(["--no-collector.cpu", "--collector.cpu"])
    assert "cpu" in enabled_collectors(last_wins)


def test_help_shows_collector_defaults():
    text = build_parser().format_help()
    for name in DEFAULT_ENABLED:
        assert re.search(rf"--collector\.{name}\b.*?\(default: enabled\)", text, re.S), name
    assert "--web.max-requests" in text and "--push.gateway-url" in text and "--metrics.namespace" in text


def test_parse_duration():
    assert parse_duration("15s") == 15 and parse_duration("1m") == 60 and parse_duration("500ms") == 0.5
    assert parse_duration("2") == 2


# -- config loaded in a child process (the serving process never imports the validator stack) ------

def test_isolated_load_equals_in_process_load_without_importing_jsonschema(tmp_path):
    import json
    import subprocess
    import sys

    p = write(tmp_path, "scrape:\n  timeout_seconds: 7\nagent:\n  url: ${AGENT_URL}\n"
                        "collectors:\n  netdev:\n    device_exclude: '^(lo|dummy.*)$'\n")
    code = (
        "import json, sys\n"
        "from exporter.cli import load_config_isolated\n"
        f"c = load_config_isolated({str(p)!r})\n"
        "print(json.dumps({'timeout': c.scrape_timeout, 'agent': c.agent, 'source': c.source,\n"
        "    'netdev': c.collector_options['netdev'].device_exclude.pattern,\n"
        "    'validator_loaded': 'jsonschema' in sys.modules or 'agentmon.configload' in sys.modules}))\n"
    )
    env = {**__import__("os").environ, "AGENT_URL": "http://127.0.0.1:9/stats"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                         cwd=Path(__file__).parents[1]).stdout
    got = json.loads(out)
    assert got == {"timeout": 7.0, "agent": {"url": "http://127.0.0.1:9/stats"}, "source": str(p),
                   "netdev": "^(lo|dummy.*)$", "validator_loaded": False}


def test_isolated_load_reports_problems_like_the_in_process_loader(tmp_path):
    from exporter.cli import load_config_isolated
    from exporter.server import ConfigFileInvalid, is_config_error

    p = write(tmp_path, "agent:\n  url: http://127.0.0.1:1/stats\n  timeoutt: 3\n")
    with pytest.raises(ConfigFileInvalid) as err:
        load_config_isolated(str(p))
    assert str(err.value) == error_of(p)
    assert is_config_error(err.value)
    assert not is_config_error(ValueError("x"))


@pytest.mark.parametrize("child", ["import sys; sys.exit(1)", "import sys; sys.stdout.write('not a pickle')"])
def test_isolated_load_falls_back_to_in_process_when_the_child_misbehaves(tmp_path, monkeypatch, child):
    import exporter.cli as cli

    monkeypatch.setattr(cli, "_CONFIG_CHILD", child)
    good = write(tmp_path, "scrape:\n  timeout_seconds: 3\n")
    assert cli.load_config_isolated(str(good)) == load_exporter_config(good)
    bad = write(tmp_path, "scrape:\n  timeout_secs: 3\n")
    with pytest.raises(ConfigError, match="timeout_secs"):
        cli.load_config_isolated(str(bad))
