"""``alert-receiver``: serve (default) or ``render`` a payload for one target.

    alert-receiver --config.file=receiver.yml [--web.listen-address=:19818] [--storage.path=./data]
    alert-receiver --config.file=receiver.yml --config.check
    alert-receiver render --config.file=receiver.yml --payload=alert.json --target=ops-dingtalk
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

import prometheus_client
from aiohttp import web

from agentmon import __version__, eventloop
from agentmon.cliflags import add_common_flags, split_host_port
from agentmon.configload import ConfigError
from agentmon.logsetup import setup_logging
from receiver.compose import request_body_text
from receiver.ingest import IngestError, ingest
from receiver.runtime import Runtime, load

log = logging.getLogger("receiver")

DEFAULT_LISTEN = "127.0.0.1:19818"


def _serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="alert-receiver",
        description="AlertManager webhook receiver with a durable outbox (DingTalk, WeCom, Slack, email, ...). "
        "Subcommand: 'alert-receiver render --help'.",
    )
    add_common_flags(p, default_listen=DEFAULT_LISTEN, config_required=True)
    p.add_argument("--storage.path", dest="storage_path", default="./data", metavar="DIR",
                   help="directory of the outbox database (default: ./data)")
    p.add_argument("--version", action="version", version=f"alert-receiver {__version__}")
    return p


def _render_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="alert-receiver render",
        description="Print exactly what a target's channel would receive for an AlertManager payload (nothing is sent).",
    )
    p.add_argument("--config.file", dest="config_file", required=True, metavar="FILE")
    p.add_argument("--payload", required=True, metavar="FILE", help="AlertManager webhook JSON ('-' for stdin)")
    p.add_argument("--target", required=True, metavar="NAME", help="target name from the config")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "render":
        return render_main(argv[1:])
    args = _serve_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        loaded = load(args.config_file)
    except ConfigError as exc:
        print(f"alert-receiver: invalid configuration:\n{exc}", file=sys.stderr)
        return 1
    if args.config_check:
        cfg = loaded.config
        print(f"{args.config_file}: OK ({len(cfg.routes)} routes, {len(cfg.targets)} targets)")
        return 0
    try:
        host, port = split_host_port(args.listen_address)
    except argparse.ArgumentTypeError as exc:
        print(f"alert-receiver: --web.listen-address: {exc}", file=sys.stderr)
        return 2
    return eventloop.run(_serve(args, loaded, host, port))


async def _serve(args: argparse.Namespace, loaded, host: str, port: int) -> int:
    from receiver.app import build_app
    from receiver.store import StoreUnavailable

    # only the series docs/metrics.md lists (no *_created timestamps next to every counter)
    prometheus_client.disable_created_metrics()
    rt = Runtime(args.config_file, args.storage_path, loaded)
    try:
        await rt.start()
    except StoreUnavailable as exc:
        log.error("cannot open the outbox", extra={"err": str(exc)})
        return 1
    app = build_app(rt, manage_runtime=False)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        log.error("cannot listen", extra={"address": args.listen_address, "err": str(exc)})
        await rt.stop()
        return 1
    log.info("listening", extra={"address": f"{host}:{port}", "storage": str(Path(args.storage_path).resolve()),
                                 "version": __version__})
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_hup() -> None:
        async def do() -> None:
            try:
                await rt.reload()
            except ConfigError:
                pass  # logged by reload(); the old config stays

        loop.create_task(do())

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    log.info("shutting down")
    await runner.cleanup()
    await rt.stop()
    return 0


def render_main(argv: list[str]) -> int:
    args = _render_parser().parse_args(argv)
    setup_logging("warn", "logfmt")
    try:
        loaded = load(args.config_file)
    except ConfigError as exc:
        print(f"alert-receiver: invalid configuration:\n{exc}", file=sys.stderr)
        return 1
    if args.target not in loaded.config.targets:
        known = ", ".join(sorted(loaded.config.targets))
        print(f"alert-receiver render: unknown target {args.target!r} (targets: {known})", file=sys.stderr)
        return 2
    try:
        body = sys.stdin.buffer.read() if args.payload == "-" else Path(args.payload).read_bytes()
    except OSError as exc:
        print(f"alert-receiver render: cannot read {args.payload}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        notification = ingest(body, "application/json", "render")
    except IngestError as exc:
        print(f"alert-receiver render: {args.payload}: {exc.message}", file=sys.stderr)
        return 1
    from receiver.runtime import default_compose

    target = loaded.config.targets[args.target]
    request = default_compose()(
        loaded.channels[args.target], loaded.templates, target, [notification],
        on_template_error=lambda m: print(f"warning: custom template failed, default used: {m}", file=sys.stderr),
    )
    print(request_body_text(request))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
