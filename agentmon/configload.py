"""Load a YAML config file, expand ``${ENV}``, validate it with a JSON Schema, and report every
problem as ``file:line: key.path: reason`` — so a bad config stops the process before it serves."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from agentmon.redact import redact_text

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class Problem:
    path: tuple[str | int, ...]
    reason: str
    line: int | None = None

    def format(self, filename: str) -> str:
        where = f"{filename}:{self.line}" if self.line else filename
        return f"{where}: {format_path(self.path) or '<root>'}: {self.reason}"


class ConfigError(Exception):
    """One or more problems in a config file; ``str()`` lists them, one per line."""

    def __init__(self, filename: str, problems: Iterable[Problem]):
        self.filename = filename
        self.problems = sorted(problems, key=lambda p: (p.line or 0, format_path(p.path)))
        super().__init__("\n".join(p.format(filename) for p in self.problems))


def format_path(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_schema(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _line_index(node: yaml.Node, prefix: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Map every key path in the YAML document to its 1-based line number."""
    out = {} if out is None else out
    out.setdefault(prefix, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = prefix + (key.value,)
            out[path] = key.start_mark.line + 1
            _line_index(value, path, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, prefix + (i,), out)
    return out


def _line_for(index: Mapping[tuple, int], path: tuple) -> int | None:
    while True:
        if path in index:
            return index[path]
        if not path:
            return None
        path = path[:-1]


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last one."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first defined on line {seen[key]})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line + 1
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def expand_env(data: Any, env: Mapping[str, str], path: tuple = (), problems: list | None = None) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in string values; an unset VAR without default is a problem."""
    problems = [] if problems is None else problems
    if isinstance(data, dict):
        return {k: expand_env(v, env, path + (k,), problems) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_env(v, env, path + (i,), problems) for i, v in enumerate(data)]
    if isinstance(data, str) and "${" in data:

        def sub(m: re.Match) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append(Problem(path, f"environment variable {name} is not set"))
            return ""

        return _ENV_REF.sub(sub, data)
    return data


SemanticCheck = Callable[[dict[str, Any]], Iterable[tuple[tuple[str | int, ...], str]]]


def load_config(
    path: str | os.PathLike,
    schema: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    checks: Iterable[SemanticCheck] = (),
) -> dict[str, Any]:
    """Parse, expand and validate ``path``. Raises ConfigError naming file, line and key path."""
    filename = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(filename, [Problem((), f"cannot read file: {exc.strerror or exc}")]) from None
    return load_config_text(text, schema, filename=filename, env=env, checks=checks)


def load_config_text(
    text: str,
    schema: Mapping[str, Any],
    *,
    filename: str = "<config>",
    env: Mapping[str, str] | None = None,
    checks: Iterable[SemanticCheck] = (),
) -> dict[str, Any]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = f"invalid YAML: {getattr(exc, 'problem', None) or exc}"
        raise ConfigError(filename, [Problem((), reason, mark.line + 1 if mark else None)]) from None
    if data is None:
        data = {}
    index = _line_index(node) if node is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(filename, [Problem((), "the top level must be a mapping", 1)])

    problems: list[Problem] = []
    data = expand_env(data, os.environ if env is None else env, (), problems)
    validator = jsonschema.Draft202012Validator(schema)
    for err in validator.iter_errors(data):
        problems.append(_schema_problem(err))
    if not problems:
        for check in checks:
            for p, reason in check(data):
                problems.append(Problem(tuple(p), reason))
    if problems:
        raise ConfigError(filename, [Problem(p.path, p.reason, _line_for(index, p.path)) for p in problems])
    return data


_SECRET_KEY = re.compile(r"(password|secret|token|credential|key|authorization|url|headers)", re.I)


def _safe_message(err: jsonschema.ValidationError, path: tuple) -> str:
    """jsonschema quotes the offending value; never echo it back when it may be a secret."""
    message = err.message
    if any(isinstance(p, str) and _SECRET_KEY.search(p) for p in path) and isinstance(err.instance, str):
        message = message.replace(repr(err.instance), "<secret>")
    return redact_text(message)


def _schema_problem(err: jsonschema.ValidationError) -> Problem:
    path = tuple(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = set(err.schema.get("properties", {}))
        extra = sorted(k for k in err.instance if k not in allowed)
        patterns = err.schema.get("patternProperties", {})
        extra = [k for k in extra if not any(re.search(p, k) for p in patterns)]
        if extra:
            hint = f" (allowed: {', '.join(sorted(allowed))})" if allowed else ""
            return Problem(path + (extra[0],), f"unknown key {extra[0]!r}{hint}")
    if err.validator in ("oneOf", "anyOf") and err.context:
        best = jsonschema.exceptions.best_match(err.context)
        best_path = tuple(best.absolute_path) or path
        return Problem(best_path, _safe_message(best, best_path))
    return Problem(path, _safe_message(err, path))
