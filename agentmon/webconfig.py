"""``--web.config.file`` in the Prometheus exporter-toolkit format: TLS and bcrypt basic auth.

    tls_server_config:
      cert_file: server.crt            # relative paths are relative to this file
      key_file: server.key
      client_ca_file: ca.crt           # optional, for client certificates (mTLS)
      client_auth_type: RequireAndVerifyClientCert
      min_version: TLS12
    http_server_config:
      headers: {X-Frame-Options: deny}
    basic_auth_users:
      prometheus: $2b$10$...           # htpasswd -nBC 10 "" | tr -d ':\\n'

Why here: both agent-exporter and alert-receiver serve HTTP and may need the same protection.
bcrypt costs ~70 ms per check, so results are cached (keyed by a SHA-256 of user, password and hash,
as exporter-toolkit does), checks run in a worker thread, and unknown users are compared against a
dummy hash so response time does not reveal which user names exist.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

log = logging.getLogger("agentmon.webconfig")

_TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                 "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
                "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
# bcrypt("agentmon-dummy-password", cost 10): compared against when the user is unknown.
_DUMMY_HASH = b"$2b$10$ksFO9Fyv.Hog/sTqYIRT5u5wQwKBGEisUew4qyAjCBOyAhIYTSjLO"

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "tls_server_config": {
            "type": "object",
            "additionalProperties": False,
            "required": ["cert_file", "key_file"],
            "properties": {
                "cert_file": {"type": "string", "minLength": 1},
                "key_file": {"type": "string", "minLength": 1},
                "client_ca_file": {"type": "string", "minLength": 1},
                "client_auth_type": {"enum": sorted(_CLIENT_AUTH)},
                "min_version": {"enum": sorted(_TLS_VERSIONS)},
                "max_version": {"enum": sorted(_TLS_VERSIONS)},
            },
        },
        "http_server_config": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "http2": {"type": "boolean"},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "basic_auth_users": {
            "type": ["object", "null"],
            "additionalProperties": {"type": "string", "pattern": r"^\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}$"},
        },
    },
}


@dataclass(frozen=True)
class TLSConfig:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    max_version: str | None = None


@dataclass(frozen=True)
class WebConfig:
    tls: TLSConfig | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    source: str = "<none>"

    def ssl_context(self) -> ssl.SSLContext | None:
        return build_ssl_context(self.tls) if self.tls else None


def build_ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _TLS_VERSIONS[tls.min_version]
    if tls.max_version:
        ctx.maximum_version = _TLS_VERSIONS[tls.max_version]
    ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    ctx.verify_mode = _CLIENT_AUTH[tls.client_auth_type]
    if tls.client_ca_file:
        ctx.load_verify_locations(cafile=str(tls.client_ca_file))
    return ctx


def load_web_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> WebConfig:
    """Parse and check the file (certificates are loaded once here so mistakes surface at startup)."""
    if path is None:
        return WebConfig()
    from agentmon.configload import ConfigError, Problem, load_config  # lazy: jsonschema only when used

    filename = str(path)
    data = load_config(path, SCHEMA, env=env)
    base = Path(path).resolve().parent
    problems: list[Problem] = []

    def rel(p: str | None) -> Path | None:
        return None if p is None else (base / p if not Path(p).is_absolute() else Path(p))

    tls = None
    t = data.get("tls_server_config")
    if t:
        tls = TLSConfig(
            cert_file=rel(t["cert_file"]),  # type: ignore[arg-type]
            key_file=rel(t["key_file"]),  # type: ignore[arg-type]
            client_ca_file=rel(t.get("client_ca_file")),
            client_auth_type=t.get("client_auth_type", "NoClientCert"),
            min_version=t.get("min_version", "TLS12"),
            max_version=t.get("max_version"),
        )
        for key in ("cert_file", "key_file", "client_ca_file"):
            p = getattr(tls, key)
            if p is not None and not p.is_file():
                problems.append(Problem(("tls_server_config", key), f"file not found: {p}"))
        if tls.client_auth_type != "NoClientCert" and tls.client_ca_file is None:
            problems.append(Problem(("tls_server_config", "client_ca_file"),
                                    f"required when client_auth_type is {tls.client_auth_type}"))
        if not problems:
            try:
                build_ssl_context(tls)
            except (ssl.SSLError, OSError) as exc:
                problems.append(Problem(("tls_server_config", "cert_file"), f"cannot load certificate/key: {exc}"))
    if problems:
        raise ConfigError(filename, problems)
    users = {u: h.encode() for u, h in (data.get("basic_auth_users") or {}).items()}
    headers = dict((data.get("http_server_config") or {}).get("headers") or {})
    return WebConfig(tls=tls, users=users, headers=headers, source=filename)


class BasicAuth:
    """Checks ``Authorization: Basic`` headers against bcrypt hashes, with a bounded result cache."""

    def __init__(self, users: Mapping[str, bytes], cache_size: int = 1024):
        import bcrypt  # lazy: only servers with basic auth pay for it

        self._checkpw = bcrypt.checkpw
        self.users = dict(users)
        self._cache: OrderedDict[bytes, bool] = OrderedDict()
        self._cache_size = cache_size

    @staticmethod
    def parse(header: str | None) -> tuple[str, str] | None:
        if not header or header[:6].lower() != "basic ":
            return None
        try:
            user, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return (user, password) if sep else None

    async def check(self, header: str | None) -> bool:
        creds = self.parse(header)
        if creds is None:
            return False
        user, password = creds
        known = user in self.users
        hashed = self.users.get(user, _DUMMY_HASH)
        key = hashlib.sha256(b"\0".join((user.encode(), password.encode(), hashed))).digest()
        ok = self._cache.get(key)
        if ok is None:
            ok = await asyncio.to_thread(self._checkpw, password.encode(), hashed)
            ok = ok and known
            self._cache[key] = ok
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return bool(ok)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebGuard:
    """The live web settings behind an aiohttp server: basic auth, response headers and the SSL
    context. ``update()`` applies a re-read web config on reload (SIGHUP): users and headers are
    swapped, and certificates are loaded into the running SSL context so new connections get them
    (certificate rotation without a restart). Turning TLS on or off needs a restart."""

    def __init__(self, config: WebConfig, realm: str = "agentmon"):
        self.config = config
        self.realm = realm
        self.auth = BasicAuth(config.users) if config.users else None
        self.headers = dict(config.headers)
        self.ssl_context = config.ssl_context()

    def check_update(self, new: WebConfig) -> None:
        """Raise ValueError when ``new`` cannot be applied to the running server."""
        if (new.tls is None) != (self.config.tls is None):
            raise ValueError(f"{new.source}: turning TLS on or off needs a restart")

    def update(self, new: WebConfig) -> None:
        self.check_update(new)
        if new.tls is not None and self.ssl_context is not None:
            t = new.tls
            self.ssl_context.load_cert_chain(str(t.cert_file), str(t.key_file))
            self.ssl_context.minimum_version = _TLS_VERSIONS[t.min_version]
            if t.max_version:
                self.ssl_context.maximum_version = _TLS_VERSIONS[t.max_version]
            if t.client_ca_file:
                self.ssl_context.load_verify_locations(cafile=str(t.client_ca_file))
            self.ssl_context.verify_mode = _CLIENT_AUTH[t.client_auth_type]
        self.auth = BasicAuth(new.users) if new.users else None
        self.headers = dict(new.headers)
        self.config = new

    def middleware(self) -> Callable:
        """aiohttp middleware: basic auth (when users are configured) and the configured headers."""
        guard = self

        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            auth = guard.auth
            if auth is not None and not await auth.check(request.headers.get("Authorization")):
                resp: web.StreamResponse = web.Response(
                    status=401, text="Unauthorized\n", headers={"WWW-Authenticate": f'Basic realm="{guard.realm}"'}
                )
            else:
                resp = await handler(request)
            for k, v in guard.headers.items():
                resp.headers.setdefault(k, v)
            return resp

        return middleware


def web_middleware(config: WebConfig, realm: str = "agentmon") -> Callable:
    """aiohttp middleware for a fixed web config (see WebGuard for one that can be reloaded)."""
    return WebGuard(config, realm).middleware()
