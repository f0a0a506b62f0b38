"""Start real processes on loopback, wait until they answer, stop them by PID.

Used by the local stack (``make run``), the end-to-end tests and the benchmarks, so every place
that runs Prometheus, AlertManager or our own processes does it the same way.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


@dataclass
class Proc:
    """A started process with its log file; ``stop()`` terminates it (then kills) by PID."""

    name: str
    argv: Sequence[str]
    popen: subprocess.Popen
    log_path: Path
    ready_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.popen.poll() is None:
            try:
                os.kill(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout)
            except ProcessLookupError:
                pass
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL, for crash tests."""
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)


def wait_http(url: str, timeout: float = 30.0, proc: Proc | None = None) -> None:
    """Poll ``url`` until it answers 2xx; fail early (with the log tail) if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if 200 <= resp.status < 300:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.1)
    tail = f"\n{proc.log_tail()}" if proc else ""
    raise TimeoutError(f"{url} not ready after {timeout:g}s ({last}){tail}")


def start_process(
    name: str,
    argv: Sequence[str],
    *,
    log_dir: Path,
    ready_url: str | None = None,
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Proc:
    """Start ``argv`` with stdout+stderr to ``log_dir/<name>.log`` and wait for ``ready_url``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    full_env = {**os.environ, **(env or {})}
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env, cwd=cwd,
            start_new_session=True,
        )
    proc = Proc(name, list(argv), popen, log_path, ready_url, env or {})
    if ready_url:
        try:
            wait_http(ready_url, timeout, proc)
        except BaseException:
            proc.stop()
            raise
    return proc
