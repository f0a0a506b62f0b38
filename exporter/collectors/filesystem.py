"""filesystem: size/free/avail bytes and inode totals per mounted filesystem.

Pseudo filesystems (proc, sysfs, cgroup, overlay, ...) and kernel/container mount points are skipped
with two configurable regexes (defaults follow node_exporter). ``statvfs`` on a hung network mount
blocks, which is why system collectors run in a worker thread with a deadline (server.py)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import psutil
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.collectors.base import CollectorSpec

DEFAULT_MOUNT_POINTS_EXCLUDE = r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
DEFAULT_FS_TYPES_EXCLUDE = (
    r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|efivarfs|fusectl|hugetlbfs|iso9660"
    r"|mqueue|nsfs|overlay|proc|procfs|pstore|ramfs|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$"
)


@dataclass(frozen=True)
class FilesystemOptions:
    mount_points_exclude: re.Pattern = field(default_factory=lambda: re.compile(DEFAULT_MOUNT_POINTS_EXCLUDE))
    fs_types_exclude: re.Pattern = field(default_factory=lambda: re.compile(DEFAULT_FS_TYPES_EXCLUDE))


class FilesystemCollector:
    name = "filesystem"

    def __init__(self, namespace: str, options: FilesystemOptions | None = None, statvfs=os.statvfs):
        self.ns = namespace
        self.options = options or FilesystemOptions()
        self.statvfs = statvfs

    def collect(self) -> Iterator[Metric]:
        labels = ["device", "mountpoint", "fstype"]
        ns = self.ns
        size = GaugeMetricFamily(f"{ns}_filesystem_size_bytes", "Filesystem size in bytes.", labels=labels)
        free = GaugeMetricFamily(f"{ns}_filesystem_free_bytes", "Free bytes, including those reserved for root.", labels=labels)
        avail = GaugeMetricFamily(f"{ns}_filesystem_avail_bytes", "Bytes available to non-root users.", labels=labels)
        files = GaugeMetricFamily(f"{ns}_filesystem_files", "Total inodes.", labels=labels)
        files_free = GaugeMetricFamily(f"{ns}_filesystem_files_free", "Free inodes.", labels=labels)
        seen: set[str] = set()
        mp_ex, fs_ex = self.options.mount_points_exclude, self.options.fs_types_exclude
        for part in psutil.disk_partitions(all=True):
            if part.mountpoint in seen or fs_ex.search(part.fstype) or mp_ex.search(part.mountpoint):
                continue
            seen.add(part.mountpoint)
            try:
                st = self.statvfs(part.mountpoint)
            except OSError:
                continue  # vanished or inaccessible mount; not a collector failure
            lv = [part.device, part.mountpoint, part.fstype]
            size.add_metric(lv, st.f_blocks * st.f_frsize)
            free.add_metric(lv, st.f_bfree * st.f_frsize)
            avail.add_metric(lv, st.f_bavail * st.f_frsize)
            files.add_metric(lv, st.f_files)
            files_free.add_metric(lv, st.f_ffree)
        yield from (size, free, avail, files, files_free)


SPEC = CollectorSpec(
    "filesystem", True, "filesystem sizes and inodes per mount point", FilesystemCollector, FilesystemOptions,
    may_block=True,
)
