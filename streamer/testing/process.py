"""Child processes for local services: free ports, deadline polling, start and stop.

Every service manager in this package is built on :class:`ManagedProcess`: it starts
exactly one executable with its output going to a log file in the manager's own
directory, and stops only that process (SIGTERM, then SIGKILL after a grace period).
Readiness is always a real probe polled against a deadline by :func:`wait_until`;
a timeout names what did not become ready and quotes the tail of the process log.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

logger = logging.getLogger(__name__)

_LOG_TAIL_LINES = 40
_PR_SET_PDEATHSIG = 1


class ServiceError(RuntimeError):
    """Base of every error raised while starting or stopping a local test service."""


class MissingBinaryError(ServiceError):
    """A service executable is not installed; ``hint`` says what to install."""

    def __init__(self, binary: str, hint: str) -> None:
        self.binary = binary
        self.hint = hint
        super().__init__(f"executable {binary!r} not found: {hint}")


class ServiceNotReadyError(ServiceError, TimeoutError):
    """A readiness probe did not succeed before its deadline (or the process died)."""

    def __init__(self, what: str, detail: str, log_tail: str = "") -> None:
        self.what = what
        self.detail = detail
        self.log_tail = log_tail
        message = f"{what} did not become ready: {detail}"
        if log_tail:
            message += f"\n--- last lines of the process log ---\n{log_tail}"
        super().__init__(message)


_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that is free now and not handed out before by this process.

    The port is only free at the time of the call: another process may take it before
    the service binds it. Never returning the same port twice keeps the managers of
    one test session from colliding with each other.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        with _handed_out_lock:
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise ServiceError(f"no free TCP port found on {host}")


def log_tail(path: Path | None, lines: int = _LOG_TAIL_LINES) -> str:
    """Return the last ``lines`` lines of a log file, or ``""`` if it does not exist."""
    if path is None or not path.exists():
        return ""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 64 * 1024))
        data = handle.read()
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    interval: float = 0.05,
    log_path: Path | None = None,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Call ``predicate`` until it returns True; raise :class:`ServiceNotReadyError` at the deadline.

    An exception from ``predicate`` counts as "not yet" and is quoted in the error if
    the deadline passes. If ``process`` is given and exits, waiting stops at once.
    The error message names ``what`` and includes the tail of ``log_path``.
    """
    deadline = time.monotonic() + timeout
    last_problem = "the probe never succeeded"
    while True:
        if process is not None and process.poll() is not None:
            raise ServiceNotReadyError(
                what, f"the process exited with code {process.returncode}", log_tail(log_path)
            )
        try:
            if predicate():
                return
            last_problem = "the probe returned False"
        except Exception as exc:  # any probe failure means "not ready yet"
            last_problem = f"last probe error: {type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise ServiceNotReadyError(
                what, f"not ready after {timeout:.1f}s ({last_problem})", log_tail(log_path)
            )
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def find_binary(name: str, hint: str) -> str:
    """Return the absolute path of executable ``name`` on PATH or raise :class:`MissingBinaryError`."""
    path = shutil.which(name)
    if path is None:
        raise MissingBinaryError(name, hint)
    return path


def _load_prctl() -> Callable[..., int] | None:
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


# Resolved in the parent: the child must not dlopen between fork and exec.
_prctl = _load_prctl()


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask Linux to SIGTERM the child when
    # the thread that started it dies, so a crashed or kill -9'ed test run leaves
    # no brokers behind. Best effort; where prctl is missing it is skipped.
    if _prctl is not None:
        with contextlib.suppress(Exception):
            _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_running: weakref.WeakSet[ManagedProcess] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    for proc in list(_running):
        proc.stop()


class ManagedProcess:
    """One child process with its log file; stops only the process it started.

    ``die_with_parent`` asks the kernel to SIGTERM the child when the *thread* that
    started it exits; start services from a long-lived thread (the main thread in
    pytest and the CLI).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        die_with_parent: bool = True,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.cwd = cwd
        self.env = env
        self.die_with_parent = die_with_parent
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._popen is None else self._popen.pid

    @property
    def popen(self) -> subprocess.Popen[bytes] | None:
        return self._popen

    def start(self) -> None:
        if self._popen is not None:
            raise ServiceError(f"{self.name} is already started (pid {self._popen.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        logger.debug("starting %s: %s", self.name, " ".join(self.argv))
        try:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=self.env,
                preexec_fn=_die_with_parent if self.die_with_parent else None,
            )
        except OSError:
            self._log.close()
            self._log = None
            raise
        _running.add(self)

    def is_running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def wait_ready(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """:func:`wait_until` bound to this process: stops early if it exits, quotes its log."""
        wait_until(predicate, timeout, what, log_path=self.log_path, process=self._popen)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        return log_tail(self.log_path, lines)

    def kill(self) -> int | None:
        """SIGKILL the process at once (a crash, no shutdown handlers); return its exit code."""
        if self._popen is not None and self._popen.poll() is None:
            self._popen.kill()
        return self.stop()

    def stop(self, grace: float = 10.0) -> int | None:
        """Terminate the process, kill it after ``grace`` seconds; return its exit code."""
        popen, self._popen = self._popen, None
        _running.discard(self)
        code: int | None = None
        if popen is not None:
            if popen.poll() is None:
                popen.terminate()
                try:
                    popen.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    logger.warning("%s (pid %d) ignored SIGTERM; killing it", self.name, popen.pid)
                    popen.kill()
                    popen.wait(timeout=grace)
            code = popen.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code


class ServiceBase:
    """Common shape of a service manager: a work directory, ``start``/``stop``, context manager.

    ``workdir`` defaults to a fresh temporary directory that ``stop`` removes unless
    ``keep_workdir`` is set (useful when a test fails and the logs are wanted).
    """

    service_name = "service"

    def __init__(self, workdir: Path | None = None, *, keep_workdir: bool = False) -> None:
        self._own_workdir = workdir is None
        self._keep_workdir = keep_workdir
        self.workdir = (
            Path(tempfile.mkdtemp(prefix=f"northstar-{self.service_name}-"))
            if workdir is None
            else workdir
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._started = False

    def start(self) -> Self:
        if self._started:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._start()
        except BaseException:
            # The error already quotes the log tail; leave nothing running behind.
            self.stop()
            raise
        self._started = True
        return self

    def stop(self) -> None:
        self._stop()
        self._started = False
        if self._own_workdir and not self._keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _start(self) -> None:
        raise NotImplementedError

    def _stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
