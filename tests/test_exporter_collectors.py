"""Unit tests per system collector: golden exposition from a fixture /proc tree (psutil.PROCFS_PATH),
plus the behaviours that golden files cannot show (exclude regexes, per-CPU/total, the process
selector and its re-resolution, failure isolation).

Regenerate the golden files after an intended change: UPDATE_GOLDEN=1 pytest tests/test_exporter_collectors.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import psutil
import pytest

from exporter.collectors import AVAILABLE, build_collectors
from exporter.collectors.cpu import CpuCollector, CpuOptions
from exporter.collectors.diskstats import DiskstatsCollector, DiskstatsOptions
from exporter.collectors.filesystem import FilesystemCollector, FilesystemOptions
from exporter.collectors.loadavg import LoadavgCollector
from exporter.collectors.memory import MemoryCollector
from exporter.collectors.netdev import NetdevCollector, NetdevOptions
from exporter.collectors.process import ProcessCollector, ProcessOptions
from exporter.collectors.time import TimeCollector
from exporter.collectors.timing import run_timed, scrape_families
from exporter.render import render_text

FIXTURES = Path(__file__).parent / "fixtures" / "procfs"
EXPECTED = FIXTURES / "expected"


@pytest.fixture
def procfs(monkeypatch):
    monkeypatch.setattr(psutil, "PROCFS_PATH", str(FIXTURES))
    return FIXTURES


def golden(name: str, collector) -> str:
    text = render_text(collector.collect()).decode()
    path = EXPECTED / f"{name}.prom"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name}: output differs from {path}"
    return text


def value(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} not in output:\n{text}")


def test_cpu_golden_per_cpu(procfs):
    text = golden("cpu", CpuCollector("agentmon"))
    # /proc/stat: cpu0 user 1393280 ticks at USER_HZ 100
    assert value(text, 'agentmon_cpu_seconds_total{cpu="0",mode="user"}') == 13932.8
    assert value(text, "agentmon_cpus") == 2
    assert "guest" not in text  # already counted in user/nice
    assert 'cpu="total"' not in text


def test_cpu_total_only(procfs):
    text = render_text(CpuCollector("agentmon", CpuOptions(per_cpu=False, total=True)).collect()).decode()
    assert value(text, 'agentmon_cpu_seconds_total{cpu="total",mode="idle"}') == 468284.83
    assert 'cpu="0"' not in text


def test_memory_golden(procfs):
    text = golden("memory", MemoryCollector("agentmon"))
    assert value(text, "agentmon_memory_total_bytes") == 16337532 * 1024
    assert value(text, "agentmon_memory_available_bytes") == 9868036 * 1024
    assert value(text, "agentmon_swap_used_bytes") == (4194300 - 4130556) * 1024


def test_loadavg_golden(procfs):
    text = golden("loadavg", LoadavgCollector("agentmon"))
    assert value(text, "agentmon_load15") == 0.39


def test_time_golden(procfs):
    text = golden("time", TimeCollector("agentmon", clock=lambda: 1800000000.5))
    assert value(text, "agentmon_boot_time_seconds") == 1418183276


def test_diskstats_golden_skips_partitions_and_loops(procfs):
    text = golden("diskstats", DiskstatsCollector("agentmon"))
    assert 'device="sda1"' not in text and 'device="loop0"' not in text and 'device="nvme0n1p1"' not in text
    assert value(text, 'agentmon_disk_read_bytes_total{device="sda"}') == 1003346126 * 512
    assert value(text, 'agentmon_disk_io_time_seconds_total{device="sda"}') == 9653.88


def test_diskstats_custom_exclude(procfs):
    c = DiskstatsCollector("agentmon", DiskstatsOptions(device_exclude=re.compile("^nvme")))
    text = render_text(c.collect()).decode()
    assert 'device="sda1"' in text and 'device="nvme0n1"' not in text


def test_netdev_golden_excludes_lo(procfs):
    text = golden("netdev", NetdevCollector("agentmon"))
    assert 'device="lo"' not in text
    assert value(text, 'agentmon_network_receive_bytes_total{device="eth0"}') == 68210035552
    assert value(text, 'agentmon_network_transmit_drop_total{device="eth0"}') == 2


def test_netdev_include(procfs):
    c = NetdevCollector("agentmon", NetdevOptions(device_exclude=None, device_include=re.compile("^(lo|eth)")))
    text = render_text(c.collect()).decode()
    assert 'device="lo"' in text and 'device="eth0"' in text and "docker0" not in text


Part = namedtuple("sdiskpart", "device mountpoint fstype opts")
Statvfs = namedtuple("statvfs", "f_bsize f_frsize f_blocks f_bfree f_bavail f_files f_ffree f_favail f_flag f_namemax")


def fake_mounts(monkeypatch):
    parts = [
        Part("/dev/sda2", "/", "ext4", "rw,relatime"),
        Part("proc", "/proc", "proc", "rw"),
        Part("sysfs", "/sys", "sysfs", "rw"),
        Part("tmpfs", "/run", "tmpfs", "rw"),
        Part("overlay", "/var/lib/docker/overlay2/abc/merged", "overlay", "rw"),
        Part("/dev/sdb1", "/data", "xfs", "rw"),
        Part("/dev/sdb1", "/data", "xfs", "rw"),  # bind-mounted twice: reported once
        Part("nfs:/export", "/mnt/gone", "nfs4", "rw"),
    ]
    monkeypatch.setattr(psutil, "disk_partitions", lambda all=False: parts)
    sizes = {
        "/": Statvfs(4096, 4096, 1000, 400, 350, 6000, 5000, 5000, 0, 255),
        "/run": Statvfs(4096, 4096, 100, 90, 90, 200, 150, 150, 0, 255),
        "/data": Statvfs(4096, 4096, 2000, 1000, 1000, 8000, 7000, 7000, 0, 255),
    }

    def statvfs(path):
        if path not in sizes:
            raise OSError(116, "Stale file handle")
        return sizes[path]

    return statvfs


def test_filesystem_golden(monkeypatch):
    statvfs = fake_mounts(monkeypatch)
    text = golden("filesystem", FilesystemCollector("agentmon", statvfs=statvfs))
    assert value(text, 'agentmon_filesystem_size_bytes{device="/dev/sda2",fstype="ext4",mountpoint="/"}') == 1000 * 4096
    assert value(text, 'agentmon_filesystem_avail_bytes{device="/dev/sda2",fstype="ext4",mountpoint="/"}') == 350 * 4096
    assert value(text, 'agentmon_filesystem_files_free{device="/dev/sdb1",fstype="xfs",mountpoint="/data"}') == 7000
    assert "/proc" not in text and "/sys" not in text and "docker" not in text
    assert text.count('mountpoint="/data"') == 5  # one series per metric, the duplicate mount dropped
    assert "/mnt/gone" not in text  # statvfs failed: skipped, not a collector failure


def test_filesystem_custom_excludes(monkeypatch):
    statvfs = fake_mounts(monkeypatch)
    opts = FilesystemOptions(mount_points_exclude=re.compile("^/data$"), fs_types_exclude=re.compile("^(proc|sysfs|overlay|tmpfs)$"))
    text = render_text(FilesystemCollector("agentmon", opts, statvfs=statvfs).collect()).decode()
    assert 'mountpoint="/data"' not in text and 'mountpoint="/run"' not in text and 'mountpoint="/"' in text


@pytest.fixture
def child():
    """A real process to watch: `python -c` sleeping, with a recognisable command line."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "agentmon-test-agent"])
    yield proc
    proc.kill()
    proc.wait()


