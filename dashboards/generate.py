#!/usr/bin/env python3
"""Generate the Grafana dashboards (dashboards/*.json) from plain Python dicts.

Why code instead of hand-edited JSON: stable uids and panel ids, one place for the datasource,
units, refresh and variables, and a drift test that regenerates and compares the committed files.

    python dashboards/generate.py           # (re)write dashboards/*.json
    python dashboards/generate.py --check   # exit 1 if a committed file is out of date

``panel_queries(substitutions)`` lists every panel query with the template variables substituted,
for tests that run the queries against a real Prometheus.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agentmon.generated import write_or_check

HERE = Path(__file__).resolve().parent
SCHEMA_VERSION = 39
TAGS = ["agentmon"]
TITLE_PREFIX = "AgentMon / "
DS = {"type": "prometheus", "uid": "${datasource}"}

# Values a test can use for every template variable (regexes, because variables are multi-value
# with "All" = ".+"). Override job names with the ones your Prometheus scrapes.
DEFAULT_SUBSTITUTIONS: dict[str, str] = {
    "job": "agent-exporter",
    "instance": ".+",
    "exchange": ".+",
    "receiver_job": "alert-receiver",
    "receiver_instance": ".+",
    "alertmanager_job": "alertmanager",
    "__rate_interval": "1m",
    "__interval": "30s",
    "__range": "1h",
}


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------

@dataclass
class Panel:
    title: str
    unit: str
    description: str
    targets: list[tuple[str, str]]  # (expr, legendFormat)
    kind: str = "timeseries"  # timeseries | stat | table
    width: int = 12
    height: int = 8
    min: float | None = None
    max: float | None = None
    stack: bool = False


@dataclass
class Row:
    title: str
    panels: list[Panel] = field(default_factory=list)


def ts(title: str, unit: str, description: str, *targets: tuple[str, str], **kw) -> Panel:
    return Panel(title, unit, description, list(targets), **kw)


def stat(title: str, unit: str, description: str, *targets: tuple[str, str], width: int = 6, **kw) -> Panel:
    return Panel(title, unit, description, list(targets), kind="stat", width=width, height=4, **kw)


def table(title: str, unit: str, description: str, *targets: tuple[str, str], width: int = 24, **kw) -> Panel:
    return Panel(title, unit, description, list(targets), kind="table", width=width, **kw)


def query_variable(name: str, label: str, query: str, *, multi: bool = True) -> dict:
    variable = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": f"{name}-query"},
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "current": {},
        "hide": 0,
        "regex": "",
        "options": [],
    }
    if multi:
        variable["allValue"] = ".+"  # "All" is a regex, like the values panel_queries() substitutes
    return variable


DATASOURCE_VARIABLE = {
    "name": "datasource",
    "label": "Data source",
    "type": "datasource",
    "query": "prometheus",
    "current": {},
    "hide": 0,
    "refresh": 1,
    "regex": "",
    "options": [],
}


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict:
    defaults: dict = {"unit": panel.unit}
    if panel.min is not None:
        defaults["min"] = panel.min
    if panel.max is not None:
        defaults["max"] = panel.max
    if panel.kind == "timeseries":
        defaults["custom"] = {"drawStyle": "line", "fillOpacity": 10 if panel.stack else 0, "lineWidth": 1,
                              "showPoints": "never", "spanNulls": False,
                              "stacking": {"mode": "normal" if panel.stack else "none", "group": "A"}}
    targets = []
    for i, (expr, legend) in enumerate(panel.targets):
        target = {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i)}
        if panel.kind == "table":
            target.update({"instant": True, "format": "table", "range": False})
        elif panel.kind == "stat":
            target.update({"instant": True, "range": False})
        targets.append(target)
    out = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DS,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "targets": targets,
    }
    if panel.kind == "timeseries":
        out["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                          "tooltip": {"mode": "multi", "sort": "desc"}}
    elif panel.kind == "stat":
        out["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                          "colorMode": "value", "graphMode": "none", "textMode": "auto"}
    else:
        out["options"] = {"showHeader": True}
        out["transformations"] = [{"id": "organize", "options": {"excludeByName": {"Time": True}}}]
    return out


def dashboard(uid: str, title: str, description: str, variables: list[dict], rows: list[Row]) -> dict:
    panels, panel_id, y = [], 1, 0
    for row in rows:
        panels.append({"id": panel_id, "type": "row", "title": row.title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        panel_id += 1
        y += 1
        x, row_height = 0, 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y = 0, y + row_height
                row_height = 0
            panels.append(_panel_json(panel, panel_id, x, y))
            panel_id += 1
            x += panel.width
            row_height = max(row_height, panel.height)
        y += row_height
    return {
        "uid": uid,
        "title": TITLE_PREFIX + title,
        "description": description,
        "tags": TAGS,
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "links": [{"title": "AgentMon dashboards", "type": "dashboards", "tags": TAGS, "asDropdown": True,
                   "includeVars": True, "keepTime": True, "icon": "external link", "targetBlank": False,
                   "tooltip": "", "url": ""}],
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
            "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard",
        }]},
        "templating": {"list": [DATASOURCE_VARIABLE, *variables]},
        "panels": panels,
    }


# ---------------------------------------------------------------------------------------------
# Dashboards
# ---------------------------------------------------------------------------------------------

EXPORTER_VARS = [
    query_variable("job", "Exporter job", "label_values(agentmon_exporter_build_info, job)", multi=False),
    query_variable("instance", "Instance", 'label_values(agentmon_exporter_build_info{job="$job"}, instance)'),
]
EXCHANGE_VAR = query_variable(
    "exchange", "Exchange", 'label_values(agentmon_exchange_connected{job="$job", instance=~"$instance"}, exchange)'
)
RECEIVER_VARS = [
    query_variable("receiver_job", "Receiver job", "label_values(alert_receiver_build_info, job)", multi=False),
    query_variable("receiver_instance", "Receiver",
                   'label_values(alert_receiver_build_info{job="$receiver_job"}, instance)'),
]
ALERTMANAGER_VAR = query_variable(
    "alertmanager_job", "AlertManager job", "label_values(alertmanager_build_info, job)", multi=False
)

S = 'job="$job", instance=~"$instance"'
X = f'{S}, exchange=~"$exchange"'
R = 'job="$receiver_job", instance=~"$receiver_instance"'
AM = 'job="$alertmanager_job"'
RI = "[$__rate_interval]"


def system_dashboard() -> dict:
    busy = (f'1 - sum by (instance) (rate(agentmon_cpu_seconds_total{{{S}, mode=~"idle|iowait|steal"}}{RI}))'
            f' / sum by (instance) (rate(agentmon_cpu_seconds_total{{{S}, mode!~"guest|guest_nice"}}{RI}))')
    mem_used = f"1 - agentmon_memory_available_bytes{{{S}}} / agentmon_memory_total_bytes{{{S}}}"
    fs_used = f"1 - agentmon_filesystem_avail_bytes{{{S}}} / (agentmon_filesystem_size_bytes{{{S}}} > 0)"
    rows = [
        Row("Overview", [
            stat("Uptime", "s", "Time since the host booted.",
                 (f"agentmon_time_seconds{{{S}}} - agentmon_boot_time_seconds{{{S}}}", "{{instance}}")),
            stat("CPUs", "none", "Logical CPUs.", (f"agentmon_cpus{{{S}}}", "{{instance}}")),
            stat("CPU utilisation now", "percentunit", "Busy share of all CPUs (not idle, iowait or steal).",
                 (busy, "{{instance}}"), min=0, max=1),
            stat("Memory used now", "percentunit", "1 - MemAvailable / MemTotal.", (mem_used, "{{instance}}"),
                 min=0, max=1),
        ]),
        Row("CPU and load", [
            ts("CPU utilisation", "percentunit",
               "Busy share of all CPUs; the AgentMonHighCpuUtilisation alert fires above 80 % for 5m.",
               (busy, "{{instance}}"), min=0, max=1),
            ts("CPU time by mode", "percentunit", "Share of CPU time per mode, across all CPUs (idle hidden).",
               (f'sum by (instance, mode) (rate(agentmon_cpu_seconds_total{{{S}, mode!~"idle|guest|guest_nice"}}{RI}))'
                f" / on (instance) group_left () sum by (instance) (agentmon_cpus{{{S}}})", "{{instance}} {{mode}}"),
               min=0, stack=True),
            ts("Load average", "short", "1, 5 and 15 minute load averages; compare with the number of CPUs.",
               (f"agentmon_load1{{{S}}}", "{{instance}} 1m"), (f"agentmon_load5{{{S}}}", "{{instance}} 5m"),
               (f"agentmon_load15{{{S}}}", "{{instance}} 15m"), (f"agentmon_cpus{{{S}}}", "{{instance}} CPUs"),
               min=0),
        ]),
        Row("Memory", [
            ts("Memory usage", "bytes", "Used, cached, buffers and available memory against the total.",
               (f"agentmon_memory_used_bytes{{{S}}}", "{{instance}} used"),
               (f"agentmon_memory_cached_bytes{{{S}}}", "{{instance}} cached"),
               (f"agentmon_memory_buffers_bytes{{{S}}}", "{{instance}} buffers"),
               (f"agentmon_memory_available_bytes{{{S}}}", "{{instance}} available"),
               (f"agentmon_memory_total_bytes{{{S}}}", "{{instance}} total"), min=0),
            ts("Memory used ratio and swap", "percentunit",
               "Memory used (the AgentMonHighMemoryUtilisation alert fires above 90 %) and swap used.",
               (mem_used, "{{instance}} memory"),
               (f"agentmon_swap_used_bytes{{{S}}} / (agentmon_swap_total_bytes{{{S}}} > 0)", "{{instance}} swap"),
               min=0, max=1),
        ]),
        Row("Filesystem", [
            ts("Filesystem used", "percentunit", "Used share of each filesystem (1 - avail / size).",
               (fs_used, "{{instance}} {{mountpoint}}"), min=0, max=1),
            ts("Filesystem free and 4h prediction", "bytes",
               "Space available to the agent and where a linear fit over 6h says it will be in 4h;"
               " a prediction below zero is what AgentMonFilesystemFillingUp looks for.",
               (f"agentmon_filesystem_avail_bytes{{{S}}}", "{{instance}} {{mountpoint}} free"),
               (f"predict_linear(agentmon_filesystem_avail_bytes{{{S}}}[6h], 4 * 3600)",
                "{{instance}} {{mountpoint}} in 4h")),
            ts("Inodes used", "percentunit", "Used share of inodes per filesystem.",
               (f"1 - agentmon_filesystem_files_free{{{S}}} / (agentmon_filesystem_files{{{S}}} > 0)",
                "{{instance}} {{mountpoint}}"), min=0, max=1),
        ]),
        Row("Disk", [
            ts("Disk throughput", "Bps", "Bytes read (positive) and written per second per device.",
               (f"rate(agentmon_disk_read_bytes_total{{{S}}}{RI})", "{{instance}} {{device}} read"),
               (f"rate(agentmon_disk_written_bytes_total{{{S}}}{RI})", "{{instance}} {{device}} written")),
            ts("Disk IOPS", "iops", "Completed reads and writes per second per device.",
               (f"rate(agentmon_disk_reads_completed_total{{{S}}}{RI})", "{{instance}} {{device}} reads"),
               (f"rate(agentmon_disk_writes_completed_total{{{S}}}{RI})", "{{instance}} {{device}} writes")),
            ts("Disk utilisation", "percentunit", "Share of time the device was busy with I/O.",
               (f"rate(agentmon_disk_io_time_seconds_total{{{S}}}{RI})", "{{instance}} {{device}}"), min=0, max=1),
            ts("Disk latency", "s", "Average time per completed read and write.",
               (f"rate(agentmon_disk_read_time_seconds_total{{{S}}}{RI})"
                f" / rate(agentmon_disk_reads_completed_total{{{S}}}{RI})", "{{instance}} {{device}} read"),
               (f"rate(agentmon_disk_write_time_seconds_total{{{S}}}{RI})"
                f" / rate(agentmon_disk_writes_completed_total{{{S}}}{RI})", "{{instance}} {{device}} write"),
               min=0),
        ]),
        Row("Network", [
            ts("Network traffic", "Bps", "Bytes received and transmitted per second per device.",
               (f"rate(agentmon_network_receive_bytes_total{{{S}}}{RI})", "{{instance}} {{device}} rx"),
               (f"rate(agentmon_network_transmit_bytes_total{{{S}}}{RI})", "{{instance}} {{device}} tx")),
            ts("Network packets", "pps", "Packets received and transmitted per second per device.",
               (f"rate(agentmon_network_receive_packets_total{{{S}}}{RI})", "{{instance}} {{device}} rx"),
               (f"rate(agentmon_network_transmit_packets_total{{{S}}}{RI})", "{{instance}} {{device}} tx")),
            ts("Network errors and drops", "pps", "Receive/transmit errors and dropped packets per second.",
               (f"rate(agentmon_network_receive_errs_total{{{S}}}{RI})", "{{instance}} {{device}} rx errors"),
               (f"rate(agentmon_network_transmit_errs_total{{{S}}}{RI})", "{{instance}} {{device}} tx errors"),
               (f"rate(agentmon_network_receive_drop_total{{{S}}}{RI})", "{{instance}} {{device}} rx drops"),
               (f"rate(agentmon_network_transmit_drop_total{{{S}}}{RI})", "{{instance}} {{device}} tx drops"),
               min=0),
        ]),
        Row("Agent process", [
            stat("Agent process found", "bool_yes_no", "1 if the exporter found the agent's process.",
                 (f"agentmon_agent_process_up{{{S}}}", "{{instance}}")),
            stat("Agent process uptime", "s", "Time since the agent process started.",
                 (f"time() - agentmon_agent_process_start_time_seconds{{{S}}}", "{{instance}}")),
            stat("Agent open FDs", "short", "File descriptors the agent holds open.",
                 (f"agentmon_agent_process_open_fds{{{S}}}", "{{instance}}")),
            stat("Agent threads", "short", "Threads of the agent process.",
                 (f"agentmon_agent_process_threads{{{S}}}", "{{instance}}")),
            ts("Agent process CPU", "percentunit", "CPU used by the agent process; 100 % = one full core.",
               (f"sum by (instance, mode) (rate(agentmon_agent_process_cpu_seconds_total{{{S}}}{RI}))",
                "{{instance}} {{mode}}"), min=0, stack=True),
            ts("Agent process memory", "bytes", "Resident and virtual memory of the agent process.",
               (f"agentmon_agent_process_resident_memory_bytes{{{S}}}", "{{instance}} resident"),
               (f"agentmon_agent_process_virtual_memory_bytes{{{S}}}", "{{instance}} virtual"), min=0),
        ]),
    ]
    return dashboard("agentmon-system", "System", "The agent host: CPU, memory, filesystems, disks, network,"
                     " load and the agent process, from agent-exporter's system collectors.", EXPORTER_VARS, rows)


def business_dashboard() -> dict:
    rows = [
        Row("Exchanges", [
            stat("Stats source up", "bool_yes_no", "1 if the exporter could fetch and parse the agent's stats.",
                 (f"agentmon_agent_up{{{S}}}", "{{instance}}")),
            stat("Exchanges connected", "none", "Number of exchanges the agent is connected to.",
                 (f"sum by (instance) (agentmon_exchange_connected{{{X}}})", "{{instance}}")),
            stat("Exchanges disconnected", "none", "Number of exchanges the agent is not connected to.",
                 (f"sum by (instance) (1 - agentmon_exchange_connected{{{X}}})", "{{instance}}")),
            stat("Records / s", "cps", "Records collected per second, all exchanges.",
                 (f"sum by (instance) (rate(agentmon_records_collected_total{{{X}}}{RI}))", "{{instance}}")),
            ts("Exchange connection state", "bool_yes_no", "1 = connected, 0 = disconnected, per exchange.",
               (f"agentmon_exchange_connected{{{X}}}", "{{instance}} {{exchange}}"), min=0, max=1),
            ts("Reconnects", "short", "Reconnections per exchange in each interval.",
               (f"sum by (instance, exchange) (increase(agentmon_exchange_reconnects_total{{{X}}}{RI}))",
                "{{instance}} {{exchange}}"), min=0),
        ]),
        Row("Requests", [
            ts("Request rate", "reqps", "Requests the agent sends to each exchange per second.",
               (f"sum by (instance, exchange) (rate(agentmon_exchange_requests_total{{{X}}}{RI}))",
                "{{instance}} {{exchange}}"), min=0),
            ts("Request error ratio", "percentunit",
               "Failed share of requests per exchange (AgentMonExchangeErrorRatioHigh fires above 5 %).",
               (f"sum by (instance, exchange) (rate(agentmon_exchange_request_errors_total{{{X}}}{RI}))"
                f" / sum by (instance, exchange) (rate(agentmon_exchange_requests_total{{{X}}}{RI}))",
                "{{instance}} {{exchange}}"), min=0, max=1),
        ]),
        Row("Records", [
            ts("Records collected per exchange", "cps", "Records collected per second per exchange.",
               (f"sum by (instance, exchange) (rate(agentmon_records_collected_total{{{X}}}{RI}))",
                "{{instance}} {{exchange}}"), min=0, stack=True),
            ts("Records collected per exchange and type", "cps", "Records per second by exchange and data type.",
               (f"sum by (instance, exchange, data_type) (rate(agentmon_records_collected_total{{{X}}}{RI}))",
                "{{instance}} {{exchange}} {{data_type}}"), min=0, stack=True),
            ts("Time since last record", "s", "Age of the newest record per exchange"
               " (AgentMonExchangeFeedStale fires above 5m).",
               (f"time() - agentmon_exchange_last_record_timestamp_seconds{{{X}}}", "{{instance}} {{exchange}}"),
               min=0),
        ]),
        Row("Orders", [
            ts("Orders", "ops", "Orders submitted, filled, cancelled and rejected per second, all selected exchanges.",
               (f"sum by (instance) (rate(agentmon_orders_submitted_total{{{X}}}{RI}))", "{{instance}} submitted"),
               (f"sum by (instance) (rate(agentmon_orders_filled_total{{{X}}}{RI}))", "{{instance}} filled"),
               (f"sum by (instance) (rate(agentmon_orders_cancelled_total{{{X}}}{RI}))", "{{instance}} cancelled"),
               (f"sum by (instance) (rate(agentmon_orders_rejected_total{{{X}}}{RI}))", "{{instance}} rejected"),
               min=0),
            ts("Order fill ratio", "percentunit",
               "Filled / submitted orders per exchange (the alert uses a 1h window).",
               (f"sum by (instance, exchange) (rate(agentmon_orders_filled_total{{{X}}}{RI}))"
                f" / sum by (instance, exchange) (rate(agentmon_orders_submitted_total{{{X}}}{RI}))",
                "{{instance}} {{exchange}}"), min=0, max=1),
        ]),
        Row("Positions and PnL", [
            ts("Open positions", "short", "Number of open positions per exchange.",
               (f"agentmon_positions_open{{{X}}}", "{{instance}} {{exchange}}"), min=0),
            ts("Unrealized PnL", "short", "Unrealized profit and loss per exchange, in the quote currency.",
               (f"agentmon_position_unrealized_pnl{{{X}}}", "{{instance}} {{exchange}}")),
            ts("Realized PnL", "short", "Realized profit and loss per exchange, in the quote currency.",
               (f"agentmon_position_realized_pnl{{{X}}}", "{{instance}} {{exchange}}")),
        ]),
        Row("Cache", [
            ts("Cache hit ratio", "percentunit", "Hits / requests of the agent's cache"
               " (AgentMonCacheHitRatioLow fires below 80 %).",
               (f"sum by (instance) (rate(agentmon_cache_hits_total{{{S}}}{RI}))"
                f" / sum by (instance) (rate(agentmon_cache_requests_total{{{S}}}{RI}))", "{{instance}}"),
               min=0, max=1),
            ts("Cache size", "bytes", "Memory held by the agent's cache.",
               (f"agentmon_cache_size_bytes{{{S}}}", "{{instance}}"), min=0, width=6),
            ts("Cache entries", "short", "Entries in the agent's cache.",
               (f"agentmon_cache_entries{{{S}}}", "{{instance}}"), min=0, width=6),
        ]),
    ]
    return dashboard("agentmon-business", "Business", "The market-data agent: exchanges, requests, records,"
                     " orders, positions and cache, from the agent's stats document.",
                     [*EXPORTER_VARS, EXCHANGE_VAR], rows)


def alerts_dashboard() -> dict:
    rows = [
        Row("Firing alerts", [
            stat("Firing alerts by severity", "none", "Alerts Prometheus currently fires, per severity label.",
                 ('sum by (severity) (ALERTS{alertstate="firing"})', "{{severity}}"), width=12),
            stat("Pending alerts", "none", "Alerts whose condition is true but whose for: has not elapsed yet.",
                 ('count(ALERTS{alertstate="pending"}) or vector(0)', "pending"), width=12),
            ts("Firing alerts over time", "none", "Firing alerts per severity over time.",
               ('sum by (severity) (ALERTS{alertstate="firing"})', "{{severity}}"), min=0, stack=True, width=24),
            table("Firing alerts", "none", "Every firing alert with its severity and instance.",
                  ('sum by (alertname, severity, instance, exchange) (ALERTS{alertstate="firing"})', "")),
        ]),
        Row("AlertManager", [
            ts("Alerts received", "ops", "Alerts AlertManager receives from Prometheus per second, by status.",
               (f"sum by (status) (rate(alertmanager_alerts_received_total{{{AM}}}{RI}))", "{{status}}"), min=0),
            ts("Notifications", "ops", "Notifications sent and failed per integration per second.",
               (f"sum by (integration) (rate(alertmanager_notifications_total{{{AM}}}{RI}))", "{{integration}} sent"),
               (f"sum by (integration) (rate(alertmanager_notifications_failed_total{{{AM}}}{RI}))",
                "{{integration}} failed"), min=0),
            ts("Notification latency p99", "s", "99th percentile time AlertManager needs to send a notification.",
               (f"histogram_quantile(0.99, sum by (le, integration) "
                f"(rate(alertmanager_notification_latency_seconds_bucket{{{AM}}}{RI})))", "{{integration}}"), min=0),
            stat("Active silences", "none", "Silences currently in effect.",
                 (f'sum(alertmanager_silences{{{AM}, state="active"}})', "active"), width=12),
        ]),
        Row("Alert receiver", [
            ts("Notifications received by route", "reqps", "Webhook notifications accepted per route and status.",
               (f"sum by (route, status) (rate(alert_receiver_notifications_received_total{{{R}}}{RI}))",
                "{{route}} {{status}}"), min=0),
            ts("Notifications rejected", "reqps", "Webhook requests the receiver rejected, by reason.",
               (f"sum by (reason) (rate(alert_receiver_notifications_rejected_total{{{R}}}{RI}))", "{{reason}}"),
               min=0),
            ts("Deliveries by outcome", "ops", "Delivery attempts per target, channel and outcome.",
               (f"sum by (target, channel, outcome) (rate(alert_receiver_deliveries_total{{{R}}}{RI}))",
                "{{target}} {{channel}} {{outcome}}"), min=0),
            ts("Dead letters", "short", "Notifications given up per target in each interval"
               " (AgentMonReceiverDeadLetters).",
               (f"sum by (target, channel) (increase(alert_receiver_dead_letters_total{{{R}}}{RI}))",
                "{{target}} {{channel}}"), min=0),
            ts("Delivery latency", "s", "Time from accepting a notification to delivering it (p50 and p99).",
               (f"histogram_quantile(0.5, sum by (le, target) "
                f"(rate(alert_receiver_delivery_latency_seconds_bucket{{{R}}}{RI})))", "{{target}} p50"),
               (f"histogram_quantile(0.99, sum by (le, target) "
                f"(rate(alert_receiver_delivery_latency_seconds_bucket{{{R}}}{RI})))", "{{target}} p99"), min=0),
            ts("Retries and digests", "ops", "Delivery retries and backlogs coalesced into digests per target.",
               (f"sum by (target) (rate(alert_receiver_delivery_retries_total{{{R}}}{RI}))", "{{target}} retries"),
               (f"sum by (target) (rate(alert_receiver_digests_total{{{R}}}{RI}))", "{{target}} digests"), min=0),
            ts("Queue", "short", "Pending delivery jobs per target.",
               (f"sum by (target) (alert_receiver_queue_jobs{{{R}}})", "{{target}}"), min=0),
            ts("Oldest pending job", "s", "Age of the oldest pending job per target"
               " (AgentMonReceiverBacklogGrowing fires above 5m).",
               (f"max by (target) (alert_receiver_queue_oldest_job_age_seconds{{{R}}})", "{{target}}"), min=0),
        ]),
    ]
    return dashboard("agentmon-alerts", "Alert centre", "Firing alerts by severity, AlertManager notifications and"
                     " the alert receiver's deliveries, dead letters and latency.",
                     [ALERTMANAGER_VAR, *RECEIVER_VARS], rows)


def up_and_config_stats(name: str, what: str, prefix: str, selector: str) -> list[Panel]:
    """Scrapeable, last reload ok, config age: the same three stats for each of our processes."""
    return [
        stat(f"{name} up", "bool_yes_no", f"Prometheus can scrape {what}.", (f"up{{{selector}}}", "{{instance}}")),
        stat(f"{name} config reload", "bool_yes_no", "0 after a failed reload (the old config is kept).",
             (f"{prefix}_config_last_reload_successful{{{selector}}}", "{{instance}}")),
        stat(f"{name} config age", "s", "Time since the last successful configuration (re)load.",
             (f"time() - {prefix}_config_last_reload_success_timestamp_seconds{{{selector}}}", "{{instance}}")),
    ]


def health_dashboard() -> dict:
    rows = [
        Row("Exporter", [
            *up_and_config_stats("Exporter", "the exporter", "agentmon", S),
            stat("Failing collectors", "none", "Collectors that failed in the last scrape.",
                 (f"count by (instance) (agentmon_scrape_collector_success{{{S}}} == 0) or vector(0)", "failing")),
            ts("Collector duration", "s", "Time each collector took in the last scrape.",
               (f"agentmon_scrape_collector_duration_seconds{{{S}}}", "{{instance}} {{collector}}"), min=0),
            ts("Collector success", "bool_yes_no", "1 if the collector succeeded in the last scrape.",
               (f"agentmon_scrape_collector_success{{{S}}}", "{{instance}} {{collector}}"), min=0, max=1),
            ts("Scrape duration and stats fetch", "s",
               "Whole scrape as Prometheus sees it, and the time to fetch the agent's stats document.",
               (f"scrape_duration_seconds{{{S}}}", "{{instance}} scrape"),
               (f"agentmon_agent_fetch_duration_seconds{{{S}}}", "{{instance}} stats fetch"), min=0),
            ts("Samples per scrape and mapping errors", "short",
               "Samples per scrape (cardinality) and stats-mapping errors per interval by metric.",
               (f"scrape_samples_scraped{{{S}}}", "{{instance}} samples"),
               (f"sum by (instance, metric) (increase(agentmon_agent_mapping_errors_total{{{S}}}{RI}))",
                "{{instance}} mapping errors {{metric}}"), min=0),
        ]),
        Row("Receiver", [
            *up_and_config_stats("Receiver", "the alert receiver", "alert_receiver", R),
            stat("Pending jobs", "short", "Delivery jobs waiting in the outbox, all targets.",
                 (f"sum(alert_receiver_queue_jobs{{{R}}})", "pending")),
            ts("Receiver scrape duration", "s", "Scrape duration of the receiver as Prometheus sees it.",
               (f"scrape_duration_seconds{{{R}}}", "{{instance}}"), min=0),
            ts("Template errors", "short", "Custom templates that failed per target (default template used).",
               (f"sum by (target) (increase(alert_receiver_template_errors_total{{{R}}}{RI}))", "{{target}}"), min=0),
        ]),
        Row("Versions", [
            table("Build info", "none", "Versions of the running exporter and receiver.",
                  (f"agentmon_exporter_build_info{{{S}}}", ""), (f"alert_receiver_build_info{{{R}}}", "")),
        ]),
    ]
    return dashboard("agentmon-health", "Exporter & receiver health", "Is the monitoring itself healthy:"
                     " scrapes, collectors, config reloads and versions of agent-exporter and alert-receiver.",
                     [*EXPORTER_VARS, *RECEIVER_VARS], rows)


DASHBOARDS = {
    "agentmon-system.json": system_dashboard,
    "agentmon-business.json": business_dashboard,
    "agentmon-alerts.json": alerts_dashboard,
    "agentmon-health.json": health_dashboard,
}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard (deterministic, for the drift check)."""
    return {name: json.dumps(build(), indent=2, sort_keys=True) + "\n" for name, build in DASHBOARDS.items()}


