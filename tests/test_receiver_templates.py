"""Template environment and helpers: sandbox, lenient undefined, escaping, time, AM-compatible names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from receiver.templating import (
    TemplateProblem,
    Templates,
    build_silence_url,
    humanize_duration,
    md_escape,
    severity_rank,
    short_duration,
    slack_escape,
    sorted_pairs,
    to_strftime,
)

NOW = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)


def write(tmp_path, name, text):
    (tmp_path / name).write_text(text, "utf-8")
    return tmp_path


def render(tmp_path, source, ctx, field="text", name="t.en.j2"):
    write(tmp_path, name, source)
    return Templates(tmp_path, clock=lambda: NOW).render(name, "en", (field,), ctx)[field]


def test_label_values_are_data_never_evaluated(tmp_path):
    out = render(tmp_path, "{% block text %}{{ v }}|{{ v|md }}{% endblock %}", {"v": "{{ 7*7 }}"})
    assert out == "{{ 7*7 }}|{{ 7\\*7 }}"
    assert "49" not in out


def test_sandbox_blocks_python_internals(tmp_path):
    # unsafe attributes are undefined in the sandbox (and render empty), never the real objects
    out = render(tmp_path, "{% block text %}[{{ ''.__class__.__mro__ }}][{{ x.__globals__ }}]{% endblock %}", {"x": render})
    assert out == "[][]"


def test_missing_keys_render_empty(tmp_path):
    out = render(tmp_path, "{% block text %}[{{ nope }}][{{ a.b.c.d }}][{{ alerts[3].labels.x }}]{% endblock %}", {"alerts": []})
    assert out == "[][][]"


def test_autoescape_only_in_html_field(tmp_path):
    src = "{% block text %}{{ v }}{% endblock %}{% block html %}<b>{{ v }}</b>{{ '<i>x</i>'|safeHtml }}{% endblock %}"
    write(tmp_path, "t.en.j2", src)
    out = Templates(tmp_path).render("t", "en", ("text", "html"), {"v": "<script>&"})
    assert out["text"] == "<script>&"
    assert out["html"] == "<b>&lt;script&gt;&amp;</b><i>x</i>"


def test_md_escape_covers_markdown_breakers():
    assert md_escape("a*b_c`d[e](f)<g>#h|i~j") == "a\\*b\\_c\\`d\\[e\\](f)\\<g\\>\\#h\\|i\\~j"
    assert md_escape("- item\n1. one\n  + x") == "\\- item\n1\\. one\n  \\+ x"
    assert md_escape("a - b") == "a - b"  # only leading list markers


def test_slack_escape():
    assert slack_escape("<@U1> & <!channel>") == "&lt;@U1&gt; &amp; &lt;!channel&gt;"


def test_sorted_pairs_alertname_first():
    assert sorted_pairs({"z": "1", "alertname": "A", "b": "2"}) == [("alertname", "A"), ("b", "2"), ("z", "1")]


def test_silence_url_format():
    url = build_silence_url("http://am:9093/", {"instance": 'h"1', "alertname": "X"})
    assert url == "http://am:9093/#/silences/new?filter=%7Balertname%3D%22X%22%2Cinstance%3D%22h%5C%221%22%7D"
    assert build_silence_url("", {"a": "b"}) == ""


@pytest.mark.parametrize(
    "seconds,expected",
    [(0, "0s"), (0.5, "500ms"), (1.5, "1.5s"), (61, "1m 1s"), (3661, "1h 1m 1s"), (90061, "1d 1h 1m 1s")],
)
def test_humanize_duration_like_prometheus(seconds, expected):
    assert humanize_duration(seconds) == expected
    assert humanize_duration(timedelta(seconds=seconds)) == expected


def test_short_duration_languages():
    assert short_duration(timedelta(hours=2, minutes=5, seconds=3)) == "2h 5m"
    assert short_duration(timedelta(hours=2, minutes=5, seconds=3), "zh") == "2小时5分"
    assert short_duration(timedelta(hours=1, seconds=5)) == "1h"
    assert short_duration(timedelta(0), "zh") == "0秒"


def test_severity_order_and_aliases():
    ranks = [severity_rank(s) for s in ("emergency", "Critical", "error", "warn", "info", "bogus")]
    assert ranks == sorted(ranks, reverse=True) and ranks[-1] == 0
    assert severity_rank("page") == severity_rank("critical")


def test_go_layout_and_timezone(tmp_path):
    assert to_strftime("2006-01-02 15:04:05 MST") == "%Y-%m-%d %H:%M:%S %Z"
    src = "{% block text %}{{ date('2006-01-02 15:04', t) }}|{{ t|localtime('%H:%M %Z') }}|{{ since(t)|humanizeDuration }}{% endblock %}"
    write(tmp_path, "t.en.j2", src)
    tpl = Templates(tmp_path, clock=lambda: NOW)
    t = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    out = tpl.render("t", "en", ("text",), {"t": t, "timezone": "Asia/Shanghai", "now": NOW})["text"]
    assert out == "2026-11-28 17:00|17:00 CST|30m 0s"


def test_am_function_names(tmp_path):
    src = (
        "{% block text %}{{ toUpper('a') }}{{ 'B'|toLower }}{{ title('x y') }}{{ trimSpace('  s ') }}"
        "{{ join(',', ['p', 'q']) }}{{ reReplaceAll('(a+)', '<$1>', 'baab') }}{{ match('^b', 'bc') }}"
        "{{ 'v'|reReplaceAll('v', 'w') }}{% endblock %}"
    )
    assert render(tmp_path, src, {}) == "AbX Ysp,qb<aa>bTruew"


def test_user_dir_overrides_builtin_and_builtin_prefix_extends(tmp_path):
    write(tmp_path, "file.en.j2", '{% extends "builtin/file.j2" %}{% block title %}custom {{ status }}{% endblock %}')
    tpl = Templates(tmp_path)
    out = tpl.render("file", "en", ("title", "text"), {"status": "firing", "alerts": [], "more": 2, "language": "en"})
    assert out["title"] == "custom firing"
    assert out["text"] == "…and 2 more"  # the text block comes from the built-in parent


def test_lookup_order_and_missing(tmp_path):
    tpl = Templates(tmp_path)
    assert tpl.resolve("file", "zh") == "file.j2"
    write(tmp_path, "file.zh.j2", "{% block title %}zh{% endblock %}")
    assert tpl.resolve("file", "zh") == "file.zh.j2"
    with pytest.raises(TemplateProblem, match="'nope'"):
        tpl.resolve("nope", "en")


def test_check_reports_syntax_errors_with_line(tmp_path):
    write(tmp_path, "bad.en.j2", "{% block title %}ok{% endblock %}\n{% block text %}{{ x }{% endblock %}")
    problems = Templates(tmp_path).check("bad", "en", ("title", "text"))
    assert len(problems) == 1 and "bad.en.j2:2:" in problems[0]
    write(tmp_path, "half.en.j2", "{% block title %}ok{% endblock %}")
    assert Templates(tmp_path).check("half", "en", ("title", "text")) == [
        f"{tmp_path / 'half.en.j2'}: no {{% block text %}} (the channel needs it)"
    ]


def test_tz_then_date_formats_in_that_zone(tmp_path):
    src = "{% block text %}{{ date('15:04 MST', tz('Europe/Paris', t)) }}|{{ t|tz('UTC')|date('%H:%M %Z') }}|{{ date('15:04', t) }}{% endblock %}"
    t = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert render(tmp_path, src, {"t": t, "timezone": "Asia/Shanghai"}) == "14:00 CEST|12:00 UTC|20:00"


def test_top_level_set_and_import_visible_in_blocks(tmp_path):
    src = '{% import "_macros.j2" as mm with context %}{% set greeting = "hi" %}{% block text %}{{ greeting }} {{ mm.more_line() }}{% endblock %}'
    assert render(tmp_path, src, {"more": 3, "language": "en"}) == "hi …and 3 more"
