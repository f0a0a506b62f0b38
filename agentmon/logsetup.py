"""One line per event, logfmt (default) or JSON, for ELK/Loki. Extra fields come from ``extra=``.

    log.info("delivered", extra={"target": "ops", "attempt": 2})
    → ts=2026-11-28T09:00:00.000Z level=info logger=receiver.engine msg=delivered target=ops attempt=2
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

LEVELS = ("debug", "info", "warn", "error")
FORMATS = ("logfmt", "json")
_STD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    t = time.gmtime(record.created)
    out: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z",
        "level": {"WARNING": "warn", "CRITICAL": "error"}.get(record.levelname, record.levelname.lower()),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for k, v in vars(record).items():
        if k not in _STD_ATTRS and not k.startswith("_"):
            out[k] = v
    if record.exc_info and record.exc_info[0] is not None:
        out["err"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
    return out


def _logfmt_value(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str, ensure_ascii=False)
    if s == "" or any(c in s for c in ' ="\\\n\t'):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'
    return s


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (not the object seen at setup), so a
    replaced or closed stderr (test capture, daemonisation) never breaks logging."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(level: str = "info", fmt: str = "logfmt", stream=None) -> None:
    """Configure the root logger once per process (CLI entry points only; libraries never call it)."""
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel({"warn": logging.WARNING}.get(level, getattr(logging, level.upper(), logging.INFO)))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
