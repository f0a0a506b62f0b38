"""Fault injection → delivered message, through the real pipeline (``make bench``).

The local stack (agentmon.devstack) with 1 s scrape and evaluation intervals and 1 s group_wait; a
generic-webhook target posts to a local sink. Each round disconnects one exchange in the demo agent
and times until the sink receives ``AgentMonExchangeDisconnected`` for it, then clears the fault and
waits for the resolved message. ``for:`` is 0 s here: the benchmark measures the pipeline, not the
alert's deliberate delay (with the shipped ``for:`` add that duration). Target: ≤ 3 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import yaml
from aiohttp import web

from agentmon.devstack import PROFILES, Ports, Stack

EXCHANGES = ("binance", "okx", "bybit", "coinbase")


class Sink:
    """Records (arrival time, alert name, exchange, status) of every generic-webhook delivery."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, str, str]] = []
        self.port = 0
        self._ready = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()
        self._ready.wait(10)

    async def _handle(self, request: web.Request) -> web.Response:
        doc = await request.json()
        now = time.monotonic()
        for n in doc.get("notifications", [doc]):
            for a in n.get("alerts", []):
                self.events.append((now, a["labels"].get("alertname", ""), a["labels"].get("exchange", ""), a["status"]))
        return web.Response(text="ok")

    def _serve(self) -> None:
        import asyncio

        async def run() -> None:
            app = web.Application()
            app.router.add_post("/{tail:.*}", self._handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]
            self._ready.set()
            await asyncio.Event().wait()

        asyncio.run(run())

    def wait(self, alertname: str, exchange: str, status: str, since: float, timeout: float = 60) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, name, ex, st in list(self.events):
                if at >= since and name == alertname and ex == exchange and st == status:
                    return at
            time.sleep(0.01)
        return None


def _call(url: str, method: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url, method=method, data=b""), timeout=5).read()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.e2e_latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    args, _ = parser.parse_known_args(argv)
    sink = Sink()
    profile = replace(PROFILES["fast"], alert_for="0s")
    with tempfile.TemporaryDirectory(prefix="agentmon-bench-") as tmp:
        run = Path(tmp)
        user = run / "sink.yml"
        user.write_text(yaml.safe_dump({"targets": {"sink": {"type": "webhook", "url": f"http://127.0.0.1:{sink.port}/"}}}))
        with Stack(run, profile, Ports().resolve(any_free=True), receiver_config=user,
                   agent_args=("--flap-interval=0",)) as stack:
            agent = stack.url("agent")
            time.sleep(5)  # first scrapes and evaluations
            fire, resolve = [], []
            for i in range(args.rounds):
                ex = EXCHANGES[i % len(EXCHANGES)]
                t0 = time.monotonic()
                _call(f"{agent}/faults/disconnect?exchange={ex}", "POST")
                got = sink.wait("AgentMonExchangeDisconnected", ex, "firing", t0)
                t1 = time.monotonic()
                _call(f"{agent}/faults/disconnect?exchange={ex}", "DELETE")
                done = sink.wait("AgentMonExchangeDisconnected", ex, "resolved", t1)
                if got is None or done is None:
                    print(f"round {i}: message never arrived ({ex})", file=sys.stderr)
                    return 1
                fire.append(got - t0)
                resolve.append(done - t1)
                time.sleep(2)
    result = {
        "rounds": args.rounds,
        "fault_to_delivery_seconds": {"median": statistics.median(fire), "max": max(fire)},
        "clear_to_resolved_seconds": {"median": statistics.median(resolve), "max": max(resolve)},
        "target_seconds": 3.0,
        "intervals": "scrape 1s, evaluation 1s, group_wait 1s, group_interval 2s, for 0s",
    }
    print(json.dumps(result, indent=2))
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "e2e_latency.json").write_text(json.dumps(result, indent=2))
    ok = result["fault_to_delivery_seconds"]["median"] <= 3.0
    print(f"fault → delivery median {statistics.median(fire):.2f} s (target ≤ 3 s): {'OK' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
