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
    yield from _walk(doc, path.steps, 0, (), "")


def _walk(node: Any, steps: tuple[Step, ...], i: int, binding: Binding, where: str) -> Iterator[Match | Failure]:
    while i < len(steps):
        step = steps[i]
        here = _join(where, str(step))
        if isinstance(step, Key):
            if not isinstance(node, dict):
                yield Failure(Missing(here, f"expected an object at {where or '<root>'}, got {_kind(node)}"), binding)
                return
            if step.name not in node:
                yield Failure(Missing(here, "missing key"), binding)
                return
            node = node[step.name]
        elif isinstance(step, Index):
            if not isinstance(node, list):
                yield Failure(Missing(here, f"expected an array at {where or '<root>'}, got {_kind(node)}"), binding)
                return
            try:
                node = node[step.index]
            except IndexError:
                yield Failure(Missing(here, "index out of range"), binding)
                return
        elif isinstance(step, EachItem):
            if not isinstance(node, list):
                yield Failure(Missing(here, f"expected an array at {where or '<root>'}, got {_kind(node)}"), binding)
                return
            for n, item in enumerate(node):
                yield from _walk(item, steps, i + 1, binding + ((n, item),), f"{where}[{n}]")
            return
        else:  # EachKey
            if not isinstance(node, dict):
                yield Failure(Missing(here, f"expected an object at {where or '<root>'}, got {_kind(node)}"), binding)
                return
            for key, item in node.items():
                yield from _walk(item, steps, i + 1, binding + ((key, item),), _join(where, str(Key(key))))
            return
        where = here
        i += 1
    yield Match(node, binding)


def _join(where: str, step: str) -> str:
    """Human-readable location of a step, for error messages: ``exchanges[2].requests``."""
    if not where or step.startswith("["):
        return where + step
    return f"{where}.{step}"


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