def test_process_by_pid(child):
    text = render_text(ProcessCollector("agentmon", ProcessOptions(pid=child.pid)).collect()).decode()
    assert value(text, "agentmon_agent_process_up") == 1
    assert value(text, "agentmon_agent_process_threads") >= 1
    assert value(text, "agentmon_agent_process_resident_memory_bytes") > 0
    assert abs(value(text, "agentmon_agent_process_start_time_seconds") - psutil.Process(child.pid).create_time()) < 1
    assert 'agentmon_agent_process_cpu_seconds_total{mode="user"}' in text


def test_process_pidfile_follows_restart(tmp_path, child):
    pidfile = tmp_path / "agent.pid"
    pidfile.write_text(f"{child.pid}\n")
    c = ProcessCollector("agentmon", ProcessOptions(pidfile=str(pidfile)))
    assert value(render_text(c.collect()).decode(), "agentmon_agent_process_up") == 1
    child.kill()
    child.wait()
    assert value(render_text(c.collect()).decode(), "agentmon_agent_process_up") == 0
    new = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pidfile.write_text(f"{new.pid}\n")
        assert value(render_text(c.collect()).decode(), "agentmon_agent_process_up") == 1
        assert c.process().pid == new.pid
    finally:
        new.kill()
        new.wait()


