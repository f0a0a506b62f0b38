"""Typed alert-receiver configuration, parsed once from YAML (the only place raw dicts are seen).

Channel engineers code against ``TargetConfig``; the engine against ``ReceiverConfig``. Errors
name file, line and key path (``agentmon.configload``). Secrets come from ``${ENV}`` or ``*_file``
keys and are only ever shown redacted (``ReceiverConfig.describe``).
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from agentmon.configload import ConfigError, Problem, load_config, load_schema
from agentmon.redact import REDACTED, redact_options
from receiver.channels.base import Channel, RateLimit

SCHEMA_PATH = Path(__file__).parent / "schemas" / "receiver-config.schema.json"

#: target keys every channel shares; everything else is a channel option
COMMON_TARGET_KEYS = (
    "type", "send_resolved", "rate_limit", "template", "language", "timezone",
    "retry_max_age", "timeout", "proxy_url", "ca_file",
)

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"^([0-9]+)(B|KB|KiB|MB|MiB|GB|GiB)?$")
_SIZE_UNITS = {None: 1, "B": 1, "KB": 1000, "KiB": 1024, "MB": 10**6, "MiB": 2**20, "GB": 10**9, "GiB": 2**30}


def parse_duration(value: float | int | str) -> float:
    """Seconds from a number or a Prometheus-style duration ("1h30m", "500ms")."""
    if isinstance(value, int | float):
        return float(value)
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(value):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(value) or not value:
        raise ValueError(f"invalid duration {value!r} (expected e.g. 30s, 5m, 1h30m)")
    return total


def parse_byte_size(value: int | str) -> int:
    if isinstance(value, int):
        return value
    m = _SIZE.match(value)
    if not m:
        raise ValueError(f"invalid size {value!r} (expected e.g. 1048576, 512KiB, 1MiB)")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2)]


def parse_rate_limit(value: str | Mapping[str, Any]) -> RateLimit:
    """``"20/1m"`` or ``{messages: 20, per_seconds: 60}`` → RateLimit(20, 60.0)."""
    if isinstance(value, str):
        count, _, per = value.partition("/")
        return RateLimit(int(count), parse_duration(per))
    return RateLimit(int(value["messages"]), float(value["per_seconds"]))


@dataclass(frozen=True)
class BasicAuth:
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class AuthConfig:
    """Inbound credentials; a request passes with ANY configured credential (Bearer or Basic)."""

    bearer_token: str | None = field(default=None, repr=False)
    basic_auth: BasicAuth | None = None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.bearer_token:
            out["bearer_token"] = REDACTED
        if self.basic_auth:
            out["basic_auth"] = {"username": self.basic_auth.username, "password": REDACTED}
        return out


@dataclass(frozen=True)
class TargetConfig:
    """One delivery target: a channel type plus its options and the keys all channels share."""

    name: str
    type: str
    options: Mapping[str, Any] = field(repr=False)  # channel-specific keys (url, secret, to, ...), secrets resolved
    send_resolved: bool | None = None  # None → channel default
    rate_limit: RateLimit | None = None  # None → channel.default_rate_limit
    template: str | None = None  # template name or path overriding the channel default
    language: str = "en"  # zh | en
    timezone: str = "UTC"
    retry_max_age: float = 3600.0  # seconds before a retryable failure becomes a dead letter
    timeout: float = 10.0
    proxy_url: str | None = None
    ca_file: str | None = None

    def describe(self, secret_options: tuple[str, ...] = ()) -> dict[str, Any]:
        """Status-page view: every secret redacted."""
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        out.update(redact_options(self.options, secret_options))
        for key in ("send_resolved", "template", "language", "timezone", "retry_max_age", "timeout", "ca_file"):
            out[key] = getattr(self, key)
        if self.rate_limit:
            out["rate_limit"] = {"messages": self.rate_limit.messages, "per_seconds": self.rate_limit.per_seconds}
        if self.proxy_url:
            out["proxy_url"] = redact_options({"proxy_url": self.proxy_url})["proxy_url"]
        return out


@dataclass(frozen=True)
class ReceiverConfig:
    routes: Mapping[str, tuple[str, ...]]  # route name (URL /alerts/<route>) → target names
    targets: Mapping[str, TargetConfig]
    auth: AuthConfig | None = None  # global inbound auth (ingest, API, reload)
    route_auth: Mapping[str, AuthConfig] = field(default_factory=dict)  # per-route override
    dedup_window: float = 300.0
    max_body_bytes: int = 4 * 2**20
    template_dir: str | None = None
    retention: float = 7 * 86400.0  # delivered notifications older than this are pruned
    dead_letter_retention: float = 30 * 86400.0  # dead letters given up longer ago than this too
    retry_initial_backoff: float = 1.0
    retry_max_backoff: float = 300.0
    max_digest_notifications: int = 500
    # a digest waits until no notification arrived for `quiet` (the burst is over), at most `max`
    # after its oldest one: one complete digest instead of several partial ones, and no rendering
    # while AlertManager is still posting
    digest_quiet: float = 1.0
    digest_max_wait: float = 10.0
    source: str = ""  # file the config came from

    def auth_for_route(self, route: str) -> AuthConfig | None:
        return self.route_auth.get(route, self.auth)

    def describe(self, registry: Mapping[str, type[Channel]] | None = None) -> dict[str, Any]:
        """The whole config for status pages and /api/v1/status, secrets redacted."""
        registry = registry or {}

        def secrets(t: TargetConfig) -> tuple[str, ...]:
            cls = registry.get(t.type)
            return tuple(cls.secret_options) if cls else ()

        return {
            "source": self.source,
            "routes": {r: list(ts) for r, ts in self.routes.items()},
            "targets": {n: t.describe(secrets(t)) for n, t in self.targets.items()},
            "auth": self.auth.describe() if self.auth else None,
            "route_auth": {r: a.describe() for r, a in self.route_auth.items()},
            "dedup_window": self.dedup_window,
            "max_body_bytes": self.max_body_bytes,
            "template_dir": self.template_dir,
            "retention": self.retention,
            "dead_letter_retention": self.dead_letter_retention,
            "retry_backoff": {"initial": self.retry_initial_backoff, "max": self.retry_max_backoff},
            "max_digest_notifications": self.max_digest_notifications,
            "digest_wait": {"quiet": self.digest_quiet, "max": self.digest_max_wait},
        }


def load_receiver_config(
    path: str | Path,
    *,
    registry: Mapping[str, type[Channel]] | None = None,
    env: Mapping[str, str] | None = None,
) -> ReceiverConfig:
    """Parse and validate ``path``; raises ``ConfigError`` listing every problem (file:line: key: why).

    ``registry`` maps ``type:`` to channel classes (default: ``receiver.channels.load_registry()``).
    """
    if registry is None:
        from receiver.channels import load_registry

        registry = load_registry()
    builder = _Builder(Path(path), registry)
    load_config(path, load_schema(SCHEMA_PATH), env=env, checks=[builder.check])
    if builder.result is None:  # pragma: no cover - check() always sets it when there are no problems
        raise ConfigError(str(path), [Problem((), "internal error: configuration not built")])
    return builder.result


class _Builder:
    """Semantic checks + typed construction in one pass, so every problem gets a line number."""

    def __init__(self, path: Path, registry: Mapping[str, type[Channel]]):
        self.path = path
        self.base = path.resolve().parent
        self.registry = registry
        self.problems: list[tuple[tuple, str]] = []
        self.result: ReceiverConfig | None = None

    def problem(self, path: tuple, reason: str) -> None:
        self.problems.append((path, reason))

    def check(self, data: dict[str, Any]) -> list[tuple[tuple, str]]:
        targets = {name: self.target(name, raw) for name, raw in data["targets"].items()}
        routes: dict[str, tuple[str, ...]] = {}
        route_auth: dict[str, AuthConfig] = {}
        for route, spec in data["routes"].items():
            names = spec if isinstance(spec, list) else spec["targets"]
            for i, name in enumerate(names):
                if name not in data["targets"]:
                    key = ("routes", route) + ((i,) if isinstance(spec, list) else ("targets", i))
                    known = ", ".join(sorted(data["targets"])) or "none"
                    self.problem(key, f"unknown target {name!r} (targets defined: {known})")
            if len(set(names)) != len(names):
                self.problem(("routes", route), "a target is listed twice")
            routes[route] = tuple(dict.fromkeys(names))
            if isinstance(spec, dict) and "auth" in spec:
                auth = self.auth(("routes", route, "auth"), spec["auth"])
                if auth:
                    route_auth[route] = auth
        auth = self.auth(("auth",), data["auth"]) if "auth" in data else None
        backoff = data.get("retry_backoff", {})
        initial = parse_duration(backoff.get("initial", 1.0))
        maximum = parse_duration(backoff.get("max", 300.0))
        if initial <= 0 or maximum < initial:
            self.problem(("retry_backoff",), "need 0 < initial <= max")
        digest_wait = data.get("digest_wait", {})
        if parse_duration(digest_wait.get("max", 10.0)) < parse_duration(digest_wait.get("quiet", 1.0)):
            self.problem(("digest_wait",), "need quiet <= max")
        template_dir = data.get("template_dir")
        if template_dir is not None:
            template_dir = str(self.base / template_dir)
            if not Path(template_dir).is_dir():
                self.problem(("template_dir",), f"not a directory: {template_dir}")
        if not self.problems:
            self.result = ReceiverConfig(
                routes=routes,
                targets={n: t for n, t in targets.items() if t is not None},
                auth=auth,
                route_auth=route_auth,
                dedup_window=parse_duration(data.get("dedup_window", 300.0)),
                max_body_bytes=parse_byte_size(data.get("max_body_bytes", 4 * 2**20)),
                template_dir=template_dir,
                retention=parse_duration(data.get("retention", 7 * 86400.0)),
                dead_letter_retention=parse_duration(data.get("dead_letter_retention", 30 * 86400.0)),
                retry_initial_backoff=initial,
                retry_max_backoff=maximum,
                max_digest_notifications=int(data.get("max_digest_notifications", 500)),
                digest_quiet=parse_duration(digest_wait.get("quiet", 1.0)),
                digest_max_wait=parse_duration(digest_wait.get("max", 10.0)),
                source=str(self.path),
            )
        return self.problems

    # -- pieces ---------------------------------------------------------------------------------

    def read_secret_file(self, path: tuple, filename: str) -> str | None:
        full = self.base / filename
        try:
            return full.read_text(encoding="utf-8").strip()
        except OSError as exc:
            self.problem(path, f"cannot read {full}: {exc.strerror or exc}")
            return None

    def auth(self, path: tuple, raw: Mapping[str, Any]) -> AuthConfig | None:
        token = raw.get("bearer_token")
        if "bearer_token_file" in raw:
            if token is not None:
                self.problem(path + ("bearer_token_file",), "bearer_token and bearer_token_file are mutually exclusive")
            token = self.read_secret_file(path + ("bearer_token_file",), raw["bearer_token_file"])
        basic = None
        if "basic_auth" in raw:
            b = raw["basic_auth"]
            password = b.get("password")
            if "password_file" in b:
                if password is not None:
                    self.problem(path + ("basic_auth", "password_file"), "password and password_file are mutually exclusive")
                password = self.read_secret_file(path + ("basic_auth", "password_file"), b["password_file"])
            if not password:
                self.problem(path + ("basic_auth",), "basic_auth needs a non-empty password or password_file")
            else:
                basic = BasicAuth(b["username"], password)
        if not token and not basic:
            self.problem(path, "auth needs bearer_token(_file) and/or basic_auth")
            return None
        return AuthConfig(bearer_token=token or None, basic_auth=basic)

    def target(self, name: str, raw: Mapping[str, Any]) -> TargetConfig | None:
        path = ("targets", name)
        cls = self.registry.get(raw["type"])
        if cls is None:
            known = ", ".join(sorted(self.registry)) or "none installed"
            self.problem(path + ("type",), f"unknown channel type {raw['type']!r} (known types: {known})")
            return None
        schema = _options_schema(cls)
        declared = set(schema.get("properties", {}))
        options: dict[str, Any] = {}
        ok = True
        for key, value in raw.items():
            if key in COMMON_TARGET_KEYS:
                continue
            if key.endswith("_file") and key not in declared and key[:-5] in declared:
                plain = key[:-5]
                if plain in raw:
                    self.problem(path + (key,), f"{plain} and {key} are mutually exclusive")
                    ok = False
                    continue
                secret = self.read_secret_file(path + (key,), value) if isinstance(value, str) else None
                if secret is None:
                    if not isinstance(value, str):
                        self.problem(path + (key,), "must be a file name")
                    ok = False
                    continue
                options[plain] = secret
            else:
                options[key] = value
        validator = jsonschema.Draft202012Validator(schema)
        for err in sorted(validator.iter_errors(options), key=lambda e: [str(p) for p in e.absolute_path]):
            ok = False
            where = path + tuple(err.absolute_path)
            if err.validator == "additionalProperties" and not err.absolute_path:
                where += (sorted(k for k in options if k not in declared)[0],)
            self.problem(where, _option_message(err, cls.type, declared))
        common = self.common(path, raw)
        if not ok or common is None:
            return None
        try:  # channels check what a schema cannot express (URL shape, key combinations)
            cls(name, options)
        except (ValueError, TypeError) as exc:
            self.problem(path, f"invalid {cls.type} target: {exc}")
            return None
        return TargetConfig(name=name, type=raw["type"], options=options, **common)

    def common(self, path: tuple, raw: Mapping[str, Any]) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        ok = True
        if "send_resolved" in raw:
            out["send_resolved"] = raw["send_resolved"]
        if "rate_limit" in raw:
            rl = parse_rate_limit(raw["rate_limit"])
            if rl.messages < 1 or rl.per_seconds <= 0:
                self.problem(path + ("rate_limit",), "need at least 1 message per a positive duration")
                ok = False
            out["rate_limit"] = rl
        if "template" in raw:
            tpl = raw["template"]
            # a path (has a separator or a .j2 suffix) is relative to the config file
            out["template"] = str(self.base / tpl) if ("/" in tpl or tpl.endswith(".j2")) else tpl
        if "language" in raw:
            out["language"] = raw["language"]
        if "timezone" in raw:
            try:
                zoneinfo.ZoneInfo(raw["timezone"])
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                self.problem(path + ("timezone",), f"unknown time zone {raw['timezone']!r} (IANA name, e.g. Asia/Shanghai)")
                ok = False
            out["timezone"] = raw["timezone"]
        for key in ("retry_max_age", "timeout"):
            if key in raw:
                out[key] = parse_duration(raw[key])
                if out[key] <= 0:
                    self.problem(path + (key,), "must be positive")
                    ok = False
        if "proxy_url" in raw:
            out["proxy_url"] = raw["proxy_url"]
        if "ca_file" in raw:
            ca = self.base / raw["ca_file"]
            if not ca.is_file():
                self.problem(path + ("ca_file",), f"no such file: {ca}")
                ok = False
            out["ca_file"] = str(ca)
        return out if ok else None


def _options_schema(cls: type[Channel]) -> dict[str, Any]:
    """A channel's ``options_schema`` as a full object schema (a bare ``properties`` map is wrapped)."""
    raw = dict(cls.options_schema or {})
    if raw.get("type") == "object" and isinstance(raw.get("properties"), dict):
        schema = dict(raw)
    else:
        schema = {"type": "object", "properties": raw}
    schema.setdefault("additionalProperties", False)
    required = tuple(getattr(cls, "required_options", ()))
    if required:
        schema["required"] = sorted(set(schema.get("required", ())) | set(required))
    return schema


def _option_message(err: jsonschema.ValidationError, type_: str, declared: set[str]) -> str:
    allowed = sorted(set(declared) | set(COMMON_TARGET_KEYS))
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        extra = sorted(k for k in err.instance if k not in declared)
        return f"unknown key {extra[0]!r} for a {type_} target (allowed: {', '.join(allowed)})"
    if err.validator == "required":
        return f"{err.message} (required by {type_} targets)"
    # never echo a value: it may be a secret
    if err.validator == "type":
        types = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        return f"must be of type {' or '.join(types)}"
    if err.validator == "pattern":
        return f"does not match the pattern {err.validator_value!r}"
    if err.validator == "enum":
        return f"must be one of {', '.join(map(str, err.validator_value))}"
    return err.message.replace(repr(err.instance), "the value")
