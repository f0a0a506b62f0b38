"""Declarative mapping: path syntax, labels, value maps, scale, duplicates, missing keys, per-symbol cap."""

from __future__ import annotations

import re

import pytest

from exporter.business.compiled import Bail, compile_spec
from exporter.business.mapping import Mapper, MappingConfigError, MetricSpec, PerSymbolPolicy
from exporter.business.paths import (
    EachItem,
    EachKey,
    Failure,
    Index,
    Key,
    Match,
    PathSyntaxError,
    evaluate,
    parse_path,
)


def samples(result, name):
    """{labels-dict-as-sorted-tuple: value} of one family in a MappingResult."""
    for fam in result.families:
        if fam.name in (name, name.removesuffix("_total")):
            return {tuple(sorted(s.labels.items())): s.value for s in fam.samples}
    return {}


def mapper(*entries, per_symbol=None, ns="ns"):
    return Mapper([MetricSpec.from_config(e) for e in entries], ns, per_symbol or PerSymbolPolicy())


DOC = {
    "exchanges": [
        {"name": "binance", "state": "connected", "requests": {"total": 10, "errors": 1},
         "records": {"trades": 5, "orderbook": 7}, "latency_ms": 250,
         "positions": [{"symbol": "BTC", "pnl": 1.5}, {"symbol": "ETH", "pnl": "2.5"}]},
        {"name": "okx", "state": "reconnecting", "requests": {"total": 20},
         "records": {"trades": 1}, "latency_ms": "fast",
         "positions": []},
    ],
    "cache": {"hits": 3, "enabled": True},
}


@pytest.mark.parametrize(
    "text, steps",
    [
        ("a.b", [Key("a"), Key("b")]),
        ("exchanges[*].records.*", [Key("exchanges"), EachItem(), Key("records"), EachKey()]),
        ('a["x.y"][0]', [Key("a"), Key("x.y"), Index(0)]),
    ],
)
def test_path_parses(text, steps):
    assert list(parse_path(text).steps) == steps


@pytest.mark.parametrize("text", ["", "a..b", ".a", "a.", "a[x]", "a b", "*x", "a[*", "a[1.5]"])
def test_bad_path_syntax_is_rejected_with_position(text):
    with pytest.raises(PathSyntaxError):
        parse_path(text)


def test_evaluate_reports_missing_branch_without_hiding_others():
    out = list(evaluate(DOC, parse_path("exchanges[*].requests.errors")))
    assert [m.value for m in out if isinstance(m, Match)] == [1]
    (failure,) = [m for m in out if isinstance(m, Failure)]
    assert failure.error.where == "exchanges[1].requests.errors"
    assert failure.error.reason == "missing key"


def test_array_wildcard_on_object_is_a_failure_not_an_exception():
    (out,) = evaluate({"a": {"b": 1}}, parse_path("a[*]"))
    assert isinstance(out, Failure) and "expected an array" in out.error.reason


def test_labels_from_array_item_and_map_keys():
    m = mapper({"name": "records_total", "type": "counter", "help": "h", "path": "exchanges[*].records.*",
                "labels": {"exchange": "exchanges[*].name", "data_type": "exchanges[*].records.*"}})
    res = m.apply(DOC)
    assert samples(res, "ns_records_total") == {
        (("data_type", "trades"), ("exchange", "binance")): 5.0,
        (("data_type", "orderbook"), ("exchange", "binance")): 7.0,
        (("data_type", "trades"), ("exchange", "okx")): 1.0,
    }
    assert not res.errors


def test_missing_key_counts_per_metric_and_keeps_other_series():
    m = mapper(
        {"name": "errors_total", "type": "counter", "help": "h", "path": "exchanges[*].requests.errors",
         "labels": {"exchange": "exchanges[*].name"}},
        {"name": "cache_hits_total", "type": "counter", "help": "h", "path": "cache.hits"},
    )
    res = m.apply(DOC)
    assert samples(res, "ns_errors_total") == {(("exchange", "binance"),): 1.0}
    assert samples(res, "ns_cache_hits_total") == {(): 3.0}
    assert res.errors == {"ns_errors_total": 1}
    assert "exchanges[1].requests.errors: missing key" in res.reasons["ns_errors_total"]


