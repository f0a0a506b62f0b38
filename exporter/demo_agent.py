"""Demo market-data agent: serves a realistic, changing stats document (docs/agent-stats.md) at
GET /stats, with switchable faults for demos and alert tests.

    python -m exporter.demo_agent --web.listen-address 127.0.0.1:19101 [--seed 42] [--fault slow=5]

The simulation advances lazily from the clock on every request: records grow at ~190/s in total,
connections drop now and then (--flap-interval) and reconnect, orders fill, PnL moves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import random
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from agentmon.cliflags import split_host_port
from agentmon.logsetup import FORMATS, LEVELS, setup_logging

log = logging.getLogger("exporter.demo_agent")

AGENT_VERSION = "1.4.2-demo"

# Records per second by data type, requests per second, quote currency, symbols traded.
PROFILES: dict[str, dict[str, Any]] = {
    "binance": {"records": {"trades": 45.0, "orderbook": 30.0, "ticker": 6.0, "funding": 0.05}, "requests": 8.0,
                "quote": "USDT", "symbols": {"BTCUSDT": 91000.0, "ETHUSDT": 3100.0, "SOLUSDT": 142.0}},
    "okx": {"records": {"trades": 25.0, "orderbook": 18.0, "ticker": 4.0, "funding": 0.03}, "requests": 5.0,
            "quote": "USDT", "symbols": {"BTC-USDT-SWAP": 91010.0, "ETH-USDT-SWAP": 3101.0}},
    "bybit": {"records": {"trades": 20.0, "orderbook": 15.0, "ticker": 3.0, "funding": 0.03}, "requests": 4.0,
              "quote": "USDT", "symbols": {"BTCUSDT": 90990.0, "XRPUSDT": 2.2}},
    "coinbase": {"records": {"trades": 12.0, "orderbook": 9.0, "ticker": 2.0}, "requests": 3.0,
                 "quote": "USD", "symbols": {"BTC-USD": 91005.0}},
}

# Fault name → (description, parameter defaults). Parameters: seconds, exchange (comma list; empty = all), ratio.
FAULTS: dict[str, tuple[str, dict[str, Any]]] = {
    "slow": ("GET /stats answers after `seconds` (default 5)", {"seconds": 5.0}),
    "http_500": ("GET /stats answers HTTP 500", {}),
    "malformed": ("GET /stats answers truncated, invalid JSON with status 200", {}),
    "stall": ("record counters and last_record_time_ms stop growing for `exchange` (default all)", {"exchange": ""}),
    "disconnect": ("connection state 'disconnected' for `exchange` (default all); reconnects when cleared",
                   {"exchange": ""}),
    "error_rate": ("a share `ratio` (default 0.5) of requests to `exchange` (default all) fail",
                   {"exchange": "", "ratio": 0.5}),
}
BASE_ERROR_RATIO = 0.002
WARM_UP_SECONDS = 3600.0


class FaultError(ValueError):
    """Unknown fault or bad parameter; the HTTP API answers 400/404 with the message."""


@dataclass
class Faults:
    """Active faults, name → parameters (per app, changed over HTTP or by --fault)."""

    active: dict[str, dict[str, Any]] = field(default_factory=dict)

    def set(self, name: str, params: Mapping[str, Any]) -> dict[str, Any]:
        if name not in FAULTS:
            raise LookupError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
        defaults = FAULTS[name][1]
        unknown = set(params) - set(defaults)
        if unknown:
            raise FaultError(f"fault {name!r} takes {sorted(defaults) or 'no parameters'}, not {sorted(unknown)}")
        merged = dict(defaults)
        for key, raw in params.items():
            merged[key] = _fault_param(name, key, raw)
        self.active[name] = merged
        return merged

    def clear(self, name: str | None = None, exchanges: str = "") -> None:
        """Clear one fault (or all). With ``exchanges``, only those leave a fault that names
        exchanges; the fault ends when none is left (a fault on all exchanges ends at once)."""
        if name is None:
            self.active.clear()
            return
        if name not in FAULTS:
            raise LookupError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
        params = self.active.get(name)
        targets = [t for t in str((params or {}).get("exchange", "")).split(",") if t]
        leaving = {e for e in exchanges.split(",") if e}
        remaining = [t for t in targets if t not in leaving]
        if params is not None and leaving and targets and remaining:
            params["exchange"] = ",".join(remaining)
        else:
            self.active.pop(name, None)

    def hits(self, name: str, exchange: str) -> bool:
        params = self.active.get(name)
        if params is None:
            return False
        targets = [t for t in str(params.get("exchange", "")).split(",") if t]
        return not targets or exchange in targets

    def as_json(self) -> dict[str, Any]:
        return {"active": self.active, "available": {n: {"description": d, "defaults": p} for n, (d, p) in FAULTS.items()}}


def _fault_param(name: str, key: str, raw: Any) -> Any:
    if key == "exchange":
        text = ",".join(raw) if isinstance(raw, list) else str(raw)
        unknown = [e for e in text.split(",") if e and e not in PROFILES]
        if unknown:
            raise FaultError(f"fault {name!r}: unknown exchange(s) {unknown}; known: {', '.join(PROFILES)}")
        return text
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise FaultError(f"fault {name!r}: {key} must be a number, got {raw!r}") from None
    if key == "ratio" and not 0 <= value <= 1:
        raise FaultError(f"fault {name!r}: ratio must be between 0 and 1")
    if key == "seconds" and not 0 <= value <= 600:
        raise FaultError(f"fault {name!r}: seconds must be between 0 and 600")
    return value


def parse_fault_flag(text: str) -> tuple[str, dict[str, Any]]:
    """--fault NAME, NAME=VALUE (the fault's main parameter) or NAME?key=value&key=value."""
    if "?" in text:
        name, query = text.split("?", 1)
        return name, dict(parse_qsl(query, keep_blank_values=True))
    name, sep, value = text.partition("=")
    if not sep:
        return name, {}
    main = {"slow": "seconds", "error_rate": "ratio", "stall": "exchange", "disconnect": "exchange"}.get(name)
    if main is None:
        raise FaultError(f"fault {name!r} takes no value")
    return name, {main: value}


@dataclass
class Position:
    symbol: str
    side: str
    size: float
    entry_price: float
    mark_price: float
    realized_pnl: float = 0.0

    @property
    def unrealized_pnl(self) -> float:
        sign = 1.0 if self.side == "long" else -1.0
        return sign * (self.mark_price - self.entry_price) * self.size


@dataclass
class ExchangeSim:
    name: str
    profile: dict[str, Any]
    state: str = "connected"
    state_since_ms: int = 0
    reconnect_at: float = 0.0  # monotonic time a reconnecting connection comes back
    reconnects: int = 0
    requests: int = 0
    request_errors: int = 0
    records: dict[str, int] = field(default_factory=dict)
    last_record_time_ms: int | None = None
    positions: list[Position] = field(default_factory=list)
    realized_pnl: float = 0.0
    orders: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("submitted", "filled", "cancelled", "rejected"), 0))
    _frac: dict[str, float] = field(default_factory=dict)

    def grow(self, key: str, amount: float) -> int:
        """Add a fractional amount to an integer counter, carrying the remainder."""
        total = self._frac.get(key, 0.0) + amount
        whole = int(total)
        self._frac[key] = total - whole
        return whole


