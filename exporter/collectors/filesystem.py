"""filesystem: size/free/avail bytes and inode totals per mounted filesystem.

Pseudo filesystems (proc, sysfs, cgroup, overlay, ...) and kernel/container mount points are skipped
with two configurable regexes (defaults follow node_exporter). ``statvfs`` on a hung network mount
blocks, so while network filesystems are mounted this collector runs in a worker thread under the
scrape deadline (exporter/scrape.py); with local filesystems only it runs inline (~80 µs)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import psutil
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.collectors.base import CollectorSpec

# statvfs can hang on these (dead server); local filesystems answer from the kernel.
NETWORK_FS_TYPES = re.compile(
    r"^(nfs4?|cifs|smb3?|smbfs|ncpfs|ceph|glusterfs|9p|afs|lustre|gpfs|beegfs|ocfs2|gfs2|davfs|fuse\..*)$"
)
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
        # Runs in the worker thread (under the scrape deadline) while network mounts are present;
        # True until the first scrape has seen the mount table.
        self.may_block = True

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
        network = False
        for part in psutil.disk_partitions(all=True):
            if part.mountpoint in seen or fs_ex.search(part.fstype) or mp_ex.search(part.mountpoint):
                continue
            seen.add(part.mountpoint)
            network = network or bool(NETWORK_FS_TYPES.match(part.fstype))
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
        self.may_block = network
        yield from (size, free, avail, files, files_free)


SPEC = CollectorSpec(
    "filesystem", True, "filesystem sizes and inodes per mount point", FilesystemCollector, FilesystemOptions
)
