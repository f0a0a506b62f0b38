#!/usr/bin/env python3
"""Generate the Prometheus recording and alerting rules from rules/config.yml.

Why a generator: operators tune thresholds, durations and severities in one YAML file without
touching PromQL, and the job selectors live in one place. The PromQL templates below use
``[[name]]`` placeholders (``[[name|pct]]``, ``[[name|seconds]]`` format a value); they never
clash with PromQL braces or Go-template ``{{ }}`` in annotations.

    python rules/generate.py            # (re)write rules/agentmon.rules.yml and rules/agentmon.alerts.yml
    python rules/generate.py --check    # exit 1 if the committed files are out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from agentmon.generated import write_or_check

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE / "config.yml"
RULES_FILE = "agentmon.rules.yml"
ALERTS_FILE = "agentmon.alerts.yml"

SEVERITIES = ("info", "warning", "error", "critical", "emergency")
SELECTOR_KEYS = ("exporter", "receiver", "alertmanager")
_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_PLACEHOLDER = re.compile(r"\[\[(\w+)(?:\|(\w+))?\]\]")


class ConfigError(ValueError):
    """Bad rules config: the message names the file, the key path and the line."""


# ---------------------------------------------------------------------------------------------
# Rule templates
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RecordingRule:
    record: str
    expr: str


@dataclass(frozen=True)
class AlertSpec:
    """One alert: PromQL and annotation templates; tunables come from config.yml."""

    name: str
    group: str
    component: str
    expr: str
    summary: str
    description: str
    params: tuple[str, ...] = ()  # tunables besides severity/for that config.yml must provide


RECORDING_RULES: tuple[RecordingRule, ...] = (
    # Host
    RecordingRule(
        "instance:agentmon_cpu_utilisation:rate5m",
        '1 - sum by (job, instance) (rate(agentmon_cpu_seconds_total{[[exporter]], mode=~"idle|iowait|steal"}[5m]))'
        '\n  / sum by (job, instance) (rate(agentmon_cpu_seconds_total{[[exporter]], mode!~"guest|guest_nice"}[5m]))',
    ),
    RecordingRule(
        "instance:agentmon_memory_used:ratio",
        "1 - agentmon_memory_available_bytes{[[exporter]]} / agentmon_memory_total_bytes{[[exporter]]}",
    ),
    RecordingRule(
        "instance_mountpoint:agentmon_filesystem_used:ratio",
        "1 - agentmon_filesystem_avail_bytes{[[exporter]]} / (agentmon_filesystem_size_bytes{[[exporter]]} > 0)",
    ),
    RecordingRule(
        "instance_device:agentmon_network_receive_bytes:rate5m",
        "sum by (job, instance, device) (rate(agentmon_network_receive_bytes_total{[[exporter]]}[5m]))",
    ),
    RecordingRule(
        "instance_device:agentmon_network_transmit_bytes:rate5m",
        "sum by (job, instance, device) (rate(agentmon_network_transmit_bytes_total{[[exporter]]}[5m]))",
    ),
    RecordingRule(
        "instance_device:agentmon_disk_read_bytes:rate5m",
        "sum by (job, instance, device) (rate(agentmon_disk_read_bytes_total{[[exporter]]}[5m]))",
    ),
    RecordingRule(
        "instance_device:agentmon_disk_written_bytes:rate5m",
        "sum by (job, instance, device) (rate(agentmon_disk_written_bytes_total{[[exporter]]}[5m]))",
    ),
    RecordingRule(
        "instance_device:agentmon_disk_io_time_seconds:rate5m",
        "sum by (job, instance, device) (rate(agentmon_disk_io_time_seconds_total{[[exporter]]}[5m]))",
    ),
    # Business
    RecordingRule(
        "instance_exchange:agentmon_exchange_requests:rate5m",
        "sum by (job, instance, exchange) (rate(agentmon_exchange_requests_total{[[exporter]]}[5m]))",
    ),
    RecordingRule(
        "instance_exchange:agentmon_exchange_request_errors:rate5m",
        "sum by (job, instance, exchange) (rate(agentmon_exchange_request_errors_total{[[exporter]]}[5m]))",
    ),
    RecordingRule(
        "instance_exchange:agentmon_exchange_request_errors:ratio_rate5m",
        "instance_exchange:agentmon_exchange_request_errors:rate5m"
        "\n  / instance_exchange:agentmon_exchange_requests:rate5m",
    ),
    RecordingRule(
        "instance_exchange_data_type:agentmon_records_collected:rate5m",
        "sum by (job, instance, exchange, data_type) (rate(agentmon_records_collected_total{[[exporter]]}[5m]))",
    ),
    RecordingRule(
        "instance_exchange:agentmon_records_collected:rate5m",
        "sum by (job, instance, exchange) (rate(agentmon_records_collected_total{[[exporter]]}[5m]))",
    ),
    RecordingRule(
        "instance:agentmon_records_collected:rate5m",
        "sum by (job, instance) (rate(agentmon_records_collected_total{[[exporter]]}[5m]))",
    ),
    RecordingRule(
        "instance_exchange:agentmon_orders_submitted:rate1h",
        "sum by (job, instance, exchange) (rate(agentmon_orders_submitted_total{[[exporter]]}[1h]))",
    ),
    RecordingRule(
        "instance_exchange:agentmon_orders_filled:rate1h",
        "sum by (job, instance, exchange) (rate(agentmon_orders_filled_total{[[exporter]]}[1h]))",
    ),
    RecordingRule(
        "instance_exchange:agentmon_orders_fill:ratio_rate1h",
        "instance_exchange:agentmon_orders_filled:rate1h\n  / instance_exchange:agentmon_orders_submitted:rate1h",
    ),
    RecordingRule(
        "instance:agentmon_cache_hit:ratio_rate5m",
        "sum by (job, instance) (rate(agentmon_cache_hits_total{[[exporter]]}[5m]))"
        "\n  / sum by (job, instance) (rate(agentmon_cache_requests_total{[[exporter]]}[5m]))",
    ),
)

ALERTS: tuple[AlertSpec, ...] = (
    # --- host -------------------------------------------------------------------------------
    AlertSpec(
        "AgentMonHighCpuUtilisation", "agentmon-host", "system",
        "instance:agentmon_cpu_utilisation:rate5m > [[threshold]]",
        "CPU utilisation on the agent host is high.",
        "CPU utilisation on {{ $labels.instance }} is {{ $value | humanizePercentage }}"
        " (threshold [[threshold|pct]] for [[for]]).",
        ("threshold",),
    ),
    AlertSpec(
        "AgentMonHighMemoryUtilisation", "agentmon-host", "system",
        "instance:agentmon_memory_used:ratio > [[threshold]]",
        "Memory utilisation on the agent host is high.",
        "Memory used on {{ $labels.instance }} is {{ $value | humanizePercentage }}"
        " (threshold [[threshold|pct]] for [[for]]).",
        ("threshold",),
    ),
    AlertSpec(
        "AgentMonFilesystemFillingUp", "agentmon-host", "system",
        "instance_mountpoint:agentmon_filesystem_used:ratio > [[min_used_ratio]]"
        '\nand predict_linear(agentmon_filesystem_avail_bytes{[[exporter]], fstype!~"tmpfs|ramfs|squashfs"}'
        "[[[predict_window]]], [[horizon|seconds]]) < 0",
        "A filesystem on the agent host is predicted to fill up soon.",
        "Filesystem {{ $labels.mountpoint }} ({{ $labels.device }}) on {{ $labels.instance }} is"
        " {{ $value | humanizePercentage }} full and predicted to run out of space within [[horizon]].",
        ("predict_window", "horizon", "min_used_ratio"),
    ),
    AlertSpec(
        "AgentMonExporterCollectorFailing", "agentmon-host", "exporter",
        "agentmon_scrape_collector_success{[[exporter]]} == 0",
        "An exporter collector keeps failing.",
        "Collector {{ $labels.collector }} of the exporter on {{ $labels.instance }} has failed"
        " every scrape for [[for]] (success={{ $value }}).",
    ),
    # --- business ---------------------------------------------------------------------------
    AlertSpec(
        "AgentMonAgentStatsDown", "agentmon-business", "agent",
        "agentmon_agent_up{[[exporter]]} == 0",
        "The agent's stats source is not answering.",
        "The exporter on {{ $labels.instance }} could not fetch or parse the agent's stats document"
        " for [[for]] (agent_up={{ $value }}); all business metrics are missing.",
    ),
    AlertSpec(
        "AgentMonExchangeDisconnected", "agentmon-business", "business",
        "agentmon_exchange_connected{[[exporter]]} == 0",
        "The agent lost its connection to an exchange.",
        "Exchange {{ $labels.exchange }} has been disconnected on {{ $labels.instance }}"
        " for [[for]] (connected={{ $value }}).",
    ),
    AlertSpec(
        "AgentMonAllExchangesDisconnected", "agentmon-business", "business",
        "max by (job, instance) (agentmon_exchange_connected{[[exporter]]}) == 0",
        "The agent is disconnected from every exchange.",
        "No exchange has been connected on {{ $labels.instance }} for [[for]]"
        " (max connected={{ $value }}); the agent collects no market data and cannot trade.",
    ),
    AlertSpec(
        "AgentMonExchangeErrorRatioHigh", "agentmon-business", "business",
        "instance_exchange:agentmon_exchange_request_errors:ratio_rate5m > [[threshold]]",
        "Requests to an exchange are failing.",
        "{{ $value | humanizePercentage }} of requests to {{ $labels.exchange }} on {{ $labels.instance }}"
        " failed over the last 5m (threshold [[threshold|pct]]).",
        ("threshold",),
    ),
    AlertSpec(
        "AgentMonExchangeFeedStale", "agentmon-business", "business",
        "time() - agentmon_exchange_last_record_timestamp_seconds{[[exporter]]} > [[max_age|seconds]]",
        "An exchange feed has stopped delivering records.",
        "The last record from {{ $labels.exchange }} on {{ $labels.instance }} arrived"
        " {{ $value | humanizeDuration }} ago (threshold [[max_age]]).",
        ("max_age",),
    ),
    AlertSpec(
        "AgentMonDataCollectionRateLow", "agentmon-business", "business",
        "instance:agentmon_records_collected:rate5m < [[threshold]]",
        "The agent collects fewer records than expected.",
        'The agent on {{ $labels.instance }} collects {{ printf "%.2f" $value }} records/s'
        " (threshold [[threshold]] records/s for [[for]]).",
        ("threshold",),
    ),
    AlertSpec(
        "AgentMonNoRecordsCollected", "agentmon-business", "business",
        "instance:agentmon_records_collected:rate5m == 0",
        "The agent collects no records at all.",
        "The agent on {{ $labels.instance }} has collected no records for [[for]]"
        " (rate={{ $value }}/s); the market-data feed is stalled.",
    ),
    AlertSpec(
        "AgentMonOrderFillRatioLow", "agentmon-business", "business",
        "instance_exchange:agentmon_orders_fill:ratio_rate1h < [[threshold]]"
        "\nand on (job, instance, exchange)"
        "\ninstance_exchange:agentmon_orders_submitted:rate1h * 3600 >= [[min_orders_per_hour]]",
        "Few submitted orders are being filled.",
        "Only {{ $value | humanizePercentage }} of orders submitted to {{ $labels.exchange }}"
        " on {{ $labels.instance }} were filled over the last hour (threshold [[threshold|pct]]).",
        ("threshold", "min_orders_per_hour"),
    ),
    AlertSpec(
        "AgentMonCacheHitRatioLow", "agentmon-business", "business",
        "instance:agentmon_cache_hit:ratio_rate5m < [[threshold]]",
        "The agent's cache hit ratio is low.",
        "The cache hit ratio on {{ $labels.instance }} is {{ $value | humanizePercentage }}"
        " (threshold [[threshold|pct]] for [[for]]).",
        ("threshold",),
    ),
    # --- monitoring pipeline ----------------------------------------------------------------
    AlertSpec(
        "AgentMonExporterDown", "agentmon-pipeline", "exporter",
        "up{[[exporter]]} == 0",
        "The agent exporter cannot be scraped.",
        "Prometheus has failed to scrape {{ $labels.job }} on {{ $labels.instance }}"
        " for [[for]] (up={{ $value }}).",
    ),
    AlertSpec(
        "AgentMonReceiverDown", "agentmon-pipeline", "receiver",
        "up{[[receiver]]} == 0",
        "The alert receiver cannot be scraped.",
        "Prometheus has failed to scrape {{ $labels.job }} on {{ $labels.instance }}"
        " for [[for]] (up={{ $value }}); alert notifications may not be delivered.",
    ),
    AlertSpec(
        "AgentMonConfigReloadFailed", "agentmon-pipeline", "pipeline",
        "agentmon_config_last_reload_successful{[[exporter]]} == 0"
        "\nor alert_receiver_config_last_reload_successful{[[receiver]]} == 0",
        "A configuration reload failed.",
        "The last configuration reload of {{ $labels.job }} on {{ $labels.instance }} failed"
        " (successful={{ $value }}); it still runs the previous configuration.",
    ),
    AlertSpec(
        "AgentMonReceiverDeadLetters", "agentmon-pipeline", "receiver",
        "sum by (job, instance, target, channel) (increase(alert_receiver_dead_letters_total{[[receiver]]}"
        "[[[window]]])) > 0",
        "The alert receiver gave up delivering notifications.",
        "The receiver on {{ $labels.instance }} moved {{ printf \"%.0f\" $value }} notification(s) for target"
        " {{ $labels.target }} ({{ $labels.channel }}) to the dead-letter store in the last [[window]].",
        ("window",),
    ),
    AlertSpec(
        "AgentMonReceiverDeliveryFailures", "agentmon-pipeline", "receiver",
        'sum by (job, instance, target, channel) (rate(alert_receiver_deliveries_total{[[receiver]], outcome!="delivered"}[5m]))'
        "\n  / sum by (job, instance, target, channel) (rate(alert_receiver_deliveries_total{[[receiver]]}[5m]))"
        "\n> [[threshold]]",
        "The alert receiver fails to deliver notifications.",
        "{{ $value | humanizePercentage }} of delivery attempts to target {{ $labels.target }}"
        " ({{ $labels.channel }}) on {{ $labels.instance }} failed over the last 5m (threshold [[threshold|pct]]).",
        ("threshold",),
    ),
    AlertSpec(
        "AgentMonReceiverBacklogGrowing", "agentmon-pipeline", "receiver",
        "alert_receiver_queue_oldest_job_age_seconds{[[receiver]]} > [[max_age|seconds]]",
        "The alert receiver's delivery backlog is not draining.",
        "The oldest pending notification for target {{ $labels.target }} on {{ $labels.instance }}"
        " is {{ $value | humanizeDuration }} old (threshold [[max_age]]).",
        ("max_age",),
    ),
    AlertSpec(
        "AgentMonAlertmanagerNotificationsFailing", "agentmon-pipeline", "alertmanager",
        "sum by (job, instance, integration) (rate(alertmanager_notifications_failed_total{[[alertmanager]]}[5m]))"
        "\n  / sum by (job, instance, integration) (rate(alertmanager_notifications_total{[[alertmanager]]}[5m]))"
        "\n> [[threshold]]",
        "AlertManager is failing to send notifications.",
        "AlertManager {{ $labels.instance }} failed {{ $value | humanizePercentage }} of its"
        " {{ $labels.integration }} notifications over the last 5m (threshold [[threshold|pct]]).",
        ("threshold",),
    ),
    AlertSpec(
        "Watchdog", "agentmon-pipeline", "pipeline",
        "vector(1)",
        "The alerting pipeline is alive.",
        "Always firing (value {{ $value }}) so that the watchdog route proves Prometheus, AlertManager"
        " and the receiver work end to end; its absence means the pipeline is broken.",
    ),
)


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AlertTuning:
    severity: str
    for_: str
    params: dict[str, object]


@dataclass(frozen=True)
class RulesConfig:
    selectors: dict[str, str]
    runbook_base_url: str
    alerts: dict[str, AlertTuning] = field(default_factory=dict)


def _line_index(node: yaml.Node, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    """Map every key path of a composed YAML document to its 1-based line, for error messages."""
    lines = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, str(key.value))
            lines.update(_line_index(value, sub))
            lines[sub] = key.start_mark.line + 1
    return lines


def duration_seconds(text: str) -> float:
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


def load_config(path: Path = DEFAULT_CONFIG) -> RulesConfig:
    """Parse and validate config.yml; raise ConfigError naming file, key path and line."""
    text = path.read_text()
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    lines = _line_index(node) if node is not None else {}

    def fail(keys: tuple[str, ...], msg: str) -> ConfigError:
        where = ".".join(keys) or "<top level>"
        line = lines.get(keys) or lines.get(keys[:-1]) or 1
        return ConfigError(f"{path}:{line}: {where}: {msg}")

    if not isinstance(data, dict):
        raise fail((), "expected a mapping with selectors, runbook_base_url and alerts")
    for key in data:
        if key not in ("selectors", "runbook_base_url", "alerts"):
            raise fail((key,), "unknown key")
    selectors = data.get("selectors")
    if not isinstance(selectors, dict):
        raise fail(("selectors",), "expected a mapping")
    for key in SELECTOR_KEYS:
        value = selectors.get(key)
        if not isinstance(value, str) or not re.fullmatch(r'\w+\s*(=|!=|=~|!~)\s*"[^"]*"', value):
            raise fail(("selectors", key), f'expected one label matcher like job="..." (got {value!r})')
    for key in selectors:
        if key not in SELECTOR_KEYS:
            raise fail(("selectors", key), f"unknown selector (known: {', '.join(SELECTOR_KEYS)})")
    base = data.get("runbook_base_url")
    if not isinstance(base, str) or not re.match(r"^https?://", base) or "#" in base:
        raise fail(("runbook_base_url",), "expected an http(s) URL without a #fragment")

    alerts_raw = data.get("alerts")
    if not isinstance(alerts_raw, dict):
        raise fail(("alerts",), "expected a mapping of alert name to settings")
    specs = {spec.name: spec for spec in ALERTS}
    alerts: dict[str, AlertTuning] = {}
    for name, settings in alerts_raw.items():
        keys = ("alerts", str(name))
        if name not in specs:
            raise fail(keys, f"unknown alert (known: {', '.join(sorted(specs))})")
        if not isinstance(settings, dict):
            raise fail(keys, "expected a mapping with severity, for and the alert's parameters")
        spec = specs[name]
        allowed = {"severity", "for", *spec.params}
        for key in settings:
            if key not in allowed:
                raise fail((*keys, str(key)), f"unknown setting (allowed: {', '.join(sorted(allowed))})")
        for key in sorted(allowed):
            if key not in settings:
                raise fail(keys, f"missing setting {key!r}")
        if settings["severity"] not in SEVERITIES:
            raise fail((*keys, "severity"), f"must be one of {', '.join(SEVERITIES)}")
        params: dict[str, object] = {}
        for key in ("for", *spec.params):
            value = settings[key]
            is_duration = key == "for" or key in ("predict_window", "horizon", "max_age", "window")
            if is_duration:
                if not isinstance(value, str) or not _DURATION.match(value):
                    raise fail((*keys, key), f"expected a duration like 5m or 1h (got {value!r})")
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise fail((*keys, key), f"expected a non-negative number (got {value!r})")
            params[key] = value
        alerts[name] = AlertTuning(settings["severity"], settings["for"], params)
    for name in specs:
        if name not in alerts:
            raise fail(("alerts",), f"missing alert {name!r} (every alert is tuned here)")
    return RulesConfig(selectors=dict(selectors), runbook_base_url=base, alerts=alerts)


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------

def _format(value: object, fmt: str | None) -> str:
    if fmt is None:
        return f"{value:g}" if isinstance(value, float) else str(value)
    if fmt == "pct":
        return f"{float(value) * 100:g}%"
    if fmt == "seconds":
        return f"{duration_seconds(str(value)):g}"
    raise ValueError(f"unknown placeholder format {fmt!r}")


def substitute(template: str, values: dict[str, object]) -> str:
    def repl(match: re.Match[str]) -> str:
        name, fmt = match.group(1), match.group(2)
        if name not in values:
            raise KeyError(f"placeholder [[{name}]] has no value in {template!r}")
        return _format(values[name], fmt)

    return _PLACEHOLDER.sub(repl, template)


def runbook_anchor(alertname: str) -> str:
    """GitHub heading anchor of ``## <alertname>`` in docs/runbooks.md."""
    return alertname.lower()


