"""The distribution installs both packages and their console scripts."""

import importlib.metadata


def test_console_scripts_declared():
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")}
    assert eps["agent-exporter"] == "exporter.cli:main"
    assert eps["alert-receiver"] == "receiver.cli:main"


def test_utf8_truncation_never_splits_a_character():
    from receiver.channels.util import truncate_bytes

    text = "告警" * 100
    for limit in range(1, 60):
        cut = truncate_bytes(text, limit)
        assert len(cut.encode("utf-8")) <= limit
        cut.encode("utf-8").decode("utf-8")


def test_redact_url_masks_robot_tokens():
    from agentmon.redact import redact_url

    u = redact_url("https://oapi.dingtalk.com/robot/send?access_token=abc123&timestamp=1&sign=zz")
    assert "abc123" not in u and "zz" not in u and "timestamp=1" in u
    assert "T0/B1/xyz" not in redact_url("https://hooks.slack.com/services/T0/B1/xyz")
    assert "123:AAE" not in redact_url("https://api.telegram.org/bot123:AAEabc/sendMessage")
