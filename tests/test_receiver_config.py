"""Receiver config: the shipped example is valid; every mistake names file, line and key; secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.receiver import REGISTRY, write_config

from agentmon.configload import ConfigError
from receiver.channels.base import RateLimit
from receiver.config import load_receiver_config, parse_duration, parse_rate_limit
from receiver.runtime import load

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_example_is_valid_with_the_real_channels():
    loaded = load(ROOT / "examples" / "receiver.yml")
    cfg = loaded.config
    assert set(cfg.routes) == {"critical", "warning", "info", "watchdog"}
    assert cfg.targets["ops-dingtalk"].rate_limit == RateLimit(20, 60.0)
    assert cfg.targets["ops-dingtalk"].language == "zh"
    assert cfg.auth_for_route("watchdog").bearer_token and cfg.auth_for_route("critical").basic_auth
    assert cfg.dedup_window == 300 and cfg.max_body_bytes == 4 * 2**20
    described = str(cfg.describe())
    assert "change-me" not in described and "SECreplace-me" not in described


def test_alertmanager_config_posts_to_routes_of_the_example():
    am = (ROOT / "alertmanager" / "alertmanager.yml").read_text()
    cfg = load(ROOT / "examples" / "receiver.yml").config
    import re

    for route in re.findall(r"http://127\.0\.0\.1:19818/alerts/([\w.-]+)", am):
        assert route in cfg.routes


def problems(tmp_path, text: str, env=None) -> str:
    with pytest.raises(ConfigError) as e:
        load_receiver_config(write_config(tmp_path, text), registry=REGISTRY, env=env or {})
    return str(e.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("routes: {a: [t]}\ntargets:\n  t: {type: carrier-pigeon}\n",
         "receiver.yml:3: targets.t.type: unknown channel type 'carrier-pigeon' (known types: testsink, testsink-pause)"),
        ("routes:\n  a: [t, nope]\ntargets:\n  t: {type: testsink, url: 'http://x'}\n",
         "receiver.yml:2: routes.a[1]: unknown target 'nope' (targets defined: t)"),
        ("routes: {a: [t]}\ntargets:\n  t:\n    type: testsink\n    url: http://x\n    colour: red\n",
         "receiver.yml:6: targets.t.colour: unknown key 'colour' for a testsink target"),
        ("routes: {a: [t]}\ntargets:\n  t: {type: testsink}\n",
         "receiver.yml:3: targets.t: 'url' is a required property (required by testsink targets)"),
        ("routes: {a: [t]}\ntargets:\n  t: {type: testsink, url: 'http://x', rate_limit: 'lots'}\n",
         "receiver.yml:3: targets.t.rate_limit:"),
        ("routes: {a: [t]}\ntargets:\n  t: {type: testsink, url: 'http://x', timezone: Mars/Olympus}\n",
         "receiver.yml:3: targets.t.timezone: unknown time zone 'Mars/Olympus'"),
        ("routes: {a: [t]}\ntargets:\n  t: {type: testsink, url: 'http://x', token_file: missing.txt}\n",
         "receiver.yml:3: targets.t.token_file: cannot read"),
        ("routes: {a: [t]}\ntargets:\n  t: {type: testsink, url: 'http://x', token: a, token_file: b}\n",
         "receiver.yml:3: targets.t.token_file: token and token_file are mutually exclusive"),
        ("routes: {a: [t]}\nauth: {}\ntargets:\n  t: {type: testsink, url: 'http://x'}\n",
         "receiver.yml:2: auth: auth needs bearer_token(_file) and/or basic_auth"),
        ("routes: {a: [t]}\ntargets:\n  t: {type: testsink, url: '${URL}'}\n",
         "receiver.yml:3: targets.t.url: environment variable URL is not set"),
        ("routes: {a: [t]}\ndedup_window: soon\ntargets:\n  t: {type: testsink, url: 'http://x'}\n",
         "receiver.yml:2: dedup_window:"),
        ("targets:\n  t: {type: testsink, url: 'http://x'}\n", "receiver.yml:1: <root>: 'routes' is a required property"),
        ("routes: {a: [t]}\ndigest_wait: {quiet: 30s, max: 10s}\ntargets:\n  t: {type: testsink, url: 'http://x'}\n",
         "receiver.yml:2: digest_wait: need quiet <= max"),
        ("routes: {a: [t]}\ndigest_wait: {quiet: 1s, hold: 2s}\ntargets:\n  t: {type: testsink, url: 'http://x'}\n",
         "receiver.yml:2: digest_wait"),
    ],
    ids=["unknown-type", "unknown-target", "unknown-key", "missing-required", "bad-rate", "bad-tz", "missing-file",
         "both-secret-forms", "empty-auth", "unset-env", "bad-duration", "no-routes", "digest-wait-order",
         "digest-wait-key"],
)
def test_mistakes_name_file_line_and_key(tmp_path, text, expected):
    assert expected in problems(tmp_path, text)


def test_secret_files_env_and_redaction(tmp_path):
    (tmp_path / "token.txt").write_text("file-secret-123\n")
    (tmp_path / "pw.txt").write_text("basic-pw-456\n")
    cfg = load_receiver_config(write_config(tmp_path, """
auth:
  bearer_token: ${INBOUND}
  basic_auth: {username: am, password_file: pw.txt}
routes: {a: [t]}
targets:
  t: {type: testsink, url: "https://robot.example/send?access_token=${TOK}", token_file: token.txt,
      rate_limit: {messages: 3, per_seconds: 10}, retry_max_age: 2h, timeout: 500ms}
"""), registry=REGISTRY, env={"INBOUND": "env-bearer-789", "TOK": "url-token-000"})
    t = cfg.targets["t"]
    assert t.options == {"url": "https://robot.example/send?access_token=url-token-000", "token": "file-secret-123"}
    assert (t.rate_limit, t.retry_max_age, t.timeout) == (RateLimit(3, 10.0), 7200.0, 0.5)
    assert cfg.auth.bearer_token == "env-bearer-789" and cfg.auth.basic_auth.password == "basic-pw-456"
    shown = str(cfg.describe(REGISTRY)) + repr(cfg)
    for secret in ("file-secret-123", "basic-pw-456", "env-bearer-789", "url-token-000"):
        assert secret not in shown


def test_secret_values_not_echoed_in_errors(tmp_path):
    text = problems(tmp_path, "routes: {a: [t]}\ntargets:\n  t: {type: testsink, url: 'http://x', token: 12345678901}\n")
    assert "targets.t.token" in text and "12345678901" not in text


def test_parsers():
    assert parse_duration("1h30m") == 5400 and parse_duration("250ms") == 0.25 and parse_duration(7) == 7.0
    assert parse_rate_limit("20/1m") == RateLimit(20, 60.0)
    with pytest.raises(ValueError):
        parse_duration("5 minutes")
