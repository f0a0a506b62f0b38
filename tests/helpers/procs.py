"""Start a real binary on a free loopback port, wait until it is ready, stop it by PID.

Why: integration tests run real Prometheus / AlertManager / Pushgateway / our own processes.
They must bind random free ports on 127.0.0.1, fail with the process's own output when it
does not come up, and never leave processes behind. The mechanics (free port, readiness poll,
SIGTERM-then-SIGKILL by PID) are ``agentmon.procs``; this module adds what tests want on top:
a temp log per process whose whole text stays readable after stop, ``ProcessStartError`` with
that text, and the ``processes`` fixture.

Usage::

    from helpers.procs import free_port, start_process

    port = free_port()
    proc = start_process(["prometheus-alertmanager", f"--web.listen-address=127.0.0.1:{port}", ...],
                         ready_url=f"http://127.0.0.1:{port}/-/ready", timeout=20)
    try:
        ...
    finally:
        proc.stop()

or as a context manager: ``with start_process(argv, ready_url) as proc: ...``.

In pytest, the ``processes`` fixture starts any number of processes and stops them all in
teardown; import it into a test module (``from helpers.procs import processes  # noqa: F401``)::

    def test_x(processes):
        am = processes(["prometheus-alertmanager", ...], ready_url=..., timeout=20)
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agentmon import procs as base
from agentmon.procs import free_port

__all__ = ["Proc", "ProcessStartError", "free_port", "processes", "start_process"]


class ProcessStartError(RuntimeError):
    """The process exited or did not become ready in time; the message carries its output."""


@dataclass
class Proc(base.Proc):
    """``agentmon.procs.Proc`` plus what tests read: the whole output (kept after stop) and a temp log."""

    owns_log: bool = False  # a temp log we created: removed by stop(), its text kept for output()
    _final_output: str | None = field(default=None, repr=False)

    def output(self) -> str:
        """Everything the process wrote to stdout/stderr so far (also after stop())."""
        if self._final_output is not None:
            return self._final_output
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def running(self) -> bool:
        return self.alive()

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the process (by its PID only), SIGKILL after ``timeout``; return its exit code.

        Safe to call more than once.
        """
        code = super().stop(timeout)
        if self.owns_log and self._final_output is None:
            self._final_output = self.output()
            self.log_path.unlink(missing_ok=True)
        return code

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_process(
    argv: Sequence[str],
    ready_url: str | None = None,
    timeout: float = 20.0,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    log_path: str | os.PathLike[str] | None = None,
) -> Proc:
    """Start ``argv`` and wait until ``ready_url`` answers 2xx (or, without a URL, until it is running).

    Raises :class:`ProcessStartError` with the process output if it exits early or is not ready
    within ``timeout`` seconds; the process is stopped in that case.
    """
    argv = [str(a) for a in argv]
    owns_log = log_path is None
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix=Path(argv[0]).name + "-", suffix=".log")
        os.close(fd)
        log_path = name
    log_path = Path(log_path)
    full_env = None if env is None else {**os.environ, **env}
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=full_env, cwd=cwd, start_new_session=True,
        )
    proc = Proc(Path(argv[0]).name, argv, popen, log_path, ready_url, dict(env or {}), owns_log=owns_log)
    if ready_url is not None:
        try:
            base.wait_http(ready_url, timeout, proc)
        except (RuntimeError, TimeoutError):
            pass  # reported below with the whole output rather than the log tail
        else:
            return proc
    if popen.poll() is not None:
        proc.stop()
        raise ProcessStartError(f"{argv[0]} exited with code {popen.returncode} before it was ready:\n{proc.output()}")
    if ready_url is None:
        return proc
    proc.stop()
    raise ProcessStartError(f"{argv[0]} not ready at {ready_url} within {timeout:.0f}s:\n{proc.output()}")


@pytest.fixture
def processes():
    """Fixture: a ``start_process``-like callable; every process it started is stopped in teardown."""
    started: list[Proc] = []

    def start(argv: Sequence[str], ready_url: str | None = None, timeout: float = 20.0, **kwargs) -> Proc:
        proc = start_process(argv, ready_url, timeout, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in reversed(started):
        proc.stop()