def test_process_by_cmdline_caches_and_reresolves(child, monkeypatch):
    c = ProcessCollector("agentmon", ProcessOptions(cmdline=re.compile("agentmon-test-agent")))
    assert value(render_text(c.collect()).decode(), "agentmon_agent_process_up") == 1
    assert c.process().pid == child.pid
    scans = []
    real_iter = psutil.process_iter
    monkeypatch.setattr(psutil, "process_iter", lambda *a, **k: scans.append(1) or real_iter(*a, **k))
    for _ in range(3):
        render_text(c.collect())
    assert scans == []  # cached while alive: no process-table scan per scrape
    child.kill()
    child.wait()
    assert value(render_text(c.collect()).decode(), "agentmon_agent_process_up") == 0
    assert scans  # re-resolved once it died


def test_process_by_name(child):
    name = psutil.Process(child.pid).name()
    c = ProcessCollector("agentmon", ProcessOptions(name=re.compile(re.escape(name))))
    assert value(render_text(c.collect()).decode(), "agentmon_agent_process_up") == 1
    assert c.process().pid != os.getpid()


def test_process_unconfigured_emits_nothing():
    assert list(ProcessCollector("agentmon").collect()) == []


def test_failing_collector_is_isolated():
    class Broken:
        name = "broken"

        def collect(self):
            raise OSError("boom")

    ok = run_timed("loadavg", LoadavgCollector("agentmon").collect)
    bad = run_timed("broken", Broken().collect)
    assert ok.success and ok.families and not bad.success and bad.families == []
    text = render_text(scrape_families("agentmon", [ok, bad])).decode()
    assert 'agentmon_scrape_collector_success{collector="broken"} 0.0' in text
    assert 'agentmon_scrape_collector_success{collector="loadavg"} 1.0' in text
    assert 'agentmon_scrape_collector_duration_seconds{collector="broken"}' in text


def test_registry_builds_enabled_in_order():
    names = [c.name for c in build_collectors(["time", "cpu"], "ns")]
    assert names == ["cpu", "time"]
    assert set(AVAILABLE) == {"cpu", "memory", "filesystem", "diskstats", "netdev", "loadavg", "time", "process"}
    with pytest.raises(ValueError, match="unknown collector"):
        build_collectors(["nope"], "ns")


def test_real_system_collectors_run_quickly_enough_to_be_useful():
    """Every collector works on this real host (no fixtures) and names metrics with the namespace."""
    for c in build_collectors([n for n in AVAILABLE if n != "process"], "agentmon"):
        t0 = time.perf_counter()
        fams = list(c.collect())
        assert fams, c.name
        assert all(f.name.startswith("agentmon_") for f in fams)
        assert time.perf_counter() - t0 < 5


def test_failure_log_warns_once_per_outage(caplog):
    import logging

    from exporter.collectors.timing import CollectorResult, FailureLog

    flog = FailureLog()
    with caplog.at_level(logging.INFO, logger="exporter.collectors"):
        for _ in range(3):
            flog.note([CollectorResult("diskstats", error="OSError: gone")])
        flog.note([CollectorResult("diskstats", error="OSError: other")])
        flog.note([CollectorResult("diskstats", success=True)])
        flog.note([CollectorResult("diskstats", success=True)])
    messages = [(r.levelname, r.getMessage(), getattr(r, "err", None)) for r in caplog.records]
    assert messages == [
        ("WARNING", "collector failed", "OSError: gone"),
        ("WARNING", "collector failed", "OSError: other"),
        ("INFO", "collector recovered", None),
    ]
