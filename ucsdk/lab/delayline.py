"""A user-space delay line: latency, jitter, loss and a bandwidth cap on a lab link, without
the kernel's netem.

The lab splices a small "wire" namespace into a host's link (see
:func:`ucsdk.lab.net.splice_wire`): the host's cable ends on ``down0`` there, the router's
(or the internet's) on ``up0``. This module, run as a script inside that namespace, bridges
the two at layer 2 with ``AF_PACKET`` sockets: each frame read on one side is written to the
other once its time comes. Standard library only, so the lab starts it as a plain script
(no ucsdk import, about 30 ms) in a process of its own.

Per direction, for a frame that arrives at time ``t``:

- the bottleneck: with ``bandwidth_mbps`` the frame leaves the queue at
  ``max(t, link free) + size / rate``; a frame that would wait longer than the queue holds
  (:data:`QUEUE_MS`) is dropped (drop-tail);
- then the one-way delay: ``latency_ms / 2`` plus a uniform draw in ``±jitter_ms / 2``, so
  a round trip through the line varies by at most ``±jitter_ms`` around ``latency_ms``;
- frames never overtake each other (a release is never earlier than the one before);
- ``loss_percent`` drops that share of the frames the host sends (``down0`` → ``up0``),
  at random, as ``tc netem loss`` on the host's interface would.

The sockets use ``PACKET_VNET_HDR``: every frame carries a virtio-net header with its
checksum and segmentation state, written back out unchanged, so a veth's offloaded
checksums and TSO super-frames pass through intact (without it, frames with unfinished
checksums would be dropped by the receiver).

Parameters are a JSON object in a control file; ``SIGHUP`` makes the line read it again.
The line reports on stdout, one JSON object per line: ``{"ready": pid}`` once its sockets
are open, ``{"applied": seq}`` after each reading of the file (``seq`` from the file), and
``{"counters": ...}`` when ``SIGTERM`` ends it.

Example:
    >>> line = Direction()
    >>> line.set(latency_ms=20, bandwidth_mbps=8)
    >>> round(line.release(now=0.0, size=1000) * 1000, 3)  # 1 ms on the wire + 10 ms
    11.0
    >>> round(line.release(now=0.0, size=1000) * 1000, 3)  # queued behind the first
    12.0
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import select
import signal
import socket
import sys
import time
from typing import Any

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_OUTGOING = 4
VNET_HDR_LEN = 10
#: The most a frame may wait in the bottleneck queue before it is dropped.
QUEUE_MS = 100.0
#: Frames read per side per wake-up, so one busy side cannot starve the other.
BATCH = 64
PARAMS = ("latency_ms", "jitter_ms", "loss_percent", "bandwidth_mbps")


class Direction:
    """One direction of the line: its parameters, queue state and counters."""

    def __init__(self, *, lossy: bool = False, rng: random.Random | None = None) -> None:
        self.lossy = lossy
        self.rng = rng or random.Random()
        self.delay = 0.0
        self.jitter = 0.0
        self.loss = 0.0
        self.rate = 0.0  # bytes per second; 0 is unlimited
        self.link_free = 0.0
        self.last_release = 0.0
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.forwarded = 0
        self.lost = 0
        self.overflow = 0
        self.late = 0.0

    def set(
        self,
        latency_ms: float | None = None,
        jitter_ms: float | None = None,
        loss_percent: float | None = None,
        bandwidth_mbps: float | None = None,
    ) -> None:
        self.delay = (latency_ms or 0.0) / 2000.0
        self.jitter = (jitter_ms or 0.0) / 2000.0
        self.loss = (loss_percent or 0.0) / 100.0 if self.lossy else 0.0
        self.rate = (bandwidth_mbps or 0.0) * 1e6 / 8

    def release(self, now: float, size: int) -> float | None:
        """When a frame of ``size`` bytes arriving at ``now`` leaves, or ``None`` (dropped)."""
        if self.loss and self.rng.random() < self.loss:
            self.lost += 1
            return None
        depart = now
        if self.rate:
            start = max(now, self.link_free)
            if start - now > QUEUE_MS / 1000.0:
                self.overflow += 1
                return None
            depart = self.link_free = start + size / self.rate
        delay = self.delay
        if self.jitter:
            delay = max(0.0, delay + self.rng.uniform(-self.jitter, self.jitter))
        at = max(depart + delay, self.last_release)
        self.last_release = at
        return at

    def counters(self) -> dict[str, float]:
        late_ms = round(self.late * 1000 / max(1, self.forwarded), 3)
        return {
            "forwarded": self.forwarded,
            "lost": self.lost,
            "overflow": self.overflow,
            "late_ms_mean": late_ms,
        }


def _open(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.bind((ifname, ETH_P_ALL))
    sock.setblocking(False)
    return sock


def _read_params(path: str) -> tuple[dict[str, Any], int]:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    return {k: data.get(k) for k in PARAMS}, int(data.get("seq", 0))


def _say(message: dict[str, Any]) -> None:
    """One JSON line to the lab (stdout): ready, each applied setting, the counters."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def serve(host_side: str, far_side: str, control: str) -> dict[str, Any]:
    """Bridge ``host_side`` and ``far_side`` until SIGTERM; the counters at the end."""
    up = Direction(lossy=True)  # host_side -> far_side: what the host sends
    down = Direction()
    reload = [True]
    stopping = [False]
    # A signal wakes select() through this pair (PEP 475 would resume the sleep).
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    signal.signal(signal.SIGHUP, lambda *_: reload.__setitem__(0, True))
    signal.signal(signal.SIGTERM, lambda *_: stopping.__setitem__(0, True))
    signal.signal(signal.SIGINT, lambda *_: stopping.__setitem__(0, True))
    near, far = _open(host_side), _open(far_side)
    routes = {near.fileno(): (near, far, up), far.fileno(): (far, near, down)}
    fds = [*routes, wake_r.fileno()]
    _say({"ready": os.getpid()})
    errors = 0
    try:
        while not stopping[0]:
            if reload[0]:
                reload[0] = False
                params, seq = _read_params(control)
                up.set(**params)
                down.set(**params)
                _say({"applied": seq})
            now = time.monotonic()
            # Release every frame whose time has come.
            for dst, line in ((far, up), (near, down)):
                queue = line.queue
                while queue and queue[0][0] <= now:
                    try:
                        due, frame = queue.popleft()
                        dst.send(frame)
                        line.forwarded += 1
                        line.late += now - due
                    except BlockingIOError:
                        break
                    except OSError:
                        errors += 1
            waits = [line.queue[0][0] - now for line in (up, down) if line.queue]
            # select() sleeps to the microsecond (epoll only to the millisecond); the
            # kernel lets a sleep run 0.1 % long: wake a little early and look again.
            timeout = max(0.0, min(waits) * 0.99) if waits else 0.2
            try:
                ready, _, _ = select.select(fds, [], [], timeout)
            except InterruptedError:
                continue
            for fd in ready:
                if fd == wake_r.fileno():
                    with contextlib.suppress(OSError):
                        wake_r.recv(512)
                    continue
                src, _dst, line = routes[fd]
                for _ in range(BATCH):
                    try:
                        data, addr = src.recvfrom(70000)
                    except (BlockingIOError, InterruptedError):
                        break
                    if addr[2] == PACKET_OUTGOING:
                        continue  # our own writes, seen again on the way out
                    at = line.release(time.monotonic(), len(data) - VNET_HDR_LEN)
                    if at is not None:
                        line.queue.append((at, data))
    finally:
        near.close()
        far.close()
        wake_r.close()
        wake_w.close()
    return {"up": up.counters(), "down": down.counters(), "send_errors": errors}


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print("usage: delayline.py HOST_SIDE_IF FAR_SIDE_IF CONTROL_JSON", file=sys.stderr)
        return 2
    _say({"counters": serve(argv[1], argv[2], argv[3])})
    return 0


if __name__ == "__main__":
    if os.geteuid() == 0:
        os.nice(-5)  # ahead of the node processes it carries traffic for
    sys.exit(main(sys.argv))
