"""exporter.render must produce exactly what prometheus_client.generate_latest produces for the same
families (it replaces it for speed), and content negotiation must pick text for Prometheus."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    StateSetMetricFamily,
    SummaryMetricFamily,
    UnknownMetricFamily,
)
from prometheus_client.parser import text_string_to_metric_families

from exporter.render import RowsFamily, render_openmetrics, render_text, series_count, wants_openmetrics


def reference(families) -> bytes:
    registry = CollectorRegistry(auto_describe=False)

    class Fixed:
        def collect(self):
            return families

    registry.register(Fixed())
    return generate_latest(registry)


def sample_families():
    g = GaugeMetricFamily("agentmon_weird", 'Help with \\ backslash and\nnewline "quotes".', labels=["z", "a", "m"])
    g.add_metric(["with \"quote\"", "back\\slash", "new\nline"], 1.5)
    g.add_metric(["ü-utf8", "", "x"], -0.0)
    g.add_metric(["a", "b", "c"], math.inf)
    g.add_metric(["a", "b", "d"], -math.inf)
    g.add_metric(["a", "b", "e"], math.nan)
    g.add_metric(["a", "b", "f"], 1e16)
    g.add_metric(["a", "b", "g"], 123456789.123)
    g.add_metric(["a", "b", "h"], 999999.5)
    g.add_metric(["a", "b", "i"], 1000000)
    g.add_metric(["a", "b", "j"], 7, timestamp=1700000000.123)
    c = CounterMetricFamily("agentmon_things", "Things.", labels=["exchange"], created=1700000000.0)
    c.add_metric(["binance"], 42, created=1700000000.0)
    c2 = CounterMetricFamily("agentmon_plain", "No labels.", value=3)
    h = HistogramMetricFamily("agentmon_latency_seconds", "Latency.", labels=["route"])
    h.add_metric(["a"], buckets=[("0.1", 1), ("1.0", 3), ("+Inf", 4)], sum_value=2.5)
    s = SummaryMetricFamily("agentmon_size_bytes", "Sizes.", count_value=3, sum_value=10.0)
    i = InfoMetricFamily("agentmon_agent", "Agent info.", value={"version": "1.2", "agent_id": "x"})
    st = StateSetMetricFamily("agentmon_state", "State.", value={"up": True, "down": False})
    gh = GaugeHistogramMetricFamily("agentmon_queue", "Queue.", buckets=[("1.0", 2), ("+Inf", 5)], gsum_value=7.0)
    u = UnknownMetricFamily("agentmon_mystery", "Unknown.", value=1)
    g2 = GaugeMetricFamily("agentmon_many", "Different label key orders per sample.", labels=["b", "a"])
    g2.add_metric(["1", "2"], 1)
    g2.samples.append(type(g2.samples[0])("agentmon_many", {"a": "3", "c": "4"}, 2.0, None, None))
    return [g, c, c2, h, s, i, st, gh, u, g2]


def test_render_text_equals_generate_latest():
    fams = sample_families()
    assert render_text(fams, drop_created=False) == reference(fams)


def test_created_series_are_dropped_by_default():
    fams = sample_families()
    expected = b"".join(line + b"\n" for line in reference(fams).splitlines() if b"agentmon_things_created" not in line)
    assert render_text(fams) == expected
    assert b"_created" not in render_openmetrics(fams)


def test_render_text_equals_generate_latest_on_business_sized_output():
    fams = []
    for f in range(30):
        g = GaugeMetricFamily(f"agentmon_metric_{f}_bytes", "Synthetic.", labels=["exchange", "symbol"])
        for i in range(100):
            g.add_metric([f"ex{i % 10}", f"SYM{i}USDT"], f * 1000.5 + i * 12345.678)
        fams.append(g)
    out = render_text(fams)
    assert out == reference(fams)
    assert series_count(fams) == 3000
    parsed = list(text_string_to_metric_families(out.decode()))
    assert len(parsed) == 30


ODD_ROWS = [
    (("with \"quote\"", "back\\slash", "new\nline"), 1.5),
    (("ü-utf8", "", "x"), -0.0),
    (("a", "b", "c"), math.inf),
    (("a", "b", "d"), -math.inf),
    (("a", "b", "e"), math.nan),
    (("a", "b", "f"), 1e16),
    (("a", "b", "g"), 123456789.123),
    (("a", "b", "h"), 999999.5),
    (("a", "b", "i"), 1000000),
    (("a", "b", "j"), 7),
]


def rows_and_classic():
    """The same series as RowsFamily and as prometheus_client families (labels not in sorted order)."""
    rows = [
        RowsFamily("agentmon_weird", 'Help with \\ backslash and\nnewline "quotes".', "gauge", ["z", "a", "m"],
                   list(ODD_ROWS)),
        RowsFamily("agentmon_things_total", "Things.", "counter", ["exchange"], [(("binance",), 42.0), (("okx",), 1)]),
        RowsFamily("agentmon_cache_hits_total", "No labels.", "counter", [], [((), 3.0)]),
        RowsFamily("agentmon_level", "No labels, gauge.", "gauge", [], [((), 2.5)]),
        RowsFamily("agentmon_pnl", "Two labels, in order.", "gauge", ["exchange", "symbol"],
                   [(("binance", "BTC"), 1.25), (("ok\"x", ""), -3)]),
        RowsFamily("agentmon_pnl2", "Two labels, first sorts last.", "gauge", ["symbol", "exchange"],
                   [(("BTC", "binance"), 1.25), (("new\nline", "okx"), math.inf)]),
    ]
    g = GaugeMetricFamily("agentmon_weird", 'Help with \\ backslash and\nnewline "quotes".', labels=["z", "a", "m"])
    for labels, value in ODD_ROWS:
        g.add_metric(list(labels), value)
    c = CounterMetricFamily("agentmon_things_total", "Things.", labels=["exchange"])
    c.add_metric(["binance"], 42.0)
    c.add_metric(["okx"], 1)
    p1 = GaugeMetricFamily("agentmon_pnl", "Two labels, in order.", labels=["exchange", "symbol"])
    p1.add_metric(["binance", "BTC"], 1.25)
    p1.add_metric(['ok"x', ""], -3)
    p2 = GaugeMetricFamily("agentmon_pnl2", "Two labels, first sorts last.", labels=["symbol", "exchange"])
    p2.add_metric(["BTC", "binance"], 1.25)
    p2.add_metric(["new\nline", "okx"], math.inf)
    classic = [g, c, CounterMetricFamily("agentmon_cache_hits_total", "No labels.", value=3.0),
               GaugeMetricFamily("agentmon_level", "No labels, gauge.", value=2.5), p1, p2]
    return rows, classic


def test_rows_family_renders_like_generate_latest():
    rows, classic = rows_and_classic()
    assert render_text(rows) == reference(classic)
    assert series_count(rows) == series_count(classic) == 18
    assert all(f._samples is None for f in rows)  # rendered and counted without building Samples


def test_rows_family_is_an_ordinary_family_for_other_consumers():
    rows, classic = rows_and_classic()
    assert [f.name for f in rows] == [f.name for f in classic]
    for r, c in zip(rows, classic, strict=True):
        assert repr(r.samples) == repr(c.samples)  # repr: NaN != NaN under ==
        assert r.type == c.type
    assert render_openmetrics(rows) == render_openmetrics(classic)
    # once someone replaced the samples, the renderer follows them, not the rows
    rows[1].samples = rows[1].samples[:1]
    only_binance = CounterMetricFamily("agentmon_things_total", "Things.", labels=["exchange"])
    only_binance.add_metric(["binance"], 42.0)
    assert render_text([rows[1]]) == reference([only_binance])
    assert series_count([rows[1]]) == 1


def test_openmetrics_render_ends_with_eof():
    out = render_openmetrics(sample_families()[:3]).decode()
    assert out.endswith("# EOF\n")


def test_negotiation_serves_text_to_prometheus():
    prometheus = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                  "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
    assert wants_openmetrics(prometheus) is False
    assert wants_openmetrics(None) is False
    assert wants_openmetrics("text/plain") is False
    assert wants_openmetrics("application/openmetrics-text; version=1.0.0") is True
    assert wants_openmetrics("application/openmetrics-text, text/plain;q=0") is True


@pytest.mark.parametrize("odd", ['quo"te', "back\\slash", "new\nline", '\\"', "\n\n", "plain"])
@pytest.mark.parametrize("label_names", [["symbol"], ["exchange", "symbol"], ["symbol", "exchange"]])
@pytest.mark.parametrize("where", [0, 57, 199])
def test_rows_checked_as_a_whole_escape_exactly_like_generate_latest(odd, label_names, where):
    """Rows render unescaped and are checked per family (quotes, newlines, backslashes counted):
    one odd label value anywhere among many clean ones must still come out escaped."""
    rows = []
    for i in range(200):
        values = [f"SYM{i}", "binance"][: len(label_names)]
        if i == where:
            values[-1 if i % 2 else 0] = odd
        rows.append((tuple(values), float(i) - 0.5 if i % 3 else i))
    fam = RowsFamily("agentmon_pnl", "Rows.", "gauge", label_names, list(rows))
    classic = GaugeMetricFamily("agentmon_pnl", "Rows.", labels=label_names)
    for values, value in rows:
        classic.add_metric(list(values), value)
    assert render_text([fam]) == reference([classic])