# ---------------------------------------------------------------------------------------------
# Queries for tests
# ---------------------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def substitute(expr: str, substitutions: Mapping[str, str]) -> str:
    """Replace Grafana template variables ($x, ${x}, ${x:fmt}, [[x]]) in ``expr``; KeyError if one is unknown."""

    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name not in substitutions:
            raise KeyError(f"no substitution for template variable ${name} in {expr!r}")
        return substitutions[name]

    return _VARIABLE.sub(repl, expr)


def panel_queries(substitutions: Mapping[str, str] | None = None) -> list[tuple[str, str, str]]:
    """Every panel query as (dashboard title, panel title, expr) with the variables substituted.

    ``substitutions`` overrides/extends DEFAULT_SUBSTITUTIONS (e.g. {"job": "my-exporter"}).
    """
    subs = {**DEFAULT_SUBSTITUTIONS, **(substitutions or {})}
    out = []
    for build in DASHBOARDS.values():
        dash = build()
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                out.append((dash["title"], panel["title"], substitute(target["expr"], subs)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", type=Path, default=HERE)
    parser.add_argument("--check", action="store_true", help="exit 1 if the files on disk are out of date")
    args = parser.parse_args(argv)
    return write_or_check(render(), args.out_dir, check=args.check, generator="dashboards/generate.py")


if __name__ == "__main__":
    sys.exit(main())
