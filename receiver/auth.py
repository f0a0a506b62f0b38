"""Inbound auth as AlertManager sends it (http_config.authorization / basic_auth).

Credentials are compared with ``hmac.compare_digest`` and every configured credential is checked,
so neither the result nor the timing says which part was wrong.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from receiver.config import AuthConfig


def _eq(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def authorized(auth: AuthConfig | None, header: str | None) -> bool:
    """True when no auth is configured or the Authorization header carries a configured credential."""
    if auth is None:
        return True
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    ok = False
    if scheme == "bearer" and auth.bearer_token:
        ok = _eq(value, auth.bearer_token)
    elif scheme == "basic" and auth.basic_auth:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        user_ok = _eq(user, auth.basic_auth.username)
        password_ok = _eq(password, auth.basic_auth.password)
        ok = bool(sep) and user_ok and password_ok
    return ok


def challenge(auth: AuthConfig) -> str:
    """WWW-Authenticate value for a 401."""
    return 'Basic realm="alert-receiver"' if auth.basic_auth else 'Bearer realm="alert-receiver"'
