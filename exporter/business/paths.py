"""The mapping's path syntax: dotted keys, ``[*]`` to iterate an array, ``*`` to iterate an object's
keys, ``[N]`` to index an array, ``["odd key"]`` for keys with other characters.

    exchanges[*].requests.total        every exchange's request counter
    exchanges[*].records.*             every value of every exchange's ``records`` object
    agent.version                      one value

A path is parsed once (config load) into steps; evaluating it yields every match together with the
wildcard bindings that led to it, so label paths can be resolved against the same array item.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


class PathSyntaxError(ValueError):
    """A mapping path that does not follow the documented grammar."""


@dataclass(frozen=True)
class Key:
    name: str

    def __str__(self) -> str:
        return self.name if _IDENT.fullmatch(self.name) else f'["{self.name}"]'


@dataclass(frozen=True)
class Index:
    index: int

    def __str__(self) -> str:
        return f"[{self.index}]"


@dataclass(frozen=True)
class EachItem:
    """``[*]``: every element of an array; binds (index, element)."""

    def __str__(self) -> str:
        return "[*]"


@dataclass(frozen=True)
class EachKey:
    """``*``: every member of an object; binds (key, value)."""

    def __str__(self) -> str:
        return "*"


Step = Key | Index | EachItem | EachKey
WILDCARDS = (EachItem, EachKey)
_IDENT = re.compile(r"[A-Za-z0-9_\-]+")
_TOKEN = re.compile(r'\.?(?P<ident>[A-Za-z0-9_\-]+)|\.?(?P<star>\*)|\[(?:(?P<each>\*)|(?P<idx>-?\d+)|"(?P<quoted>[^"]*)")\]')


@dataclass(frozen=True)
class Path:
    text: str
    steps: tuple[Step, ...]

    @property
    def wildcards(self) -> int:
        return sum(isinstance(s, WILDCARDS) for s in self.steps)

    def __str__(self) -> str:
        return self.text


def parse_path(text: str) -> Path:
    """Parse ``text``; raises PathSyntaxError naming the offending position."""
    if not isinstance(text, str) or not text:
        raise PathSyntaxError("empty path")
    steps: list[Step] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        dotted = text.startswith(".", pos)
        if m is None or (pos == 0 and dotted) or (pos > 0 and not dotted and not text.startswith("[", pos)):
            raise PathSyntaxError(f"unexpected {text[pos:pos + 10]!r} at position {pos} in {text!r}")
        if m.group("ident") is not None:
            steps.append(Key(m.group("ident")))
        elif m.group("star") is not None:
            steps.append(EachKey())
        elif m.group("each") is not None:
            steps.append(EachItem())
        elif m.group("idx") is not None:
            steps.append(Index(int(m.group("idx"))))
        else:
            steps.append(Key(m.group("quoted")))
        pos = m.end()
    if text.endswith("."):
        raise PathSyntaxError(f"path {text!r} ends with '.'")
    return Path(text, tuple(steps))


class Missing(LookupError):
    """A key or index the document does not have (or a value of the wrong kind on the way)."""

    def __init__(self, where: str, reason: str):
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


# A binding records, for each wildcard passed, the key/index chosen and the element it selected.
Binding = tuple[tuple[str | int, Any], ...]


@dataclass(frozen=True)
class Match:
    value: Any
    binding: Binding


@dataclass(frozen=True)
class Failure:
    error: Missing
    binding: Binding


def evaluate(doc: Any, path: Path) -> Iterator[Match | Failure]:
    """Every value ``path`` selects in ``doc``; a missing key on one branch yields a Failure for that
    branch only, so one broken array item never hides the others."""
    yield from _walk(doc, path.steps, 0, ())


def resolve(node: Any, steps: tuple[Step, ...]) -> Any:
    """The single value a wildcard-free ``steps`` selects under ``node``; raises Missing."""
    for i, step in enumerate(steps):
        node, reason = _step(node, step)
        if reason is not None:
            raise Missing(_location(steps, i, ()), reason)
    return node


def _step(node: Any, step: Step) -> tuple[Any, str | None]:
    """One non-wildcard step: (child, None) or (None, why not). Hot path: no string work on success."""
    if type(step) is Key:
        if type(node) is dict:
            try:
                return node[step.name], None
            except KeyError:
                return None, "missing key"
        return None, f"expected an object, got {_kind(node)}"
    if type(node) is list:
        try:
            return node[step.index], None
        except IndexError:
            return None, "index out of range"
    return None, f"expected an array, got {_kind(node)}"


def _walk(node: Any, steps: tuple[Step, ...], i: int, binding: Binding) -> Iterator[Match | Failure]:
    n = len(steps)
    while i < n:
        step = steps[i]
        kind = type(step)
        if kind is EachItem:
            if type(node) is not list:
                yield Failure(Missing(_location(steps, i, binding), f"expected an array, got {_kind(node)}"), binding)
                return
            for k, item in enumerate(node):
                yield from _walk(item, steps, i + 1, binding + ((k, item),))
            return
        if kind is EachKey:
            if type(node) is not dict:
                yield Failure(Missing(_location(steps, i, binding), f"expected an object, got {_kind(node)}"), binding)
                return
            for key, item in node.items():
                yield from _walk(item, steps, i + 1, binding + ((key, item),))
            return
        node, reason = _step(node, step)
        if reason is not None:
            yield Failure(Missing(_location(steps, i, binding), reason), binding)
            return
        i += 1
    yield Match(node, binding)


def _location(steps: tuple[Step, ...], upto: int, binding: Binding) -> str:
    """Human-readable place of a failure, wildcards replaced by what they were bound to:
    ``exchanges[2].requests.errors``."""
    out = ""
    bound = iter(binding)
    for step in steps[: upto + 1]:
        text = str(step)
        if isinstance(step, WILDCARDS):
            chosen = next(bound, None)
            if chosen is not None:
                text = f"[{chosen[0]}]" if isinstance(step, EachItem) else str(Key(str(chosen[0])))
        out = out + text if (not out or text.startswith("[")) else f"{out}.{text}"
    return out


def _kind(node: Any) -> str:
    if node is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(type(node), "a number")


def wildcard_prefix(path: Path, count: int) -> tuple[Step, ...]:
    """The steps of ``path`` up to and including its ``count``-th wildcard."""
    seen = 0
    for i, step in enumerate(path.steps):
        if isinstance(step, WILDCARDS):
            seen += 1
            if seen == count:
                return path.steps[: i + 1]
    return ()
