"""Secret redaction: tokens, keys and passwords never reach logs, errors or status pages."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "<secret>"
# Query keys that carry credentials in robot URLs (DingTalk access_token, WeCom key, signatures).
SECRET_QUERY_KEYS = re.compile(r"(secret|token|key|sign|nonce|digest|password|pass)", re.I)
# Path segments that are themselves secrets: Slack/Feishu hooks, Telegram bot tokens.
_SECRET_PATH = re.compile(r"(/services/)[^\s\"']+|(/hook/)[^\s/\"']+|(/bot)\d+:[A-Za-z0-9_-]+")
_URL = re.compile(r"https?://[^\s\"'<>]+")


def redact_url(url: str) -> str:
    """Mask credential query parameters, userinfo and secret path segments in a URL."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        netloc = REDACTED + "@" + netloc.rsplit("@", 1)[1]
    query = urlencode(
        [(k, REDACTED if SECRET_QUERY_KEYS.search(k) else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)],
        safe="<>",
    )
    path = _SECRET_PATH.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + REDACTED, parts.path)
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Redact every URL found in free text (exception messages often embed the request URL)."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


def redact_options(options: Mapping[str, Any], secret_keys: Iterable[str] = ()) -> dict[str, Any]:
    """Copy of a target's options fit for a status page."""
    secret = set(secret_keys)
    out: dict[str, Any] = {}
    for k, v in options.items():
        if k in secret or k.endswith(("password", "secret", "token", "key")):
            out[k] = REDACTED if v else v
        elif isinstance(v, str) and v.startswith(("http://", "https://")):
            out[k] = redact_url(v)
        else:
            out[k] = v
    return out
