"""``agent-exporter`` command line: Prometheus-style flags, config check, serve until SIGTERM, SIGHUP reloads.

    agent-exporter --config.file=examples/exporter.yml --web.listen-address=127.0.0.1:19817
    agent-exporter --config.file=exporter.yml --config.check
    agent-exporter --collector.disable-defaults --collector.cpu --collector.memory
"""

# ruff: noqa: E402 - FROZENLIST_NO_EXTENSIONS must be set before the imports below (see there)
from __future__ import annotations

import os

# Before anything imports aiohttp (and with it aiosignal → frozenlist): frozenlist's documented switch
# to its pure-Python FrozenList. Its C extension is C++ and maps libstdc++ into the process, ~1 MiB
# RSS (of a 40 MiB budget) for a list type aiohttp uses only for its signal handlers, iterated a few
# times per request. Only this process's entry point sets it (never exporter.embed: the host process
# keeps its own choice), and only when the operator has not set it; no effect if aiohttp is already
# imported.
os.environ.setdefault("FROZENLIST_NO_EXTENSIONS", "1")

import argparse
import asyncio
import contextlib
import gc
import logging
import pickle
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from agentmon.cliflags import add_common_flags, split_host_port
from agentmon.logsetup import setup_logging
from agentmon.webconfig import WebConfig, load_web_config
from exporter.collectors import AVAILABLE
from exporter.config import (
    DEFAULT_LISTEN,
    ExporterConfig,
    ExporterSettings,
    PushSettings,
    load_exporter_config,
)
from exporter.scrape import ThreadedSource
from exporter.server import ConfigFileInvalid, ExporterServer, is_config_error

log = logging.getLogger("exporter.cli")

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")


def parse_duration(text: str) -> float:
    """'15s', '1m', '500ms', '2h' or plain seconds → seconds (> 0)."""
    m = _DURATION.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (examples: 15s, 1m, 500ms)")
    value = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    if value <= 0:
        raise argparse.ArgumentTypeError(f"duration must be positive: {text!r}")
    return value


class _CollectorFlag(argparse.Action):
    """``--collector.<name>`` / ``--no-collector.<name>``: records the explicit choice per collector."""

    def __init__(self, option_strings, dest, collector: str, enable: bool, **kwargs):
        self.collector, self.enable = collector, enable
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        chosen = dict(getattr(namespace, self.dest) or {})
        chosen[self.collector] = self.enable
        setattr(namespace, self.dest, chosen)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="agent-exporter",
        description="Prometheus exporter for the market-data agent: system metrics (psutil) and the agent's "
        "business metrics, collected at scrape time.",
    )
    add_common_flags(p, default_listen=DEFAULT_LISTEN)
    p.add_argument("--web.telemetry-path", dest="telemetry_path", default="/metrics", metavar="PATH",
                   help="path under which to expose metrics (default: /metrics)")
    p.add_argument("--web.config.file", dest="web_config_file", default=None, metavar="FILE",
                   help="exporter-toolkit web config: TLS and basic auth (optional)")
    p.add_argument("--web.max-requests", dest="max_requests", type=int, default=40, metavar="N",
                   help="maximum concurrent scrape requests; more get 503; 0 = no limit (default: 40)")
    p.add_argument("--metrics.namespace", dest="namespace", default="agentmon", metavar="NS",
                   help="prefix of every metric name (default: agentmon)")
    g = p.add_argument_group(
        "collectors", "enable with --collector.<name>, disable with --no-collector.<name> (node_exporter style)"
    )
    g.add_argument("--collector.disable-defaults", dest="disable_defaults", action="store_true",
                   help="disable every collector not explicitly enabled with --collector.<name>")
    for name, spec in AVAILABLE.items():
        default = "enabled" if spec.default_enabled else "disabled"
        g.add_argument(f"--collector.{name}", dest="collector_flags", action=_CollectorFlag, collector=name,
                       enable=True, help=f"enable the {name} collector: {spec.help} (default: {default})")
        g.add_argument(f"--no-collector.{name}", dest="collector_flags", action=_CollectorFlag, collector=name,
                       enable=False, help=argparse.SUPPRESS)
    g = p.add_argument_group("push mode", "PUT the exposition to a Pushgateway periodically")
    g.add_argument("--push.gateway-url", dest="push_url", default=None, metavar="URL",
                   help="Pushgateway base URL, e.g. http://127.0.0.1:9091 (push mode off when unset)")
    g.add_argument("--push.interval", dest="push_interval", type=parse_duration, default=15.0, metavar="DURATION",
                   help="time between pushes (default: 15s)")
    g.add_argument("--push.job", dest="push_job", default="agent-exporter", help="job label (default: agent-exporter)")
    g.add_argument("--push.instance", dest="push_instance", default=None,
                   help="instance label (default: the host name)")
    p.set_defaults(collector_flags=None)
    return p


def enabled_collectors(args: argparse.Namespace) -> tuple[str, ...]:
    chosen = args.collector_flags or {}
    return tuple(
        name for name, spec in AVAILABLE.items()
        if chosen.get(name, False if args.disable_defaults else spec.default_enabled)
    )


