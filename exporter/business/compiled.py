"""Mapping entries compiled once into straight-line Python: the fast path of ``Mapper.apply``.

Why: the generic evaluator (paths.evaluate + per-match label resolution) allocates a generator
frame, a binding tuple and a Match per value and resolves every label from scratch; for a
10k-series per-symbol document that was ~37 ms. The compiled function is nested ``for`` loops over
the document with the label values taken as soon as their wildcard is bound (the exchange name once
per exchange, not once per position).

The fast path handles only the well-formed case: numbers, ``null`` (no sample), label values that
are strings or numbers. On anything else (a missing key, a wrong type, a value the generic code
would report) it raises ``Bail`` and the caller redoes that metric with the generic evaluator, which
counts and words every problem exactly as before. So both paths give the same samples by
construction, and errors keep one implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from exporter.business.paths import EachItem, EachKey, Index, Key, Missing, resolve


class Bail(Exception):  # noqa: N818 - a signal, not an error
    """The document needs the generic evaluator for this metric."""


_MISS = object()


def _bail(reason: str, n: int = 1) -> None:
    raise Bail


def compile_spec(spec: Any) -> Callable[[Any], dict[tuple[str, ...], float]] | None:
    """``run(doc) -> {label values: value}`` for a MetricSpec with a path (None for a constant
    entry: one sample, nothing to gain). ``run`` raises Bail when the generic path must decide."""
    if spec.path is None:
        return None
    from exporter.business.mapping import Mapper, _label_text  # mapping imports this module

    def text(value: Any) -> str:
        """A non-string label value as the generic path words it (numbers, booleans)."""
        out = _label_text(value)
        if out is None:
            raise Bail
        return out

    def root_label(doc: Any, steps: tuple) -> str:
        try:
            value = resolve(doc, steps)
        except Missing:
            raise Bail from None
        return value if value.__class__ is str else text(value)

    consts: dict[str, Any] = {"Bail": Bail, "MISS": _MISS, "text": text, "root_label": root_label}
    counter = iter(range(1_000_000))

    def const(value: Any) -> str:
        name = f"c{next(counter)}"
        consts[name] = value
        return name

    def steps_code(var: str, steps: tuple, ind: str, src: str | None = None, known: set[str] | None = None
                   ) -> list[str]:
        """Code setting ``var`` to ``src`` (default: ``var`` itself) walked through wildcard-free
        ``steps``, raising Bail where the generic path would fail. A missing key raises KeyError,
        which ``run`` turns into Bail. ``known``: loop variables already checked to be dicts in
        this iteration (their check is not repeated)."""
        out = []
        cur = src or var
        for step in steps:
            if type(step) is Key:
                if known is None or cur not in known:
                    out.append(f"{ind}if {cur}.__class__ is not dict: raise Bail")
                    if known is not None and cur != var:
                        known.add(cur)
                out.append(f"{ind}{var} = {cur}[{const(step.name)}]")
            elif type(step) is Index:
                c = const(step.index)
                out += [f"{ind}if {cur}.__class__ is not list or not -len({cur}) <= {c} < len({cur}): raise Bail",
                        f"{ind}{var} = {cur}[{c}]"]
            else:
                raise AssertionError(f"wildcard in a resolved path: {step}")
            cur = var
        if cur != var:
            out.append(f"{ind}{var} = {cur}")
        return out

    def label_code(j: int, lab: Any, ind: str, known: set[str]) -> list[str]:
        if lab.is_key:
            return [f"{ind}L{j} = str(b{lab.anchor - 1})"]
        return [*steps_code("x", lab.rest, ind, src=f"i{lab.anchor - 1}", known=known),
                f"{ind}L{j} = x if x.__class__ is str else text(x)"]

    # The body runs inside ``try: ... except KeyError: raise Bail``: a dict subscript that misses
    # is the one KeyError possible (labels and values are formatted by code that raises none).
    lines = ["def run(doc):", "    samples = {}", "    try:"]
    for j, lab in enumerate(spec.labels):
        if not lab.anchor:  # read from the document root: the same for every sample
            root = const(lab.rest)
            lines.append(f"        L{j} = root_label(doc, {root})")
    ind = "        "
    pending = "doc"  # what ``n`` stands for until it is assigned
    depth = 0
    for step in spec.path.steps:
        kind = type(step)
        if kind is EachItem or kind is EachKey:
            if pending != "n":
                lines.append(f"{ind}n = {pending}")
            # the key/index is bound only when a label prints it
            key_used = any(lab.is_key and lab.anchor == depth + 1 for lab in spec.labels)
            if kind is EachItem:
                lines += [f"{ind}if n.__class__ is not list: raise Bail",
                          f"{ind}for b{depth}, i{depth} in enumerate(n):" if key_used else f"{ind}for i{depth} in n:"]
            else:
                lines += [f"{ind}if n.__class__ is not dict: raise Bail",
                          f"{ind}for b{depth}, i{depth} in n.items():" if key_used else f"{ind}for i{depth} in n.values():"]
            ind += "    "
            pending = f"i{depth}"
            known: set[str] = set()
            depth += 1
            for j, lab in enumerate(spec.labels):
                if lab.anchor == depth:
                    lines += label_code(j, lab, ind, known)
        else:
            lines += steps_code("n", (step,), ind, src=None if pending == "n" else pending,
                                known=known if depth else None)
            pending = "n"
    if pending != "n":
        lines.append(f"{ind}n = {pending}")
    skip = "continue" if depth else "return samples"
    scale = "" if spec.scale == 1.0 else f" * {const(spec.scale)}"
    if spec.measure == "length":
        lines += [f"{ind}if not isinstance(n, (list, dict)): raise Bail",
                  f"{ind}v = float(len(n)){scale}"]
    else:
        consts["number"] = lambda raw: Mapper._number(spec, raw, _bail)
        lines += [f"{ind}c = n.__class__",
                  f"{ind}if c is float: v = n{scale}",  # float(n) is n itself for a float
                  f"{ind}elif c is int: v = float(n){scale}",
                  f"{ind}elif n is None: {skip}",
                  f"{ind}else: v = number(n)"]
    key = "(" + "".join(f"L{j}, " for j in range(len(spec.labels))) + ")"
    lines.append(f"{ind}key = {key}")
    if spec.duplicates == "sum":
        lines += [f"{ind}if key in samples: samples[key] += v", f"{ind}else: samples[key] = v"]
    else:
        lines.append(f"{ind}if key not in samples: samples[key] = v")
    lines += ["    except KeyError:", "        raise Bail from None", "    return samples"]
    source = "\n".join(lines) + "\n"
    namespace = dict(consts)
    exec(compile(source, f"<mapping {spec.name}>", "exec"), namespace)  # noqa: S102 - our own generated code
    run = namespace["run"]
    run.source = source  # for debugging and tests
    return run
