"""Declarative JSON → metric-family mapping (the ``agent.mapping`` list of the config).

A broken value never fails the scrape: every missing key, non-numeric value or dropped series is
counted against its metric and reported in ``MappingResult``, and the rest of the document is
still exported. Families are built fresh on every call (no shared mutable metric state).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from prometheus_client.core import Metric

from exporter.business.compiled import Bail, compile_spec
from exporter.business.paths import (
    WILDCARDS,
    Failure,
    Match,
    Missing,
    Path,
    evaluate,
    parse_path,
    resolve,
    wildcard_prefix,
)
from exporter.render import RowsFamily

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
SYMBOL_LABEL = "symbol"


class MappingConfigError(ValueError):
    """An ``agent.mapping`` entry that cannot be used; ``key`` is the entry-relative key that is wrong."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class LabelSpec:
    """A label taken from the document. ``anchor`` wildcards of the value path are shared with it:
    the label is read from the array item / object member the value came from. A label path that
    ends with its last wildcard takes that member's key (or the array index)."""

    name: str
    path: Path
    anchor: int
    rest: tuple = ()
    is_key: bool = False


@dataclass(frozen=True)
class MetricSpec:
    name: str
    type: Literal["counter", "gauge"]
    help: str
    path: Path | None = None
    constant: float | None = None
    labels: tuple[LabelSpec, ...] = ()
    value_map: Mapping[str, float] = field(default_factory=dict)
    value_map_default: float | None = None
    scale: float = 1.0
    measure: Literal["value", "length"] = "value"
    duplicates: Literal["sum", "first"] = "first"
    per_symbol: bool = False

    @classmethod
    def from_config(cls, entry: Mapping[str, Any]) -> MetricSpec:
        """Build from one schema-valid mapping entry; raises MappingConfigError for semantic problems."""
        name = entry["name"]
        mtype = entry["type"]
        if not METRIC_NAME.fullmatch(name):
            raise MappingConfigError("name", f"invalid metric name {name!r}")
        if mtype == "counter" and not name.endswith("_total"):
            raise MappingConfigError("name", f"counter {name!r} must end in _total")
        if mtype == "gauge" and name.endswith(("_total", "_count", "_sum", "_bucket")):
            raise MappingConfigError("name", f"gauge {name!r} must not end in _total/_count/_sum/_bucket")
        path = None
        if "path" in entry:
            try:
                path = parse_path(entry["path"])
            except ValueError as exc:
                raise MappingConfigError("path", str(exc)) from None
        elif "value" not in entry:
            raise MappingConfigError("path", "one of 'path' or 'value' is required")
        labels = tuple(_label_spec(lname, ltext, path) for lname, ltext in (entry.get("labels") or {}).items())
        if entry.get("per_symbol") and entry.get("measure") == "length":
            raise MappingConfigError("per_symbol", "per_symbol metrics cannot use measure: length")
        return cls(
            name=name,
            type=mtype,
            help=entry["help"],
            path=path,
            constant=float(entry["value"]) if path is None else None,
            labels=labels,
            value_map={str(k): float(v) for k, v in (entry.get("value_map") or {}).items()},
            value_map_default=entry.get("value_map_default"),
            scale=float(entry.get("scale", 1.0)),
            measure=entry.get("measure", "value"),
            duplicates=entry.get("duplicates", "sum" if mtype == "counter" else "first"),
            per_symbol=bool(entry.get("per_symbol", False)),
        )


def _label_spec(name: str, text: str, value_path: Path | None) -> LabelSpec:
    key = f"labels.{name}"
    if not LABEL_NAME.fullmatch(name) or name.startswith("__"):
        raise MappingConfigError(key, f"invalid label name {name!r}")
    try:
        path = parse_path(text)
    except ValueError as exc:
        raise MappingConfigError(key, str(exc)) from None
    anchor = path.wildcards
    if anchor:
        value_wildcards = value_path.wildcards if value_path else 0
        prefix = wildcard_prefix(path, anchor)
        if anchor > value_wildcards or wildcard_prefix(value_path, anchor) != prefix:
            raise MappingConfigError(
                key,
                f"label path {text!r} must follow the metric path {str(value_path) if value_path else '(none)'!r} "
                "up to its last wildcard (labels are read from the same array item / object member)",
            )
        rest = path.steps[len(prefix):]
        if any(isinstance(s, WILDCARDS) for s in rest):
            raise MappingConfigError(key, "internal: wildcard after anchor")
        return LabelSpec(name, path, anchor, rest, is_key=not rest)
    return LabelSpec(name, path, 0, path.steps)


@dataclass(frozen=True)
class PerSymbolPolicy:
    """``agent.per_symbol``: per-symbol series are off unless enabled, and capped per metric."""

    enabled: bool = False
    max_series: int = 200
    include: re.Pattern[str] | None = None


@dataclass
class MappingResult:
    families: list[Metric]
    errors: Counter  # metric full name → number of problems in this document
    reasons: dict[str, str]  # metric full name → first problem, for the log line


