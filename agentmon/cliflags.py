"""Flags every agent-monitoring process shares, named as Prometheus tools name them."""

from __future__ import annotations

import argparse

from agentmon.logsetup import FORMATS, LEVELS


def add_common_flags(parser: argparse.ArgumentParser, *, default_listen: str, config_required: bool = False) -> None:
    parser.add_argument(
        "--web.listen-address", dest="listen_address", default=default_listen, metavar="HOST:PORT",
        help=f"address to listen on (default: {default_listen})",
    )
    parser.add_argument(
        "--config.file", dest="config_file", default=None, required=config_required, metavar="FILE",
        help="YAML configuration file" + ("" if config_required else " (optional)"),
    )
    parser.add_argument(
        "--config.check", dest="config_check", action="store_true",
        help="validate the configuration file, print the result and exit (non-zero when invalid)",
    )
    parser.add_argument("--log.level", dest="log_level", choices=LEVELS, default="info", help="log level (default: info)")
    parser.add_argument(
        "--log.format", dest="log_format", choices=FORMATS, default="logfmt", help="log line format (default: logfmt)"
    )


def split_host_port(address: str) -> tuple[str, int]:
    """'127.0.0.1:19817' → ('127.0.0.1', 19817); ':19817' listens on all interfaces; '[::1]:19817' for IPv6."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"invalid listen address {address!r}: expected HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)