def settings_from_args(args: argparse.Namespace, config: ExporterConfig) -> ExporterSettings:
    push = None
    if args.push_url:
        push = PushSettings(args.push_url, args.push_interval, args.push_job,
                            args.push_instance or socket.gethostname())
    return ExporterSettings(
        listen_address=args.listen_address,
        telemetry_path=args.telemetry_path,
        namespace=args.namespace,
        collectors=enabled_collectors(args),
        config_file=args.config_file,
        config=config,
        web_config_file=args.web_config_file,
        max_requests=args.max_requests,
        push=push,
    )


def _validate_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    try:
        split_host_port(args.listen_address)
    except argparse.ArgumentTypeError as exc:
        parser.error(f"--web.listen-address: {exc}")
    if not args.telemetry_path.startswith("/") or args.telemetry_path.startswith("/-/") or args.telemetry_path == "/":
        parser.error("--web.telemetry-path must start with '/' and not be '/' or under '/-/'")
    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", args.namespace):
        parser.error(f"--metrics.namespace: {args.namespace!r} is not a valid metric name prefix")
    if args.push_url and not re.match(r"^https?://", args.push_url):
        parser.error("--push.gateway-url must start with http:// or https://")


_CONFIG_INVALID = 3
_CONFIG_CHILD = """\
import pickle, sys
from agentmon.configload import ConfigError
from exporter.config import load_exporter_config
try:
    config = load_exporter_config(sys.argv[1])
except ConfigError as exc:
    sys.stderr.write(str(exc))
    sys.exit(3)
sys.stdout.buffer.write(pickle.dumps(config))
"""


def load_config_isolated(path: str | None) -> ExporterConfig:
    """``load_exporter_config(path)`` run in a short-lived child process (~0.3 s).

    Why: checking the file needs jsonschema, its schema registry and the config schemas, ~3-4 MiB
    RSS that would stay in the serving process for its whole life (44 MiB with an ``agent:``
    section against a 40 MiB budget). The child runs the very same loader and hands back the
    typed ExporterConfig (pickled, from our own interpreter: trusted); a bad file raises
    ConfigFileInvalid with the same ``file:line: key.path: reason`` text. If the child cannot run
    or dies otherwise, the file is loaded here instead, so the result never depends on it."""
    if path is None:
        return load_exporter_config(None)
    root = str(Path(__file__).resolve().parents[1])  # the tree this exporter package came from
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        proc = subprocess.run([sys.executable, "-c", _CONFIG_CHILD, str(path)], capture_output=True, env=env,
                              stdin=subprocess.DEVNULL, timeout=120, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("config check child failed; loading in-process", extra={"err": str(exc)})
        return load_exporter_config(path)
    if proc.returncode == _CONFIG_INVALID:
        raise ConfigFileInvalid(proc.stderr.decode("utf-8", "replace"))
    if proc.returncode == 0:
        with contextlib.suppress(Exception):
            config = pickle.loads(proc.stdout)  # noqa: S301 - written by our own child process
            if isinstance(config, ExporterConfig):
                return config
    return load_exporter_config(path)  # whatever went wrong, the in-process loader says it properly


async def serve(settings: ExporterSettings, web_config: WebConfig) -> int:
    def factory(agent_cfg):
        if not agent_cfg:  # no `agent:` section: no business source (and no business imports)
            return None
        from exporter.business import build_source

        source = build_source(agent_cfg, settings.namespace)
        return ThreadedSource(source) if source is not None else None

    server = ExporterServer(settings, factory(settings.config.agent), source_factory=factory, web_config=web_config,
                            config_loader=load_config_isolated)
    try:
        await server.start()
    except OSError as exc:
        log.error("cannot listen", extra={"address": settings.listen_address, "err": str(exc)})
        await server.stop()
        return 1
    # Move everything allocated at startup (modules, config) out of the collector's reach: a full
    # (gen 2) collection then no longer walks ~45k startup objects, which paused the event loop for
    # 13-19 ms per 10k-series scrape.
    gc.collect()
    gc.freeze()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reloads: set[asyncio.Task] = set()

    def on_hup() -> None:
        task = loop.create_task(server.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _validate_flags(parser, args)
    setup_logging(args.log_level, args.log_format)
    # Serving loads the config file in a child process (the validator stack stays out of this
    # one); --config.check is a one-shot and loads it here. The web config file, when given, is
    # loaded here either way (it holds TLS material).
    loader = load_exporter_config if args.config_check else load_config_isolated
    try:
        config = loader(args.config_file)
        web_config = load_web_config(args.web_config_file)
    except Exception as exc:
        if not is_config_error(exc):
            raise
        print(f"agent-exporter: invalid configuration:\n{exc}", file=sys.stderr)
        return 1
    if args.config_check:
        checked = [f for f in (args.config_file, args.web_config_file) if f]
        print(f"configuration OK: {', '.join(checked) if checked else '(no files given; defaults)'}")
        return 0
    settings = settings_from_args(args, config)
    return asyncio.run(serve(settings, web_config))


if __name__ == "__main__":
    sys.exit(main())