class DemoAgent:
    """The simulated agent. Deterministic for a given seed and clock readings."""

    def __init__(
        self,
        *,
        seed: int | None = None,
        exchanges: list[str] | None = None,
        flap_interval: float = 900.0,
        extra_symbols: int = 0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ):
        self.rng = random.Random(seed)
        self.faults = Faults()
        self.flap_interval = flap_interval
        self._clock = clock
        self._wall = wall
        self._last = clock()
        self.start_time_ms = int(wall() * 1000) - int(WARM_UP_SECONDS * 1000)  # "running for an hour"
        self.exchanges = [self._new_exchange(name, extra_symbols) for name in (exchanges or list(PROFILES))]
        self.cache = {"hits": 0, "requests": 0, "size_bytes": 0, "entries": 0}
        self._cache_frac = {"requests": 0.0, "hits": 0.0}
        self._warm_up(WARM_UP_SECONDS)

    def _warm_up(self, seconds: float) -> None:
        """Counters as after ``seconds`` of quiet running, so the first document looks like a real
        agent's (not all zeros one hour after start_time)."""
        flap, self.flap_interval = self.flap_interval, 0.0
        self._last -= seconds
        self.advance()
        self.flap_interval = flap

    def _new_exchange(self, name: str, extra_symbols: int) -> ExchangeSim:
        profile = PROFILES[name]
        ex = ExchangeSim(name, profile, state_since_ms=self.start_time_ms, reconnects=self.rng.randint(0, 3))
        ex.records = dict.fromkeys(profile["records"], 0)
        symbols = dict(profile["symbols"])
        symbols.update({f"DEMO{i:04d}{profile['quote']}": 1.0 + i for i in range(extra_symbols)})
        for symbol, price in symbols.items():
            entry = price * self.rng.uniform(0.98, 1.02)
            ex.positions.append(Position(symbol, self.rng.choice(["long", "short"]),
                                         round(self.rng.uniform(0.1, 5.0) * 1000 / price, 6), entry, price))
        return ex

    # -- simulation --------------------------------------------------------------------------

    def advance(self) -> None:
        now = self._clock()
        dt = max(0.0, now - self._last)
        self._last = now
        wall_ms = int(self._wall() * 1000)
        for ex in self.exchanges:
            self._advance_exchange(ex, now, dt, wall_ms)
        self._advance_cache(dt)

    def _advance_exchange(self, ex: ExchangeSim, now: float, dt: float, wall_ms: int) -> None:
        rng = self.rng
        self._advance_connection(ex, now, dt, wall_ms)
        connected = ex.state == "connected"
        # Requests: normal traffic when connected, reconnect attempts (all failing) otherwise.
        if connected:
            n = ex.grow("requests", ex.profile["requests"] * dt * rng.uniform(0.8, 1.2))
            ratio = self.faults.active["error_rate"]["ratio"] if self.faults.hits("error_rate", ex.name) else BASE_ERROR_RATIO
            errors = sum(1 for _ in range(min(n, 10_000)) if rng.random() < ratio) if n else 0
            if n > 10_000:
                errors = round(n * ratio)
        else:
            n = errors = ex.grow("reconnect_attempts", 0.5 * dt)
        ex.requests += n
        ex.request_errors += errors
        # Records: only while connected and not stalled.
        if connected and not self.faults.hits("stall", ex.name):
            got = 0
            for data_type, rate in ex.profile["records"].items():
                k = ex.grow(f"rec:{data_type}", rate * dt * rng.uniform(0.7, 1.3))
                ex.records[data_type] += k
                got += k
            if got:
                ex.last_record_time_ms = wall_ms - rng.randint(5, 80)
        # Orders: ~0.8/s submitted; 70% fill, 25% cancel, 2% rejected, the rest stay open.
        if connected:
            sub = ex.grow("orders", 0.8 * dt * rng.uniform(0.5, 1.5))
            ex.orders["submitted"] += sub
            for outcome, share in (("filled", 0.70), ("cancelled", 0.25), ("rejected", 0.02)):
                ex.orders[outcome] += ex.grow(f"ord:{outcome}", sub * share)
        # Prices random-walk; fills realize a little PnL.
        vol = 0.0006 * math.sqrt(dt) if dt else 0.0
        for pos in ex.positions:
            pos.mark_price = max(1e-9, pos.mark_price * math.exp(rng.gauss(0.0, vol)))
        if connected and dt:
            delta = rng.gauss(0.0, 0.4) * math.sqrt(dt)
            ex.realized_pnl += delta
            if ex.positions:
                rng.choice(ex.positions).realized_pnl += delta

    def _advance_connection(self, ex: ExchangeSim, now: float, dt: float, wall_ms: int) -> None:
        forced = self.faults.hits("disconnect", ex.name)
        if forced:
            if ex.state != "disconnected":
                ex.state, ex.state_since_ms = "disconnected", wall_ms
            return
        if ex.state == "disconnected":  # fault cleared: come back through "reconnecting"
            ex.state, ex.state_since_ms, ex.reconnect_at = "reconnecting", wall_ms, now + self.rng.uniform(1.0, 2.0)
        elif self._flaps(ex, dt):
            ex.state, ex.state_since_ms, ex.reconnect_at = "reconnecting", wall_ms, now + self.rng.uniform(1.0, 4.0)
        if ex.state == "reconnecting" and now >= ex.reconnect_at:
            ex.state, ex.state_since_ms = "connected", wall_ms
            ex.reconnects += 1

    def _flaps(self, ex: ExchangeSim, dt: float) -> bool:
        """A spontaneous short disconnect, as a Poisson process with mean ``flap_interval``."""
        if ex.state != "connected" or self.flap_interval <= 0 or not dt:
            return False
        return self.rng.random() < 1.0 - math.exp(-dt / self.flap_interval)

    def _advance_cache(self, dt: float) -> None:
        req = int(self._cache_frac["requests"] + 500.0 * dt)
        self._cache_frac["requests"] += 500.0 * dt - req
        hit_share = self._cache_frac["hits"] + req * self.rng.uniform(0.88, 0.95)
        hits = int(hit_share)
        self._cache_frac["hits"] = hit_share - hits
        self.cache["requests"] += req
        self.cache["hits"] += hits
        self.cache["entries"] = min(50_000, self.cache["entries"] + (req - hits))
        self.cache["size_bytes"] = self.cache["entries"] * 5_632

    # -- the document ------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The stats document (schema: exporter/schemas/agent-stats.schema.json)."""
        self.advance()
        return {
            "schema_version": 1,
            "agent": {"id": "demo-agent-1", "version": AGENT_VERSION, "start_time_ms": self.start_time_ms,
                      "time_ms": int(self._wall() * 1000)},
            "exchanges": [self._exchange_doc(ex) for ex in self.exchanges],
            "cache": dict(self.cache),
        }

    @staticmethod
    def _exchange_doc(ex: ExchangeSim) -> dict[str, Any]:
        return {
            "name": ex.name,
            "connection": {"state": ex.state, "reconnects": ex.reconnects, "since_ms": ex.state_since_ms},
            "requests": {"total": ex.requests, "errors": ex.request_errors},
            "records": dict(ex.records),
            "last_record_time_ms": ex.last_record_time_ms,
            "pnl": {"unrealized": round(sum(p.unrealized_pnl for p in ex.positions), 4),
                    "realized": round(ex.realized_pnl, 4), "currency": ex.profile["quote"]},
            "positions": [
                {"symbol": p.symbol, "side": p.side, "size": p.size, "entry_price": round(p.entry_price, 6),
                 "mark_price": round(p.mark_price, 6), "unrealized_pnl": round(p.unrealized_pnl, 4),
                 "realized_pnl": round(p.realized_pnl, 4)}
                for p in ex.positions
            ],
            "orders": dict(ex.orders),
        }