def test_non_numeric_value_is_an_error_numeric_string_is_not():
    m = mapper({"name": "latency_seconds", "type": "gauge", "help": "h", "path": "exchanges[*].latency_ms",
                "labels": {"exchange": "exchanges[*].name"}, "scale": 0.001},
               {"name": "pnl", "type": "gauge", "help": "h", "path": "exchanges[*].positions[*].pnl",
                "labels": {"symbol": "exchanges[*].positions[*].symbol"}})
    res = m.apply(DOC)
    assert samples(res, "ns_latency_seconds") == {(("exchange", "binance"),): 0.25}
    assert res.errors["ns_latency_seconds"] == 1
    assert "non-numeric value 'fast'" in res.reasons["ns_latency_seconds"]
    assert samples(res, "ns_pnl") == {(("symbol", "BTC"),): 1.5, (("symbol", "ETH"),): 2.5}


def test_object_value_is_non_numeric():
    res = mapper({"name": "g", "type": "gauge", "help": "h", "path": "cache"}).apply(DOC)
    assert res.errors["ns_g"] == 1 and "an object" in res.reasons["ns_g"]


def test_value_map_default_and_booleans():
    m = mapper(
        {"name": "connected", "type": "gauge", "help": "h", "path": "exchanges[*].state",
         "labels": {"exchange": "exchanges[*].name"}, "value_map": {"connected": 1}, "value_map_default": -1},
        {"name": "strict", "type": "gauge", "help": "h", "path": "exchanges[*].state",
         "labels": {"exchange": "exchanges[*].name"}, "value_map": {"connected": 1}},
        {"name": "cache_enabled", "type": "gauge", "help": "h", "path": "cache.enabled"},
    )
    res = m.apply(DOC)
    assert samples(res, "ns_connected") == {(("exchange", "binance"),): 1.0, (("exchange", "okx"),): -1.0}
    assert samples(res, "ns_strict") == {(("exchange", "binance"),): 1.0}
    assert res.errors == {"ns_strict": 1}
    assert samples(res, "ns_cache_enabled") == {(): 1.0}


def test_null_means_no_sample_and_no_error():
    res = mapper({"name": "ts_seconds", "type": "gauge", "help": "h", "path": "a.ts"}).apply({"a": {"ts": None}})
    assert res.families == [] and not res.errors


@pytest.mark.parametrize("policy, expected", [("sum", 4.0), ("first", 1.5)])
def test_duplicate_label_sets_follow_policy(policy, expected):
    m = mapper({"name": "pnl", "type": "gauge", "help": "h", "path": "exchanges[*].positions[*].pnl",
                "labels": {"exchange": "exchanges[*].name"}, "duplicates": policy})
    res = m.apply(DOC)
    assert samples(res, "ns_pnl") == {(("exchange", "binance"),): expected}
    assert not res.errors


def test_duplicates_default_sum_for_counters_first_for_gauges():
    doc = {"x": [{"n": "a", "v": 1}, {"n": "a", "v": 2}]}
    c = {"type": "counter", "help": "h", "path": "x[*].v", "labels": {"n": "x[*].n"}}
    assert samples(mapper({"name": "c_total", **c}).apply(doc), "ns_c_total") == {(("n", "a"),): 3.0}
    assert samples(mapper({"name": "g", **c, "type": "gauge"}).apply(doc), "ns_g") == {(("n", "a"),): 1.0}


def test_measure_length_and_constant_with_root_labels():
    m = mapper(
        {"name": "positions_open", "type": "gauge", "help": "h", "path": "exchanges[*].positions",
         "measure": "length", "labels": {"exchange": "exchanges[*].name"}},
        {"name": "info", "type": "gauge", "help": "h", "value": 1, "labels": {"hits": "cache.hits"}},
    )
    res = m.apply(DOC)
    assert samples(res, "ns_positions_open") == {(("exchange", "binance"),): 2.0, (("exchange", "okx"),): 0.0}
    assert samples(res, "ns_info") == {(("hits", "3"),): 1.0}