def build_rules(config: RulesConfig) -> dict:
    values = dict(config.selectors)
    return {
        "groups": [
            {
                "name": "agentmon.rules",
                "rules": [{"record": r.record, "expr": substitute(r.expr, values)} for r in RECORDING_RULES],
            }
        ]
    }


def build_alerts(config: RulesConfig) -> dict:
    groups: dict[str, list[dict]] = {}
    for spec in ALERTS:
        tuning = config.alerts[spec.name]
        values = {**config.selectors, **tuning.params}
        groups.setdefault(spec.group, []).append(
            {
                "alert": spec.name,
                "expr": substitute(spec.expr, values),
                "for": tuning.for_,
                "labels": {"severity": tuning.severity, "component": spec.component},
                "annotations": {
                    "summary": spec.summary,
                    "description": substitute(spec.description, values),
                    "runbook_url": f"{config.runbook_base_url}#{runbook_anchor(spec.name)}",
                },
            }
        )
    return {"groups": [{"name": name, "rules": rules} for name, rules in groups.items()]}


class _Dumper(yaml.SafeDumper):
    pass


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_representer)

HEADER = "# Generated by rules/generate.py from rules/config.yml - do not edit; edit config.yml and regenerate.\n"


def render(config: RulesConfig) -> dict[str, str]:
    """File name -> content of every generated rule file."""
    dump = lambda doc: HEADER + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=200)  # noqa: E731
    return {RULES_FILE: dump(build_rules(config)), ALERTS_FILE: dump(build_alerts(config))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config.file", dest="config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--out-dir", type=Path, default=HERE)
    parser.add_argument("--check", action="store_true", help="exit 1 if the files on disk are out of date")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except (ConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return write_or_check(render(config), args.out_dir, check=args.check, generator="rules/generate.py")


if __name__ == "__main__":
    sys.exit(main())