class Mapper:
    """Applies a fixed list of MetricSpec to stats documents."""

    def __init__(self, specs: Iterable[MetricSpec], namespace: str, per_symbol: PerSymbolPolicy = PerSymbolPolicy(),
                 *, compiled: bool = True):
        """``compiled=False`` keeps only the generic evaluator (tests compare the two paths)."""
        self.namespace = namespace
        self.per_symbol = per_symbol
        self.specs = tuple(s for s in specs if per_symbol.enabled or not s.per_symbol)
        self._compiled = tuple(compile_spec(s) if compiled else None for s in self.specs)
        self._names = tuple(self.full_name(s) for s in self.specs)

    def full_name(self, spec: MetricSpec) -> str:
        return f"{self.namespace}_{spec.name}" if self.namespace else spec.name

    @property
    def metric_names(self) -> list[str]:
        return [self.full_name(s) for s in self.specs]

    def apply(self, doc: Any) -> MappingResult:
        result = MappingResult([], Counter(), {})
        for spec, name, run in zip(self.specs, self._names, self._compiled, strict=True):
            family = self._family(spec, name, run, doc, result)
            if family is not None:
                result.families.append(family)
        return result

    def _family(self, spec: MetricSpec, name: str, run, doc: Any, result: MappingResult) -> Metric | None:
        def fail(reason: str, n: int = 1) -> None:
            result.errors[name] += n
            result.reasons.setdefault(name, reason)

        samples: dict[tuple[str, ...], float] | None = None
        if run is not None:  # compiled fast path; anything unusual → the generic path below
            try:
                samples = run(doc)
            except Bail:
                samples = None
        if samples is None:
            samples = self._generic_samples(spec, doc, fail)
        if spec.per_symbol:
            samples = self._cap(spec, samples, fail)
        if not samples:
            return None
        return RowsFamily(name, spec.help, spec.type, [lab.name for lab in spec.labels], samples.items())

    def _generic_samples(self, spec: MetricSpec, doc: Any, fail) -> dict[tuple[str, ...], float]:
        """Every match evaluated one by one, every problem counted and worded."""
        samples: dict[tuple[str, ...], float] = {}
        matches = evaluate(doc, spec.path) if spec.path is not None else [_CONSTANT_MATCH]
        for m in matches:
            if isinstance(m, Failure):
                fail(f"{m.error.where}: {m.error.reason}")
                continue
            value = spec.constant if spec.path is None else self._number(spec, m.value, fail)
            if value is None:
                continue
            labels = self._labels(spec, doc, m.binding, fail)
            if labels is None:
                continue
            if labels in samples:
                if spec.duplicates == "sum":
                    samples[labels] += value
                continue
            samples[labels] = value
        return samples

    @staticmethod
    def _number(spec: MetricSpec, raw: Any, fail) -> float | None:
        if spec.measure == "length":
            if isinstance(raw, list | dict):
                return float(len(raw)) * spec.scale
            fail(f"expected an array or object to measure, got {_short(raw)}")
            return None
        if raw is None:
            return None  # null means "no value yet" (e.g. no record received): no sample, no error
        if isinstance(raw, bool):
            value = 1.0 if raw else 0.0
        elif isinstance(raw, int | float):
            value = float(raw)
        elif isinstance(raw, str):
            if raw in spec.value_map:
                value = spec.value_map[raw]
            else:
                try:
                    value = float(raw)
                except ValueError:
                    if spec.value_map_default is None:
                        fail(f"non-numeric value {_short(raw)} (not in value_map)")
                        return None
                    value = float(spec.value_map_default)
        else:
            fail(f"non-numeric value {_short(raw)}")
            return None
        return value * spec.scale

    @staticmethod
    def _labels(spec: MetricSpec, doc: Any, binding, fail) -> tuple[str, ...] | None:
        out: list[str] = []
        for lab in spec.labels:
            if lab.anchor:
                key, node = binding[lab.anchor - 1]
                if lab.is_key:
                    out.append(str(key))
                    continue
            else:
                node = doc
            try:
                value = resolve(node, lab.rest)
            except Missing as exc:
                fail(f"label {lab.name}: {lab.path}: {exc.reason}")
                return None
            text = _label_text(value)
            if text is None:
                fail(f"label {lab.name}: {lab.path}: expected a string or number, got {_short(value)}")
                return None
            out.append(text)
        return tuple(out)

    def _cap(self, spec: MetricSpec, samples: dict, fail) -> dict:
        policy = self.per_symbol
        if policy.include is not None and SYMBOL_LABEL in (names := [lab.name for lab in spec.labels]):
            i = names.index(SYMBOL_LABEL)
            samples = {k: v for k, v in samples.items() if policy.include.fullmatch(k[i])}
        if len(samples) <= policy.max_series:
            return samples
        kept = sorted(samples)[: policy.max_series]
        dropped = len(samples) - len(kept)
        fail(f"{dropped} series over per_symbol.max_series={policy.max_series} dropped", dropped)
        return {k: samples[k] for k in kept}


_CONSTANT_MATCH = Match(None, ())  # a constant-valued entry: one sample, labels read from the root


def _label_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

