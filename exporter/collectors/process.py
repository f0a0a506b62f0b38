"""process: the agent's own process, found by pidfile, PID or name — never a process-table scan per scrape.

The resolved ``psutil.Process`` is cached; it is re-resolved only when it has died (``is_running``
compares the start time, so a recycled PID is not mistaken for the agent). A name match scans process
names only while the agent is not found. With no selector configured the collector emits nothing."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.collectors.base import CollectorSpec


@dataclass(frozen=True)
class ProcessOptions:
    pidfile: str | None = None
    pid: int | None = None
    name: re.Pattern | None = None  # full match against the process name or basename(argv[0])
    cmdline: re.Pattern | None = None  # search in the space-joined command line

    @property
    def configured(self) -> bool:
        return any(v is not None for v in (self.pidfile, self.pid, self.name, self.cmdline))


class ProcessCollector:
    name = "process"

    def __init__(self, namespace: str, options: ProcessOptions | None = None):
        self.ns = namespace
        self.options = options or ProcessOptions()
        self._proc: psutil.Process | None = None
        self._pidfile_pid: int | None = None

    # -- resolution ---------------------------------------------------------------------------
    def _pid_from_file(self) -> int | None:
        try:
            with open(self.options.pidfile, encoding="ascii") as f:  # type: ignore[arg-type]
                return int(f.read().strip().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _matches(self, proc: psutil.Process) -> bool:
        o = self.options
        try:
            if o.name is not None:
                name = proc.info.get("name") or ""
                if o.name.fullmatch(name):
                    return True
                argv = proc.cmdline()
                return bool(argv) and bool(o.name.fullmatch(os.path.basename(argv[0])))
            if o.cmdline is not None:
                return bool(o.cmdline.search(" ".join(proc.cmdline())))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return False
        return False

    def _resolve(self) -> psutil.Process | None:
        o = self.options
        try:
            if o.pidfile is not None:
                pid = self._pid_from_file()
                return psutil.Process(pid) if pid else None
            if o.pid is not None:
                return psutil.Process(o.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        me = os.getpid()
        for proc in psutil.process_iter(["name"]):
            if proc.pid != me and self._matches(proc):
                return proc
        return None

    def process(self) -> psutil.Process | None:
        """The cached process while it lives (and the pidfile still names it); otherwise resolve again."""
        proc = self._proc
        if proc is not None:
            still = proc.is_running()
            if still and self.options.pidfile is not None and self._pid_from_file() != proc.pid:
                still = False
            if still:
                return proc
        self._proc = self._resolve()
        return self._proc

    # -- collection ---------------------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        if not self.options.configured:
            return
        ns = f"{self.ns}_agent_process"
        proc = self.process()
        up = 0
        fams: list[Metric] = []
        if proc is not None:
            try:
                with proc.oneshot():
                    cpu = proc.cpu_times()
                    mem = proc.memory_info()
                    threads = proc.num_threads()
                    created = proc.create_time()
                    fds = proc.num_fds() if hasattr(proc, "num_fds") else None
                c = CounterMetricFamily(f"{ns}_cpu_seconds", "CPU seconds used by the agent process.", labels=["mode"])
                c.add_metric(["user"], cpu.user)
                c.add_metric(["system"], cpu.system)
                fams = [
                    c,
                    GaugeMetricFamily(f"{ns}_resident_memory_bytes", "Resident memory of the agent process.", value=mem.rss),
                    GaugeMetricFamily(f"{ns}_virtual_memory_bytes", "Virtual memory of the agent process.", value=mem.vms),
                    GaugeMetricFamily(f"{ns}_threads", "Threads of the agent process.", value=threads),
                    GaugeMetricFamily(f"{ns}_start_time_seconds", "Start time of the agent process, unix seconds.", value=created),
                ]
                if fds is not None:
                    fams.append(GaugeMetricFamily(f"{ns}_open_fds", "Open file descriptors of the agent process.", value=fds))
                up = 1
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                self._proc = None
                fams = []
        yield from fams
        yield GaugeMetricFamily(f"{ns}_up", "1 if the agent process was found.", value=up)


SPEC = CollectorSpec("process", True, "the agent's own process (needs a selector in the config)", ProcessCollector, ProcessOptions)
