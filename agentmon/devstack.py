"""The whole local stack on loopback, in one command (``make run``).

Starts, in order: the demo agent, agent-exporter, alert-receiver (a file target by default, plus
your own targets when ``--receiver.config`` is given), Prometheus with our rules and AlertManager
with our routing. Prints every URL; Ctrl-C stops everything it started. State lives under one run
directory (``.run/`` by default). The end-to-end tests and ``make bench`` drive the same class
with fast intervals (``profile="fast"``).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from agentmon.procs import Proc, free_port, port_is_free, start_process

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
RECEIVER_TOKEN = "local-stack-token"  # bearer token AlertManager uses towards the receiver (loopback only)


@dataclass(frozen=True)
class Profile:
    """Timings: ``demo`` is watchable by a person, ``fast`` makes alerts travel in seconds (tests)."""

    scrape_interval: str
    evaluation_interval: str
    group_wait: str
    group_interval: str
    # ``for:`` of the alerts: a duration replaces it, "/N" divides the shipped one by N (keeps the
    # order in which alerts fire, which inhibition relies on), None keeps the shipped values
    alert_for: str | None
    # alerts whose ``for:`` is overridden (None: all). Rate-based alerts keep their shipped ``for:``
    # in the demo: a 5m rate window is not full during the first minutes and would fire falsely.
    alerts: frozenset[str] | None
    resend_delay: str  # Prometheus re-sends firing alerts this often (its first send may predate AM discovery)


# Alerts a newcomer triggers by hand from the demo agent's fault switches.
WALKTHROUGH_ALERTS = frozenset({
    "AgentMonExchangeDisconnected", "AgentMonAllExchangesDisconnected", "AgentMonAgentStatsDown",
    "AgentMonExporterDown", "AgentMonReceiverDown", "AgentMonExchangeFeedStale",
})

PROFILES = {
    "demo": Profile("5s", "5s", "5s", "30s", "30s", WALKTHROUGH_ALERTS, "15s"),
    "fast": Profile("1s", "1s", "1s", "2s", "/60", None, "2s"),
}


@dataclass
class Ports:
    agent: int = 19101
    exporter: int = 19817
    receiver: int = 19818
    prometheus: int = 9090
    alertmanager: int = 9093

    def resolve(self, *, any_free: bool) -> Ports:
        """Keep the well-known ports when free; otherwise (or always with ``any_free``) take free ones."""
        out = {}
        for name, port in vars(self).items():
            out[name] = port if (not any_free and port_is_free(port)) else free_port()
        return Ports(**out)


@dataclass
class Stack:
    run_dir: Path
    profile: Profile = PROFILES["demo"]
    ports: Ports = field(default_factory=Ports)
    receiver_config: Path | None = None  # user's receiver config: its targets are added to every route
    python: str = sys.executable
    agent_args: tuple[str, ...] = ()  # extra demo-agent flags (tests: --flap-interval=0 for determinism)
    procs: list[Proc] = field(default_factory=list)

    # ---- URLs ----------------------------------------------------------------------------
    def url(self, name: str) -> str:
        return f"http://{HOST}:{getattr(self.ports, name)}"

    @property
    def alerts_file(self) -> Path:
        return self.run_dir / "alerts.jsonl"

    # ---- config generation -----------------------------------------------------------------
    def write_configs(self) -> None:
        d = self.run_dir
        for sub in ("prometheus-data", "alertmanager-data", "receiver-data", "rules", "logs"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "receiver-token").write_text(RECEIVER_TOKEN + "\n")
        exporter = {
            "agent": {"url": f"{self.url('agent')}/stats"},
            # the demo agent plays the agent's own process for the process collector
            "collectors": {"process": {"cmdline": r"-m exporter\.demo_agent "}},
        }
        (d / "exporter.yml").write_text(yaml.safe_dump(exporter))
        (d / "receiver.yml").write_text(yaml.safe_dump(self._receiver_config(), sort_keys=False))
        self._write_rules(d / "rules")
        (d / "prometheus.yml").write_text(yaml.safe_dump(self._prometheus_config(), sort_keys=False))
        (d / "alertmanager.yml").write_text(self._alertmanager_config())

    def _receiver_config(self) -> dict:
        targets: dict = {"local-file": {"type": "file", "path": str(self.alerts_file)}}
        extra: list[str] = []
        if self.receiver_config:
            user = yaml.safe_load(self.receiver_config.read_text()) or {}
            for name, t in (user.get("targets") or {}).items():
                targets[name] = t
                extra.append(name)
        routes = {r: ["local-file", *extra] for r in self._alertmanager_routes()}
        return {
            "auth": {"bearer_token": RECEIVER_TOKEN},
            "routes": routes,
            "targets": targets,
        }

    def _alertmanager_routes(self) -> list[str]:
        """The receiver routes the shipped alertmanager.yml posts to (``/alerts/<route>``)."""
        cfg = yaml.safe_load((REPO / "alertmanager" / "alertmanager.yml").read_text())
        routes = []
        for rcv in cfg.get("receivers", []):
            for wh in rcv.get("webhook_configs", []) or []:
                routes.append(wh["url"].rstrip("/").rsplit("/", 1)[-1])
        return sorted(set(routes))

    def _alertmanager_config(self) -> str:
        """The shipped alertmanager.yml, pointed at this stack's receiver and token file."""
        cfg = yaml.safe_load((REPO / "alertmanager" / "alertmanager.yml").read_text())
        route = cfg["route"]
        _set_timings(route, self.profile)
        for rcv in cfg.get("receivers", []):
            for wh in rcv.get("webhook_configs", []) or []:
                path = "/alerts/" + wh["url"].rstrip("/").rsplit("/", 1)[-1]
                wh["url"] = self.url("receiver") + path
                wh["http_config"] = {
                    "authorization": {"type": "Bearer", "credentials_file": str(self.run_dir / "receiver-token")}
                }
        return yaml.safe_dump(cfg, sort_keys=False)

    def _write_rules(self, out: Path) -> None:
        for f in out.glob("*.yml"):
            f.unlink()
        if self.profile.alert_for is None:
            for f in (REPO / "rules").glob("agentmon.*.yml"):
                shutil.copy(f, out / f.name)
            return
        write_rules(out, for_override=self.profile.alert_for, only=self.profile.alerts)

    def _prometheus_config(self) -> dict:
        scrape = [
            ("agent-exporter", self.ports.exporter),
            ("alert-receiver", self.ports.receiver),
            ("alertmanager", self.ports.alertmanager),
            ("prometheus", self.ports.prometheus),
        ]
        return {
            "global": {
                "scrape_interval": self.profile.scrape_interval,
                "scrape_timeout": self.profile.scrape_interval,
                "evaluation_interval": self.profile.evaluation_interval,
            },
            "rule_files": [str(self.run_dir / "rules" / "*.yml")],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"{HOST}:{self.ports.alertmanager}"]}]}]},
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [f"{HOST}:{port}"]}]} for job, port in scrape
            ],
        }

    # ---- processes ---------------------------------------------------------------------------
    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.write_configs()
        logs = self.run_dir / "logs"
        py = self.python
        try:
            self._start("demo-agent", [py, "-m", "exporter.demo_agent", f"--web.listen-address={HOST}:{self.ports.agent}",
                                       *self.agent_args],
                        self.url("agent") + "/stats", logs)
            self._start("agent-exporter", [py, "-m", "exporter.cli", f"--web.listen-address={HOST}:{self.ports.exporter}",
                                           f"--config.file={self.run_dir / 'exporter.yml'}"],
                        self.url("exporter") + "/-/ready", logs)
            self._start("alert-receiver", [py, "-m", "receiver.cli", f"--web.listen-address={HOST}:{self.ports.receiver}",
                                           f"--config.file={self.run_dir / 'receiver.yml'}",
                                           f"--storage.path={self.run_dir / 'receiver-data'}"],
                        self.url("receiver") + "/-/ready", logs)
            self._start("alertmanager", ["prometheus-alertmanager", f"--config.file={self.run_dir / 'alertmanager.yml'}",
                                         f"--storage.path={self.run_dir / 'alertmanager-data'}",
                                         f"--web.listen-address={HOST}:{self.ports.alertmanager}",
                                         "--cluster.listen-address=", f"--web.external-url={self.url('alertmanager')}"],
                        self.url("alertmanager") + "/-/ready", logs)
            self._start("prometheus", ["prometheus", f"--config.file={self.run_dir / 'prometheus.yml'}",
                                       f"--storage.tsdb.path={self.run_dir / 'prometheus-data'}",
                                       f"--web.listen-address={HOST}:{self.ports.prometheus}",
                                       f"--rules.alert.resend-delay={self.profile.resend_delay}",
                                       f"--web.external-url={self.url('prometheus')}"],
                        self.url("prometheus") + "/-/ready", logs)
        except BaseException:
            self.stop()
            raise

    def _start(self, name: str, argv: list[str], ready: str, logs: Path) -> None:
        env = {"PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
        self.procs.append(start_process(name, argv, log_dir=logs, ready_url=ready, timeout=60, env=env, cwd=REPO))

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def summary(self) -> str:
        a = self.url("agent")
        lines = [
            "agent-monitoring local stack (Ctrl-C stops everything)",
            f"  demo agent       {a}/stats        faults: {a}/faults",
            f"  agent-exporter   {self.url('exporter')}/metrics",
            f"  alert-receiver   {self.url('receiver')}/            delivered alerts: {self.alerts_file}",
            f"  Prometheus       {self.url('prometheus')}/alerts",
            f"  AlertManager     {self.url('alertmanager')}/",
            f"  run directory    {self.run_dir}  (logs in {self.run_dir / 'logs'})",
            "",
            "Make an alert fire (an exchange disconnects), then watch it arrive:",
            f"  curl -X POST '{a}/faults/disconnect?exchange=binance'",
            f"  tail -f {self.alerts_file}",
            "Resolve it:",
            f"  curl -X DELETE '{a}/faults/disconnect?exchange=binance'",
        ]
        return "\n".join(lines)


def load_rules_generator():
    """rules/generate.py (the single source of the rules), loaded by path: rules/ is not installed."""
    spec = importlib.util.spec_from_file_location("agentmon_rules_generate", REPO / "rules" / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve their module by name
    spec.loader.exec_module(mod)
    return mod


def write_rules(out: Path, *, for_override: str, only: frozenset[str] | None = None) -> None:
    """Generate the shipped rules with the ``for:`` of ``only`` (default: every alert) replaced
    by ``for_override``, or divided when it reads ``/N``."""
    gen = load_rules_generator()
    config = gen.load_config()

    def new_for(shipped: str) -> str:
        if for_override.startswith("/"):
            return f"{gen.duration_seconds(shipped) / float(for_override[1:]):g}s"
        return for_override

    alerts = {
        name: dataclasses.replace(t, for_=new_for(t.for_)) if only is None or name in only else t
        for name, t in config.alerts.items()
    }
    for name, content in gen.render(dataclasses.replace(config, alerts=alerts)).items():
        (out / name).write_text(content)


def _set_timings(route: dict, profile: Profile) -> None:
    for key, value in (("group_wait", profile.group_wait), ("group_interval", profile.group_interval)):
        if key in route:
            route[key] = value
    for child in route.get("routes", []) or []:
        _set_timings(child, profile)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentmon-stack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", default=str(REPO / ".run"), help="state, configs and logs (default: .run/)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="demo",
                        help="timings: demo (alerts in about a minute) or fast (seconds)")
    parser.add_argument("--receiver.config", dest="receiver_config", default=None,
                        help="a receiver config whose targets (DingTalk, WeCom, mail...) get every alert too")
    parser.add_argument("--any-port", action="store_true", help="use free random ports instead of the usual ones")
    args = parser.parse_args(argv)
    stack = Stack(Path(args.run_dir).resolve(), PROFILES[args.profile], Ports().resolve(any_free=args.any_port),
                  Path(args.receiver_config).resolve() if args.receiver_config else None)
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start()
    except Exception as exc:
        print(f"agentmon-stack: failed to start: {exc}", file=sys.stderr)
        return 1
    print(stack.summary(), flush=True)
    (stack.run_dir / "stack.json").write_text(json.dumps({k: v for k, v in vars(stack.ports).items()}))
    try:
        while not stopping:
            dead = [p for p in stack.procs if not p.alive()]
            if dead:
                print(f"agentmon-stack: {dead[0].name} exited:\n{dead[0].log_tail()}", file=sys.stderr)
                return 1
            time.sleep(0.5)
    finally:
        stack.stop()
        print("agentmon-stack: stopped", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