def test_missing_label_drops_the_sample_and_counts():
    doc = {"x": [{"name": "a", "v": 1}, {"v": 2}]}
    res = mapper({"name": "g", "type": "gauge", "help": "h", "path": "x[*].v", "labels": {"n": "x[*].name"}}).apply(doc)
    assert samples(res, "ns_g") == {(("n", "a"),): 1.0}
    assert res.errors["ns_g"] == 1 and "label n" in res.reasons["ns_g"]


def per_symbol_doc(n):
    return {"exchanges": [{"name": "ex", "positions": [{"symbol": f"S{i:03d}", "pnl": i} for i in range(n)]}]}


PER_SYMBOL = {"name": "sym_pnl", "type": "gauge", "help": "h", "path": "exchanges[*].positions[*].pnl",
              "labels": {"exchange": "exchanges[*].name", "symbol": "exchanges[*].positions[*].symbol"},
              "per_symbol": True}


def test_per_symbol_is_off_unless_enabled():
    res = mapper(PER_SYMBOL).apply(per_symbol_doc(3))
    assert res.families == [] and "ns_sym_pnl" not in mapper(PER_SYMBOL).metric_names


def test_per_symbol_cap_keeps_first_sorted_and_counts_dropped():
    m = mapper(PER_SYMBOL, per_symbol=PerSymbolPolicy(enabled=True, max_series=5))
    res = m.apply(per_symbol_doc(8))
    got = samples(res, "ns_sym_pnl")
    assert sorted(dict(k)["symbol"] for k in got) == ["S000", "S001", "S002", "S003", "S004"]
    assert res.errors["ns_sym_pnl"] == 3 and "max_series=5" in res.reasons["ns_sym_pnl"]


def test_per_symbol_include_filter():
    m = mapper(PER_SYMBOL, per_symbol=PerSymbolPolicy(enabled=True, max_series=100, include=re.compile(r"S00[12]")))
    got = samples(m.apply(per_symbol_doc(8)), "ns_sym_pnl")
    assert sorted(dict(k)["symbol"] for k in got) == ["S001", "S002"]


@pytest.mark.parametrize(
    "entry, key",
    [
        ({"name": "x", "type": "counter", "help": "h", "path": "a"}, "name"),
        ({"name": "x_total", "type": "gauge", "help": "h", "path": "a"}, "name"),
        ({"name": "x", "type": "gauge", "help": "h", "path": "a..b"}, "path"),
        ({"name": "x", "type": "gauge", "help": "h", "path": "a[*].v", "labels": {"l": "b[*].n"}}, "labels.l"),
        ({"name": "x", "type": "gauge", "help": "h", "path": "a.v", "labels": {"l": "a[*].n"}}, "labels.l"),
        ({"name": "x", "type": "gauge", "help": "h", "path": "a.v", "labels": {"__l": "a.n"}}, "labels.__l"),
    ],
)
def test_semantic_errors_name_the_key(entry, key):
    with pytest.raises(MappingConfigError) as info:
        MetricSpec.from_config(entry)
    assert info.value.key == key


# -- compiled fast path == generic evaluator -------------------------------------------------------

