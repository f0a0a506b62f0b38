"""Config loading errors say file, line, key path and reason; ${ENV} expansion; duplicate keys."""

import pytest

from agentmon.configload import ConfigError, load_config_text

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "items": {
            "type": "array",
            "items": {"type": "object", "additionalProperties": False, "properties": {"port": {"type": "integer"}}},
        },
    },
}


def test_unknown_key_names_line_and_path():
    with pytest.raises(ConfigError) as e:
        load_config_text("name: x\nitems:\n  - port: 1\n  - prot: 2\n", SCHEMA, filename="c.yml")
    assert "c.yml:4: items[1].prot: unknown key 'prot'" in str(e.value)


def test_wrong_type_names_key():
    with pytest.raises(ConfigError) as e:
        load_config_text("items:\n  - port: abc\n", SCHEMA, filename="c.yml")
    assert str(e.value).startswith("c.yml:2: items[0].port: 'abc' is not of type 'integer'")


def test_env_expansion_and_missing_variable():
    assert load_config_text("name: ${X}-${Y:-d}", SCHEMA, env={"X": "a"}) == {"name": "a-d"}
    with pytest.raises(ConfigError) as e:
        load_config_text("name: ${NOPE}", SCHEMA, env={}, filename="c.yml")
    assert "c.yml:1: name: environment variable NOPE is not set" in str(e.value)


def test_duplicate_key_and_bad_yaml():
    with pytest.raises(ConfigError, match=r"c.yml:2: <root>: invalid YAML: .*duplicate key 'name'"):
        load_config_text("name: a\nname: b\n", SCHEMA, filename="c.yml")
    with pytest.raises(ConfigError, match=r"c.yml:\d+: <root>: invalid YAML"):
        load_config_text("name: [a\n", SCHEMA, filename="c.yml")


def test_semantic_checks_run_after_schema():
    def check(data):
        yield ("name",), "must not be 'bad'"

    with pytest.raises(ConfigError, match="c.yml:1: name: must not be 'bad'"):
        load_config_text("name: bad\n", SCHEMA, filename="c.yml", checks=[check])


def test_schema_errors_never_echo_secret_values():
    schema = {"type": "object", "properties": {"bot_token": {"type": "string", "pattern": "^[0-9]+:"},
                                               "url": {"type": "string", "pattern": "^https://"}}}
    with pytest.raises(ConfigError) as e:
        load_config_text("bot_token: hunter2\nurl: http://u:pw@h/x?access_token=abc\n", schema, filename="c.yml")
    text = str(e.value)
    assert "c.yml:1: bot_token:" in text and "c.yml:2: url:" in text
    for secret in ("hunter2", "pw@", "abc"):
        assert secret not in text