# -- HTTP ------------------------------------------------------------------------------------

AGENT_KEY = web.AppKey("demo_agent", DemoAgent)


def create_app(agent: DemoAgent) -> web.Application:
    """The demo agent's aiohttp app; ``agent`` holds all state (one per app, no globals)."""
    app = web.Application()
    app[AGENT_KEY] = agent
    app.router.add_get("/", _index)
    app.router.add_get("/stats", _stats)
    app.router.add_get("/faults", _faults_list)
    app.router.add_delete("/faults", _faults_clear_all)
    app.router.add_post("/faults/{name}", _fault_set)
    app.router.add_put("/faults/{name}", _fault_set)
    app.router.add_delete("/faults/{name}", _fault_clear)
    app.router.add_get("/-/healthy", _healthy)
    return app


async def _index(request: web.Request) -> web.Response:
    return web.Response(text="demo market-data agent\n\nGET /stats\nGET /faults\nPOST|DELETE /faults/<name>\n"
                             "DELETE /faults\n\n" + FAULT_HELP)


async def _healthy(request: web.Request) -> web.Response:
    return web.Response(text="OK\n")


async def _stats(request: web.Request) -> web.Response:
    agent = request.app[AGENT_KEY]
    faults = agent.faults.active
    if "slow" in faults:
        await asyncio.sleep(faults["slow"]["seconds"])
    if "http_500" in faults:
        return web.json_response({"error": "injected fault http_500"}, status=500)
    body = json.dumps(agent.stats(), separators=(",", ":"))
    if "malformed" in faults:
        body = body[: len(body) // 2]
    return web.Response(text=body, content_type="application/json")


async def _faults_list(request: web.Request) -> web.Response:
    return web.json_response(request.app[AGENT_KEY].faults.as_json())


async def _fault_set(request: web.Request) -> web.Response:
    agent = request.app[AGENT_KEY]
    params: dict[str, Any] = dict(request.query)
    if request.can_read_body:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "body must be a JSON object of parameters"}, status=400)
        if body is not None and not isinstance(body, dict):
            return web.json_response({"error": "body must be a JSON object of parameters"}, status=400)
        params.update(body or {})
    try:
        agent.faults.set(request.match_info["name"], params)
    except LookupError as exc:
        return web.json_response({"error": str(exc)}, status=404)
    except FaultError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    log.info("fault set", extra={"fault": request.match_info["name"], "params": agent.faults.active[request.match_info["name"]]})
    return web.json_response(agent.faults.as_json())


