"""Jinja2 templating for outbound messages: a sandboxed environment, AlertManager-compatible helpers.

Why a sandbox and lenient undefined: label and annotation values come from whoever writes alert
rules (untrusted), and peers abort a whole notification on one missing key. Values are data and
are never re-evaluated (a label ``{{ 7*7 }}`` renders literally); a missing key renders empty.

Templates live in ``receiver/templates/<name>.<lang>.j2`` (lang ``zh``/``en``); each defines one
``{% block <field> %}`` per field the channel consumes. A user ``template_dir`` overrides built-ins
by file name; ``builtin/<file>`` always names the shipped file (so a user template can
``{% extends "builtin/email.en.j2" %}`` and override one block). The context and every helper are
documented in docs/templates.md — keep the two in sync.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from jinja2 import nodes
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup, escape

BUILTIN_DIR = Path(__file__).parent / "templates"
BUILTIN_PREFIX = "builtin/"
LANGUAGES = ("en", "zh")
MACROS_TEMPLATE = "_macros.j2"

#: fields rendered with HTML autoescaping (everything else is plain text / markup the template escapes)
HTML_FIELDS = frozenset({"html"})

# ---------------------------------------------------------------------------------------------
# Words and severities
# ---------------------------------------------------------------------------------------------

SEVERITY_RANK: dict[str, int] = {"emergency": 5, "critical": 4, "error": 3, "warning": 2, "info": 1}
_SEVERITY_ALIASES = {
    "fatal": "emergency",
    "disaster": "emergency",
    "page": "critical",
    "crit": "critical",
    "high": "error",
    "err": "error",
    "major": "error",
    "warn": "warning",
    "minor": "warning",
    "medium": "warning",
    "low": "info",
    "notice": "info",
    "information": "info",
    "informational": "info",
    "none": "info",
}

WORDS: dict[str, dict[str, str]] = {
    "en": {
        "firing": "FIRING",
        "resolved": "RESOLVED",
        "sev.emergency": "EMERGENCY",
        "sev.critical": "CRITICAL",
        "sev.error": "ERROR",
        "sev.warning": "WARNING",
        "sev.info": "INFO",
        "sev.unknown": "UNKNOWN",
        "firing_for": "firing for {d}",
        "lasted": "lasted {d}",
        "started": "Started",
        "ended": "Resolved at",
        "labels": "Labels",
        "value": "Value",
        "last_value": "Last value",
        "description": "Description",
        "graph": "Graph",
        "runbook": "Runbook",
        "silence": "Silence",
        "alertmanager": "AlertManager",
        "more": "…and {n} more",
        "alerts": "alerts",
        "digest": "Digest: {count} notifications, {alerts} alerts",
        "by_alertname": "By alert",
        "by_severity": "By severity",
        "top_alerts": "Most important",
        "groups": "({n} groups)",
    },
    "zh": {
        "firing": "告警",
        "resolved": "恢复",
        "sev.emergency": "紧急",
        "sev.critical": "严重",
        "sev.error": "错误",
        "sev.warning": "警告",
        "sev.info": "提示",
        "sev.unknown": "未知",
        "firing_for": "已持续 {d}",
        "lasted": "持续了 {d}",
        "started": "开始时间",
        "ended": "恢复时间",
        "labels": "标签",
        "value": "当前值",
        "last_value": "最后值",
        "description": "描述",
        "graph": "查看图表",
        "runbook": "处理手册",
        "silence": "静默",
        "alertmanager": "AlertManager",
        "more": "……还有 {n} 条",
        "alerts": "条告警",
        "digest": "汇总：{count} 个通知，{alerts} 条告警",
        "by_alertname": "按告警名",
        "by_severity": "按级别",
        "top_alerts": "最重要的告警",
        "groups": "（{n} 组）",
    },
}

_STATUS_EMOJI = {"firing": "🔥", "resolved": "✅"}
_SEVERITY_EMOJI = {"emergency": "🆘", "critical": "🔴", "error": "🟠", "warning": "🟡", "info": "🔵", "": "⚪"}
_SEVERITY_COLOR = {"emergency": "red", "critical": "red", "error": "orange", "warning": "yellow", "info": "blue", "": "grey"}


def normalize_severity(sev: Any) -> str:
    """``Critical``/``crit``/``page`` → ``critical``; unknown words are kept lower-cased."""
    s = str(sev or "").strip().lower()
    return _SEVERITY_ALIASES.get(s, s)


def severity_rank(sev: Any) -> int:
    """emergency 5 > critical 4 > error 3 > warning 2 > info 1 > anything else 0."""
    return SEVERITY_RANK.get(normalize_severity(sev), 0)


def highest_severity(severities: Iterable[Any]) -> str:
    """The most important severity among ``severities`` (normalized), '' when none is known."""
    best, best_rank = "", -1
    for s in severities:
        n = normalize_severity(s)
        r = SEVERITY_RANK.get(n, 0)
        if r > best_rank or (r == best_rank and not best and n):
            best, best_rank = n, r
    return best


def _get(obj: Any, key: str, default: Any = "") -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def importance_key(alert: Any) -> tuple:
    """Sort key: firing before resolved, higher severity first, older first, then by name."""
    starts = _get(alert, "starts_at", None)
    ts = starts.timestamp() if isinstance(starts, datetime) else float("inf")
    return (
        0 if _get(alert, "status") == "firing" else 1,
        -severity_rank(_get(alert, "severity")),
        ts,
        str(_get(alert, "name")),
        str(_get(alert, "fingerprint")),
    )


def by_importance(alerts: Iterable[Any]) -> list[Any]:
    return sorted(alerts, key=importance_key)


# ---------------------------------------------------------------------------------------------
# Time and durations
# ---------------------------------------------------------------------------------------------


def get_zone(name: str | None) -> ZoneInfo:
    """ZoneInfo for ``name`` (IANA, e.g. ``Asia/Shanghai``); None/'' means UTC."""
    if not name or name.upper() == "UTC":
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name!r} (expected an IANA name such as Asia/Shanghai)") from exc


def _to_seconds(value: Any) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def humanize_duration(value: Any) -> str:
    """Prometheus/AlertManager ``humanizeDuration``: 90061 → ``1d 1h 1m 1s``; 0.5 → ``500ms``."""
    v = _to_seconds(value)
    if v == 0:
        return "0s"
    sign = "-" if v < 0 else ""
    v = abs(v)
    if v >= 1:
        total = int(v)
        days, rem = divmod(total, 86400)
        hours, rem = divmod(rem, 3600)
        minutes, seconds = divmod(rem, 60)
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{v:.4g}s"
    prefix = ""
    for p in ("m", "u", "n", "p"):
        if v >= 1:
            break
        prefix = p
        v *= 1000
    return f"{sign}{v:.4g}{prefix}s"


_UNITS = {
    "en": (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)),
    "zh": (("天", 86400), ("小时", 3600), ("分", 60), ("秒", 1)),
}


def short_duration(value: Any, language: str = "en", parts: int = 2) -> str:
    """Compact, language-aware duration: ``2h 5m`` / ``2小时5分``; at most ``parts`` units."""
    total = int(abs(_to_seconds(value)))
    units = _UNITS.get(language, _UNITS["en"])
    out: list[str] = []
    for unit, size in units:
        n, total = divmod(total, size)
        if n and len(out) < parts:
            out.append(f"{n}{unit}")
        elif out:  # stop at the first gap after the leading unit (1h 0m 5s → 1h)
            break
    if not out:
        out.append(f"0{units[-1][0]}")
    return (" " if language == "en" else "").join(out)


# Go reference-time layout (AM's ``date``) → strftime. Longest tokens first.
_GO_LAYOUT = [
    ("2006", "%Y"), ("Z07:00", "%:z"), ("-07:00", "%:z"), ("-0700", "%z"), ("January", "%B"),
    ("Monday", "%A"), ("Jan", "%b"), ("Mon", "%a"), ("MST", "%Z"), ("01", "%m"), ("02", "%d"),
    ("15", "%H"), ("03", "%I"), ("04", "%M"), ("05", "%S"), ("PM", "%p"), ("06", "%y"),
    ("_2", "%e"), (".000000000", ".%f"), (".000000", ".%f"), (".000", ".%f"),
]
_GO_TOKEN = re.compile("|".join(re.escape(t) for t, _ in _GO_LAYOUT))
_GO_MAP = dict(_GO_LAYOUT)
DEFAULT_TIME_FORMAT = "%Y-%m-%d %H:%M:%S %Z"


def to_strftime(layout: str) -> str:
    """Accept a strftime format (has ``%``) or a Go layout such as ``2006-01-02 15:04:05``."""
    if "%" in layout:
        return layout
    return _GO_TOKEN.sub(lambda m: _GO_MAP[m.group(0)], layout)


def format_time(dt: datetime, layout: str) -> str:
    fmt = to_strftime(layout)
    if "%:z" in fmt:  # not supported by strftime before 3.12
        off = dt.strftime("%z")
        fmt = fmt.replace("%:z", (off[:3] + ":" + off[3:]) if off else "Z")
    if "%f" in fmt:
        fmt = fmt.replace("%f", f"{dt.microsecond // 1000:03d}")
    return dt.strftime(fmt)


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value:
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    return None


# ---------------------------------------------------------------------------------------------
# Escaping filters (one per output dialect)
# ---------------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\*_`\[\]<>#|~])")
_MD_LIST = re.compile(r"^(\s*)(?:([-+])|(\d+)([.)]))(\s)", re.M)


def md_escape(value: Any) -> str:
    """Markdown escape for DingTalk/WeCom/Feishu: \\ * _ ` [ ] < > # | ~ and leading list markers."""
    s = _MD_SPECIAL.sub(r"\\\1", str(value))
    return _MD_LIST.sub(
        lambda m: m.group(1) + (("\\" + m.group(2)) if m.group(2) else (m.group(3) + "\\" + m.group(4))) + m.group(5), s
    )


def slack_escape(value: Any) -> str:
    """Slack mrkdwn control characters: & < > (Slack's own rule)."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def html_escape(value: Any) -> Markup:
    """HTML escape (& < > " ') for Telegram HTML and e-mail; Markup so autoescape won't double it."""
    return escape(str(value)) if not isinstance(value, Markup) else value


def nl2br(value: Any) -> Markup:
    """HTML-escape and turn newlines into ``<br>`` (multi-line annotations in e-mail HTML)."""
    return Markup("<br>\n").join(html_escape(line) for line in str(value).split("\n"))


# ---------------------------------------------------------------------------------------------
# AlertManager-compatible helpers
# ---------------------------------------------------------------------------------------------


def sorted_pairs(kv: Mapping[str, Any] | None) -> list[tuple[str, Any]]:
    """AM ``KV.SortedPairs``: ``alertname`` first, then keys in order."""
    if not kv:
        return []
    items = sorted(kv.items())
    return [p for p in items if p[0] == "alertname"] + [p for p in items if p[0] != "alertname"]


def remove_keys(kv: Mapping[str, Any] | None, keys: Iterable[str] | str) -> dict[str, Any]:
    """AM ``KV.Remove``: copy of ``kv`` without ``keys``."""
    drop = {keys} if isinstance(keys, str) else set(keys)
    return {k: v for k, v in (kv or {}).items() if k not in drop}


def re_replace_all(pattern: str, repl: str, text: Any) -> str:
    """AM ``reReplaceAll pattern repl text`` (Go ``$1`` group syntax accepted)."""
    py_repl = re.sub(r"\$\{?(\d+)\}?", r"\\\1", repl)
    return re.sub(pattern, py_repl, str(text))


def re_match(pattern: str, text: Any) -> bool:
    """AM ``match pattern text`` (regex search, like Go's MatchString)."""
    return re.search(pattern, str(text)) is not None


def _status_filter(status: str) -> Callable[[Iterable[Any]], list[Any]]:
    def pick(alerts: Iterable[Any]) -> list[Any]:
        return [a for a in alerts or () if _get(a, "status") == status]

    return pick


def build_silence_url(external_url: str, labels: Mapping[str, str]) -> str:
    """AlertManager UI link that opens a new silence prefilled with ``labels`` as ``{k="v",…}``."""
    if not external_url:
        return ""
    matchers = ",".join(
        f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for k, v in sorted_pairs(labels)
    )
    return f"{external_url.rstrip('/')}/#/silences/new?filter={quote('{' + matchers + '}', safe='')}"


def build_alertmanager_url(external_url: str, receiver: str = "") -> str:
    """AM's ``__alertmanagerURL``: the alert list for this receiver."""
    if not external_url:
        return ""
    base = external_url.rstrip("/") + "/#/alerts"
    return base + (f"?receiver={quote(receiver, safe='')}" if receiver else "")


def _ctx_zone(ctx: Any) -> ZoneInfo:
    return get_zone(ctx.get("timezone") or None)


def _ctx_lang(ctx: Any) -> str:
    lang = ctx.get("language") or "en"
    return lang if lang in WORDS else "en"


def _ctx_now(ctx: Any) -> datetime:
    now = ctx.get("now")
    return now if isinstance(now, datetime) else datetime.now(UTC)


class ZonedDatetime(datetime):
    """A time already placed in a zone by ``tz``: formatting keeps that zone (AM's ``tz`` then ``date``)."""


@jinja2.pass_context
def f_localtime(ctx: Any, value: Any, layout: str = DEFAULT_TIME_FORMAT) -> str:
    dt = _as_datetime(value)
    if dt is None:
        return ""
    return format_time(dt if isinstance(value, ZonedDatetime) else dt.astimezone(_ctx_zone(ctx)), layout)


@jinja2.pass_context
def g_date(ctx: Any, layout: str, value: Any) -> str:
    """AM ``date "layout" t`` (Go layout or strftime), in the configured timezone (or ``tz``'s)."""
    return f_localtime(ctx, value, layout)


def g_tz(name: str, value: Any) -> datetime | None:
    """AM ``tz "Asia/Shanghai" t``: the time in another zone; ``date`` then formats it there."""
    dt = _as_datetime(value)
    if dt is None:
        return None
    z = dt.astimezone(get_zone(name))
    return ZonedDatetime.combine(z.date(), z.timetz())


@jinja2.pass_context
def g_since(ctx: Any, value: Any) -> timedelta:
    """AM ``since t``: time elapsed from ``t`` to ``now``."""
    dt = _as_datetime(value)
    return (_ctx_now(ctx) - dt) if dt else timedelta(0)


@jinja2.pass_context
def f_duration(ctx: Any, value: Any, parts: int = 2) -> str:
    return short_duration(value, _ctx_lang(ctx), parts)


@jinja2.pass_context
def g_t(ctx: Any, key: str, **kw: Any) -> str:
    """Translate a phrase key (see ``WORDS``) into the target's language."""
    text = WORDS[_ctx_lang(ctx)].get(key) or WORDS["en"].get(key, key)
    return text.format(**kw) if kw else text


@jinja2.pass_context
def g_status_word(ctx: Any, status: Any) -> str:
    return g_t(ctx, "resolved" if status == "resolved" else "firing")


@jinja2.pass_context
def g_severity_word(ctx: Any, sev: Any) -> str:
    n = normalize_severity(sev)
    if n in SEVERITY_RANK:
        return g_t(ctx, f"sev.{n}")
    return str(sev) if sev else g_t(ctx, "sev.unknown")


def g_status_emoji(status: Any) -> str:
    return _STATUS_EMOJI.get(str(status), _STATUS_EMOJI["firing"])


def g_severity_emoji(sev: Any, status: Any = "firing") -> str:
    if status == "resolved":
        return _STATUS_EMOJI["resolved"]
    return _SEVERITY_EMOJI.get(normalize_severity(sev) if severity_rank(sev) else "", _SEVERITY_EMOJI[""])


def g_severity_color(sev: Any, status: Any = "firing") -> str:
    """Colour word for cards/borders: red, orange, yellow, blue, grey; green when resolved."""
    if status == "resolved":
        return "green"
    return _SEVERITY_COLOR.get(normalize_severity(sev) if severity_rank(sev) else "", "grey")


@jinja2.pass_context
def g_silence_url(ctx: Any, alert_or_labels: Any) -> str:
    """``silence_url(alert)`` (or a labels mapping): new-silence page prefilled with the labels."""
    labels = _get(alert_or_labels, "labels", None)
    if not isinstance(labels, Mapping):
        labels = alert_or_labels if isinstance(alert_or_labels, Mapping) else {}
    return build_silence_url(str(ctx.get("external_url") or ""), labels)


def to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _filters() -> dict[str, Callable[..., Any]]:
    return {
        # AlertManager names
        "toUpper": lambda s: str(s).upper(),
        "toLower": lambda s: str(s).lower(),
        "title": lambda s: str(s).title(),
        "trimSpace": lambda s: str(s).strip(),
        "safeHtml": lambda s: Markup(str(s)),
        "safeUrl": lambda s: Markup(str(s)),
        "urlquery": lambda s: quote(str(s), safe=""),
        "reReplaceAll": lambda text, pattern, repl: re_replace_all(pattern, repl, text),
        "match": lambda text, pattern: re_match(pattern, text),
        "humanizeDuration": humanize_duration,
        "since": g_since,
        "localtime": f_localtime,
        "tz": lambda value, name: g_tz(name, value),
        "sortedPairs": sorted_pairs,
        "remove": remove_keys,
        "firing": _status_filter("firing"),
        "resolved": _status_filter("resolved"),
        "toJson": to_json,
        # ours
        "duration": f_duration,
        "by_importance": by_importance,
        "severity_rank": severity_rank,
        "md": md_escape,
        "slack_escape": slack_escape,
        "html": html_escape,
        "nl2br": nl2br,
    }


@jinja2.pass_context
def _f_date(ctx: Any, value: Any, layout: str = DEFAULT_TIME_FORMAT) -> str:
    return f_localtime(ctx, value, layout)


def _globals() -> dict[str, Any]:
    return {
        "toUpper": lambda s: str(s).upper(),
        "toLower": lambda s: str(s).lower(),
        "title": lambda s: str(s).title(),
        "trimSpace": lambda s: str(s).strip(),
        "join": lambda sep, seq: str(sep).join(str(x) for x in seq or ()),
        "safeHtml": lambda s: Markup(str(s)),
        "reReplaceAll": re_replace_all,
        "match": re_match,
        "humanizeDuration": humanize_duration,
        "since": g_since,
        "date": g_date,
        "tz": g_tz,
        "sortedPairs": sorted_pairs,
        "toJson": to_json,
        "t": g_t,
        "status_word": g_status_word,
        "status_emoji": g_status_emoji,
        "severity_word": g_severity_word,
        "severity_emoji": g_severity_emoji,
        "severity_color": g_severity_color,
        "severity_rank": severity_rank,
        "silence_url": g_silence_url,
        # escapers as functions too, so a macro can take one as a parameter: m.alert_text(a, esc=md)
        "md": md_escape,
        "slack_escape": slack_escape,
        "html": html_escape,
        "plain": lambda s: "" if s is None else str(s),
    }


# ---------------------------------------------------------------------------------------------
# Loader and the Templates object
# ---------------------------------------------------------------------------------------------


class TemplateProblem(Exception):
    """A template could not be found, compiled or rendered; the message names file and line."""


class _Loader(jinja2.BaseLoader):
    """``builtin/x`` → shipped file; absolute path → that file; else user dir, then built-ins."""

    def __init__(self, user_dir: Path | None):
        self.user_dir = user_dir

    def _candidates(self, name: str) -> list[Path]:
        if name.startswith(BUILTIN_PREFIX):
            return [BUILTIN_DIR / name[len(BUILTIN_PREFIX):]]
        p = Path(name)
        if p.is_absolute():
            return [p]
        if ".." in p.parts:
            return []
        out = [self.user_dir / name] if self.user_dir else []
        out.append(BUILTIN_DIR / name)
        return out

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        for path in self._candidates(template):
            if path.is_file():
                mtime = path.stat().st_mtime
                source = path.read_text(encoding="utf-8")
                return source, str(path), lambda p=path, m=mtime: p.is_file() and p.stat().st_mtime == m
        raise jinja2.TemplateNotFound(template)


def _make_env(loader: jinja2.BaseLoader, autoescape: bool) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=loader,
        autoescape=autoescape,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        extensions=["jinja2.ext.loopcontrols"],
    )
    env.filters.update(_filters())
    env.filters["date"] = _f_date  # ``t|date("2006-01-02")`` in the configured timezone
    env.globals.update(_globals())
    return env


class Templates:
    """Finds and renders channel templates. One per receiver config; ``clock`` is injectable.

    ``clock()`` returns an aware datetime; it is the ``now`` of every render (tests fix it so
    golden output is deterministic).
    """

    def __init__(self, user_dir: str | Path | None = None, *, clock: Callable[[], datetime] | None = None):
        self.user_dir = Path(user_dir) if user_dir else None
        if self.user_dir is not None and not self.user_dir.is_dir():
            raise ValueError(f"template_dir {str(self.user_dir)!r} is not a directory")
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        loader = _Loader(self.user_dir)
        self._text_env = _make_env(loader, autoescape=False)
        self._html_env = _make_env(loader, autoescape=True)

    # -- lookup ---------------------------------------------------------------------------------

    def resolve(self, name: str, language: str) -> str:
        """Loader name of template ``name`` for ``language``.

        ``name`` is a template name (``dingtalk`` → ``dingtalk.<lang>.j2``, else ``dingtalk.j2``,
        else ``dingtalk.en.j2``), a file name with ``.j2``, or a path to a file.
        """
        candidates: list[str]
        if name.endswith(".j2") or "/" in name:
            p = Path(name)
            if not p.is_absolute() and "/" in name and not name.startswith(BUILTIN_PREFIX):
                p = p.resolve()
                candidates = [str(p)]
            else:
                candidates = [name]
        else:
            candidates = [f"{name}.{language}.j2", f"{name}.j2", f"{name}.en.j2"]
        for cand in candidates:
            try:
                self._text_env.loader.get_source(self._text_env, cand)  # type: ignore[union-attr]
            except jinja2.TemplateNotFound:
                continue
            return cand
        where = f" (searched {self.user_dir} and the built-ins)" if self.user_dir else ""
        raise TemplateProblem(f"template {name!r} for language {language!r} not found{where}")

    def source_path(self, loader_name: str) -> str:
        return self._text_env.loader.get_source(self._text_env, loader_name)[1]  # type: ignore[union-attr]

    # -- rendering ------------------------------------------------------------------------------

    def render(self, name: str, language: str, fields: Sequence[str], context: Mapping[str, Any]) -> dict[str, str]:
        """Render each block in ``fields`` of template ``name``; raises ``TemplateProblem``."""
        loader_name = self.resolve(name, language)
        out: dict[str, str] = {}
        for field_name in fields:
            env = self._html_env if field_name in HTML_FIELDS else self._text_env
            out[field_name] = self._render_block(env, loader_name, field_name, context)
        return out

    def check(self, name: str, language: str, fields: Sequence[str]) -> list[str]:
        """Problems with template ``name`` (not found, syntax error, missing blocks) — for config checks."""
        try:
            loader_name = self.resolve(name, language)
            tmpl = self._text_env.get_template(loader_name)
        except TemplateProblem as exc:
            return [str(exc)]
        except jinja2.TemplateSyntaxError as exc:
            return [f"{exc.filename or exc.name}:{exc.lineno}: {exc.message}"]
        blocks = self._all_blocks(self._text_env, tmpl)
        return [f"{tmpl.filename}: no {{% block {f} %}} (the channel needs it)" for f in fields if f not in blocks]

    def _all_blocks(self, env: jinja2.Environment, tmpl: jinja2.Template) -> set[str]:
        names = set(tmpl.blocks)
        source = env.loader.get_source(env, tmpl.name)[0]  # type: ignore[union-attr]
        for node in env.parse(source).find_all(nodes.Extends):
            if isinstance(node.template, nodes.Const):
                names |= self._all_blocks(env, env.get_template(node.template.value))
        return names

    def _render_block(self, env: jinja2.Environment, loader_name: str, block: str, context: Mapping[str, Any]) -> str:
        try:
            tmpl = env.get_template(loader_name)
            vars_ = dict(context)
            vars_.setdefault("m", self._macros(env, context))
            ctx = tmpl.new_context(vars_)
            if self._root_needed(env, tmpl):
                for _ in tmpl.root_render_func(ctx):  # runs {% extends %}/{% import %}/{% set %}
                    pass
            funcs = ctx.blocks.get(block)
            if not funcs:
                raise TemplateProblem(f"{tmpl.filename}: no {{% block {block} %}} (the channel needs it)")
            return env.concat(funcs[0](ctx)).strip("\n")  # type: ignore[attr-defined]
        except TemplateProblem:
            raise
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateProblem(f"{exc.filename or exc.name}:{exc.lineno}: syntax error: {exc.message}") from exc
        except jinja2.TemplateNotFound as exc:
            raise TemplateProblem(f"{loader_name}: template {exc.name!r} not found") from exc
        except Exception as exc:  # runtime errors inside user templates: report, caller falls back
            raise TemplateProblem(f"{loader_name}: block {block!r}: {type(exc).__name__}: {exc}") from exc

    def _macros(self, env: jinja2.Environment, context: Mapping[str, Any]) -> Any:
        return env.get_template(MACROS_TEMPLATE).make_module(dict(context))

    def _root_needed(self, env: jinja2.Environment, tmpl: jinja2.Template) -> bool:
        """True when the template has top-level statements (extends, import, set, macro) that
        blocks may depend on; then the root runs first. Cached on the (compiled) template."""
        flag = getattr(tmpl, "_agentmon_needs_root", None)
        if flag is None:
            source = env.loader.get_source(env, tmpl.name)[0]  # type: ignore[union-attr]
            flag = any(
                not isinstance(n, nodes.Block)
                and not (isinstance(n, nodes.Output) and all(isinstance(c, nodes.TemplateData) and not c.data.strip() for c in n.nodes))
                for n in env.parse(source).body
            )
            tmpl._agentmon_needs_root = flag  # type: ignore[attr-defined]
        return flag
