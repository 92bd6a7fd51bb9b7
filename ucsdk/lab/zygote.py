"""One process per lab that imports ucsdk once and forks a node process per host.

Starting Python and importing py-libp2p, trio, cryptography and pandas costs about a CPU
second and 100 MB per process. A lab's :class:`Zygote` starts a Python running
:func:`serve` once; it imports everything a lab node needs (no trio loop, no thread),
freezes those objects out of the garbage collector (:func:`gc.freeze`, so collections in
the children do not write to the shared pages), and waits. For each host the lab makes two
pipes (requests, answers) and opens the host's log, and sends the three descriptors to the
zygote over a ``SOCK_SEQPACKET`` socket (``SCM_RIGHTS``). The zygote forks; the child
enters the host's network namespace with ``setns(2)`` on ``/var/run/netns/<ns>``, points
its stdout and stderr at the log and runs :func:`ucsdk.lab.agent.run`. The zygote answers
with the child's pid, and later with its exit status once it has reaped it: the node
processes are the zygote's children, not the lab's, so :class:`ForkedProcess` gives the lab
what :class:`subprocess.Popen` gave it (``pid``, ``poll``, ``wait``, ``kill``, ``stdin``,
``stdout``).

What ``ip netns exec`` does beyond ``setns`` and why a node does not need it: it also
unshares the mount namespace to mount a ``/sys`` of the namespace (``/sys/class/net``)
and bind-mounts ``/etc/netns/<ns>/*`` over ``/etc``. Neither ucsdk nor py-libp2p reads
``/sys``, the lab writes nothing under ``/etc/netns``, and the interfaces, addresses,
routes and sockets a node sees come from the network namespace itself (netlink, ``ioctl``,
``/proc/self/net``), which ``setns`` switches.

Life cycle: the zygote exits when its socket closes (the lab stopped, or the lab's process
died); a node exits when its request pipe closes, as before, whoever holds it.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import traceback
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any

from ucsdk import errors
from ucsdk.lab.net import NETNS_DIR

logger = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
PR_SET_NAME = 15
# The exit status of a node whose zygote ended before reaping it (the status is lost).
UNKNOWN_EXIT = 255
_MAX_MESSAGE = 1 << 20
# Not ``-m ucsdk.lab.zygote``: ``ucsdk.lab`` imports this module first, and runpy warns.
_MAIN = "import sys; from ucsdk.lab.zygote import serve; sys.exit(serve(int(sys.argv[1])))"
# Imported by the zygote so the children share them: the agent, the node and what a node
# imports only once it runs (found by diffing sys.modules around a node's life).
PRELOAD = (
    "ucsdk",
    "ucsdk.lab.agent",
    "ucsdk.apps.uc",
    "anyio._backends._trio",
    "anyio._core._resources",
    "anyio._core._sockets",
    "anyio._core._streams",
    "anyio.abc._eventloop",
    "anyio.abc._sockets",
    "anyio.abc._subprocesses",
    "anyio.abc._testing",
    "anyio.streams.stapled",
    "anyio.streams.tls",
    "anyio.to_thread",
    "multiaddr.codecs.cid",
)


def setns(path: str) -> None:
    """Move the calling thread (the only one, in a fresh child) into the network namespace
    at ``path`` (Python 3.11 has no ``os.setns``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def _set_name(name: str) -> None:
    """The process's name in ``ps``/``top`` (its command line stays the zygote's)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


# ---------------------------------------------------------------- the lab's side
class ForkedProcess:
    """A node process forked by the zygote, seen from the lab (like ``subprocess.Popen``)."""

    def __init__(self, zygote: Zygote, stdin: IO[bytes], stdout: IO[bytes]) -> None:
        self._zygote = zygote
        self.stdin: IO[bytes] | None = stdin
        self.stdout: IO[bytes] | None = stdout
        self._pid: Future[int] = Future()
        self._exited = threading.Event()
        self.returncode: int | None = None

    @property
    def pid(self) -> int:
        """The process id (waits for the fork if the zygote is still starting)."""
        try:
            return self._pid.result(120)
        except TimeoutError:
            raise errors.Timeout("forking a lab node", 120) from None

    def _set_exit(self, code: int) -> None:
        self.returncode = code
        self._exited.set()

    def poll(self) -> int | None:
        """The exit status once the process ended, else ``None``."""
        if not self._exited.is_set() and self._zygote._gone.is_set():
            # The zygote cannot report any more: look at the process itself.
            forked = self._pid.done() and self._pid.exception() is None
            if not forked or not _alive(self._pid.result()):
                self._set_exit(UNKNOWN_EXIT)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit status (``subprocess.TimeoutExpired`` after ``timeout``)."""
        deadline = None if timeout is None else _now() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - _now()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired("lab node", timeout or 0.0)
            self._exited.wait(0.1 if left is None else min(0.1, left))
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None and self._pid.done() and self._pid.exception() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid.result(), sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _now() -> float:
    import time

    return time.monotonic()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


class Zygote:
    """The lab's side of its zygote process: :meth:`spawn` forks a node into a namespace."""

    def __init__(self, log_path: Path) -> None:
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with open(log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _MAIN, str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        theirs.close()
        self.pid = self._proc.pid
        self._lock = threading.Lock()
        self._next = 0
        self._forking: dict[int, ForkedProcess] = {}
        self._children: dict[int, ForkedProcess] = {}
        self._gone = threading.Event()
        self._stopping = False
        self._log_path = log_path
        self._reader = threading.Thread(target=self._read, name="ucsdk-lab-zygote", daemon=True)
        self._reader.start()

    @property
    def running(self) -> bool:
        """Whether the zygote still answers (it ends when its socket closes)."""
        return not self._gone.is_set()

    def spawn(self, host: str, ns: str, config: dict[str, Any], log_path: Path) -> ForkedProcess:
        """Fork host ``host``'s node process into namespace ``ns`` running ``config``."""
        req_r, req_w = os.pipe()
        ans_r, ans_w = os.pipe()
        log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        proc = ForkedProcess(self, os.fdopen(req_w, "wb"), os.fdopen(ans_r, "rb"))
        try:
            with self._lock:
                if self._gone.is_set():
                    raise errors.LabError("lab zygote", "ProcessExited", "it is not running")
                self._next += 1
                self._forking[self._next] = proc
                message = json.dumps({"id": self._next, "host": host, "ns": ns, "config": config})
                try:
                    socket.send_fds(self._sock, [message.encode()], [req_r, ans_w, log_fd])
                except OSError as exc:
                    self._forking.pop(self._next, None)
                    raise errors.LabError("lab zygote", "ProcessExited", str(exc)) from exc
        except BaseException:
            for f in (proc.stdin, proc.stdout):
                if f is not None:
                    f.close()
            raise
        finally:
            for fd in (req_r, ans_w, log_fd):
                os.close(fd)
        return proc

    def _read(self) -> None:
        while True:
            try:
                data = self._sock.recv(_MAX_MESSAGE)
            except OSError:
                data = b""
            if not data:
                break
            kind, number, value = json.loads(data)
            with self._lock:
                proc = self._forking.pop(number, None) if kind != "exited" else None
                if kind == "forked" and proc is not None:
                    self._children[value] = proc
                    proc._pid.set_result(value)
                elif kind == "failed" and proc is not None:
                    proc._pid.set_exception(errors.LabError("lab zygote", "ForkFailed", value))
                    proc._set_exit(1)
                elif kind == "exited":
                    gone = self._children.pop(number, None)
                    if gone is not None:
                        gone._set_exit(value)
        self._gone.set()
        if not self._stopping:
            logger.warning(
                "lab zygote %d ended on its own (exit %s); log: %s",
                self.pid,
                self._proc.poll(),
                self._log_path,
            )
        with self._lock:
            for proc in self._forking.values():
                proc._pid.set_exception(
                    errors.LabError("lab zygote", "ProcessExited", "it ended before forking")
                )
            self._forking.clear()

    def stop(self, timeout: float = 5.0) -> None:
        """End the zygote (its socket closes; nodes still running keep running)."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(3)
        self._reader.join(timeout=5)
        self._sock.close()


# ---------------------------------------------------------------- the zygote's side
def _child(
    sock: socket.socket, wake: tuple[int, int], request: dict[str, Any], fds: list[int]
) -> None:
    """In the forked child: enter the namespace, run the node, never return."""
    code = 1
    try:
        sock.close()
        for fd in wake:
            os.close(fd)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        req_r, ans_w, log_fd = fds
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        setns(os.path.join(NETNS_DIR, request["ns"]))
        _set_name(f"lab-{request.get('host', 'node')}")
        from ucsdk.lab import agent

        with os.fdopen(req_r, "rb") as requests, os.fdopen(ans_w, "wb") as answers:
            code = agent.run(request["config"], requests, answers)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(BaseException):
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _send(sock: socket.socket, kind: str, number: int, value: Any) -> None:
    with contextlib.suppress(OSError):
        sock.send(json.dumps([kind, number, value]).encode())


def serve(fd: int) -> int:
    """The zygote's loop: fork on request, report exits, end when the lab's socket closes."""
    sock = socket.socket(fileno=fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the lab, not its zygote
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError as exc:  # an optional extra not installed
            print(f"zygote: not preloaded: {name}: {exc}", file=sys.stderr)
    if threading.active_count() != 1:
        print(f"zygote: {threading.active_count()} threads before forking", file=sys.stderr)
    gc.collect()
    gc.freeze()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    listening = sock.fileno()
    while True:
        ready, _, _ = select.select([listening, wake_r], [], [])
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
            _reap(sock)
        if listening not in ready:
            continue
        try:
            data, fds, _, _ = socket.recv_fds(sock, _MAX_MESSAGE, 3)
        except OSError:
            data, fds = b"", []
        if not data:
            break
        request = json.loads(data)
        if len(fds) != 3:
            for extra in fds:
                os.close(extra)
            _send(sock, "failed", request["id"], f"expected 3 descriptors, got {len(fds)}")
            continue
        try:
            pid = os.fork()
        except OSError as exc:
            _send(sock, "failed", request["id"], str(exc))
            pid = -1
        if pid == 0:
            _child(sock, (wake_r, wake_w), request, fds)
        for extra in fds:
            os.close(extra)
        if pid > 0:
            _send(sock, "forked", request["id"], pid)
        _reap(sock)
    sock.close()
    return 0


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(sock, "exited", pid, os.waitstatus_to_exitcode(status))