async def _fault_clear(request: web.Request) -> web.Response:
    agent = request.app[AGENT_KEY]
    try:
        agent.faults.clear(request.match_info["name"], request.query.get("exchange", ""))
    except LookupError as exc:
        return web.json_response({"error": str(exc)}, status=404)
    log.info("fault cleared", extra={"fault": request.match_info["name"]})
    return web.json_response(agent.faults.as_json())


async def _faults_clear_all(request: web.Request) -> web.Response:
    request.app[AGENT_KEY].faults.clear()
    log.info("all faults cleared")
    return web.json_response(request.app[AGENT_KEY].faults.as_json())


FAULT_HELP = "faults (GET /faults lists them with their defaults):\n" + "\n".join(
    f"  {name:<11} {desc}" for name, (desc, _) in FAULTS.items()
) + """

set:    curl -X POST 'http://HOST:PORT/faults/stall?exchange=binance,okx'
        curl -X POST http://HOST:PORT/faults/slow -d '{"seconds": 5}'
clear:  curl -X DELETE http://HOST:PORT/faults/stall     (all: curl -X DELETE http://HOST:PORT/faults)
        curl -X DELETE 'http://HOST:PORT/faults/stall?exchange=okx'   (okx only; the rest stay stalled)
flags:  --fault slow=5 | --fault stall=binance | --fault error_rate=0.8 | --fault 'error_rate?ratio=0.8&exchange=okx'
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m exporter.demo_agent",
        description="Demo market-data agent serving a changing stats document at GET /stats.",
        epilog=FAULT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--web.listen-address", dest="listen_address", default="127.0.0.1:19101", metavar="HOST:PORT",
                        help="address to listen on (default: 127.0.0.1:19101)")
    parser.add_argument("--seed", type=int, default=None, help="seed the simulation RNG (deterministic runs)")
    parser.add_argument("--fault", action="append", default=[], metavar="NAME[=VALUE]",
                        help="start with a fault active (repeatable); see below")
    parser.add_argument("--exchanges", default=",".join(PROFILES),
                        help=f"comma-separated exchanges to simulate (default: {','.join(PROFILES)})")
    parser.add_argument("--flap-interval", type=float, default=900.0, metavar="SECONDS",
                        help="mean seconds between spontaneous short disconnects per exchange; 0 disables (default: 900)")
    parser.add_argument("--extra-symbols", type=int, default=0, metavar="N",
                        help="add N synthetic open positions per exchange (per-symbol cardinality tests)")
    parser.add_argument("--log.level", dest="log_level", choices=LEVELS, default="info")
    parser.add_argument("--log.format", dest="log_format", choices=FORMATS, default="logfmt")
    return parser


def agent_from_args(args: argparse.Namespace) -> DemoAgent:
    """Build the DemoAgent an argument list asks for; raises FaultError/LookupError/ValueError on bad flags."""
    names = [n for n in args.exchanges.split(",") if n]
    unknown = [n for n in names if n not in PROFILES]
    if unknown or not names:
        raise ValueError(f"--exchanges: unknown exchange(s) {unknown}; known: {', '.join(PROFILES)}")
    if args.extra_symbols < 0:
        raise ValueError("--extra-symbols must be >= 0")
    agent = DemoAgent(seed=args.seed, exchanges=names, flap_interval=args.flap_interval, extra_symbols=args.extra_symbols)
    for text in args.fault:
        name, params = parse_fault_flag(text)
        agent.faults.set(name, params)
    return agent


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        host, port = split_host_port(args.listen_address)
        agent = agent_from_args(args)
    except (ValueError, LookupError, argparse.ArgumentTypeError) as exc:
        print(f"demo_agent: error: {exc}", file=sys.stderr)
        return 2
    log.info("demo agent listening", extra={"address": f"{host}:{port}", "faults": agent.faults.active})
    # Short shutdown grace: a request parked by the `slow` fault must not hold up SIGTERM.
    web.run_app(create_app(agent), host=host, port=port, print=None, access_log=None, handle_signals=True,
                shutdown_timeout=0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