FEATURE_ENTRIES = [
    {"name": "records_total", "type": "counter", "help": "h", "path": "exchanges[*].records.*",
     "labels": {"exchange": "exchanges[*].name", "data_type": "exchanges[*].records.*"}},
    {"name": "requests_total", "type": "counter", "help": "h", "path": "exchanges[*].requests.total",
     "labels": {"exchange": "exchanges[*].name"}, "scale": 0.5},
    {"name": "state", "type": "gauge", "help": "h", "path": "exchanges[*].state",
     "labels": {"exchange": "exchanges[*].name"}, "value_map": {"connected": 1}, "value_map_default": -1},
    {"name": "latency_seconds", "type": "gauge", "help": "h", "path": "exchanges[*].latency_ms", "scale": 0.001,
     "labels": {"exchange": "exchanges[*].name"}},
    {"name": "pnl", "type": "gauge", "help": "h", "path": "exchanges[*].positions[*].pnl", "duplicates": "sum",
     "labels": {"exchange": "exchanges[*].name", "symbol": "exchanges[*].positions[*].symbol", "hits": "cache.hits"}},
    {"name": "first_pnl", "type": "gauge", "help": "h", "path": "exchanges[0].positions[-1].pnl",
     "labels": {"first": "exchanges[0].name"}},
    {"name": "positions_open", "type": "gauge", "help": "h", "path": "exchanges[*].positions", "measure": "length",
     "labels": {"exchange": "exchanges[*].name", "idx": "exchanges[*]"}},
    {"name": "cache_enabled", "type": "gauge", "help": "h", "path": "cache.enabled"},
    {"name": "first_position_total", "type": "counter", "help": "h", "path": "exchanges[*].requests.total",
     "labels": {"first_symbol": "exchanges[*].positions[0].symbol", "last_pnl": "exchanges[*].positions[-1].pnl"}},
    {"name": "info", "type": "gauge", "help": "h", "value": 1, "labels": {"hits": "cache.hits"}},
]


def broken_docs():
    """DOC and variants with one problem each: every one must map the same on both paths."""
    import copy

    def variant(edit):
        d = copy.deepcopy(DOC)
        edit(d)
        return d

    yield DOC
    yield variant(lambda d: d["exchanges"][0].pop("name"))
    yield variant(lambda d: d["exchanges"][0].update(name=None))
    yield variant(lambda d: d["exchanges"][0].update(name=7.0))
    yield variant(lambda d: d["exchanges"][0].update(records=[1, 2]))
    yield variant(lambda d: d["exchanges"][0]["positions"].append({"symbol": "BTC", "pnl": True}))
    yield variant(lambda d: d["exchanges"][0]["positions"].append({"symbol": {"x": 1}, "pnl": 1}))
    yield variant(lambda d: d["exchanges"][0]["positions"].append({"symbol": "X", "pnl": None}))
    yield variant(lambda d: d["exchanges"][0]["positions"].append("not an object"))
    yield variant(lambda d: d["exchanges"].append({"name": "empty"}))
    yield variant(lambda d: d.update(exchanges={"not": "a list"}))
    yield variant(lambda d: d.pop("cache"))
    yield variant(lambda d: d["cache"].update(hits=[1]))
    yield {}


@pytest.mark.parametrize("doc", list(broken_docs()))
def test_compiled_path_maps_exactly_like_the_generic_evaluator(doc):
    specs = [MetricSpec.from_config(e) for e in FEATURE_ENTRIES]
    fast = Mapper(specs, "ns").apply(doc)
    generic = Mapper(specs, "ns", compiled=False).apply(doc)
    assert [(f.name, f.type, repr(f.samples)) for f in fast.families] == [
        (f.name, f.type, repr(f.samples)) for f in generic.families]
    assert fast.errors == generic.errors and fast.reasons == generic.reasons


def test_compiled_path_is_taken_for_a_well_formed_document():
    doc = {"exchanges": [{"name": "a", "state": "connected", "requests": {"total": 4}, "records": {"t": 1, "o": 2},
                          "latency_ms": 5, "positions": [{"symbol": "S", "pnl": 1}, {"symbol": "S", "pnl": 2.5}]}],
           "cache": {"hits": 3, "enabled": False}}
    for entry in FEATURE_ENTRIES:
        spec = MetricSpec.from_config(entry)
        run = compile_spec(spec)
        if "value" in entry:
            assert run is None
            continue
        generic = Mapper([spec], "ns", compiled=False)._generic_samples(spec, doc, pytest.fail)
        assert run(doc) == generic, entry["name"]
    assert compile_spec(MetricSpec.from_config(FEATURE_ENTRIES[4]))(doc) == {("a", "S", "3"): 3.5}
    with pytest.raises(Bail):
        compile_spec(MetricSpec.from_config(FEATURE_ENTRIES[4]))({"exchanges": [{"positions": [{"pnl": 1}]}]})
