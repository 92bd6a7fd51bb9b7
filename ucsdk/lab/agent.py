"""The process that runs one lab host's ucsdk node inside its network namespace.

Forked by the lab's zygote (:mod:`ucsdk.lab.zygote`), which enters the host's namespace
and calls :func:`run` with the node's configuration (``ConnectivityConfig`` fields plus
``"stun": true`` to answer STUN) and two pipes; ``ip netns exec <ns> python -m
ucsdk.lab.agent CONFIG`` runs the same over stdin/stdout. It talks to the lab with
:mod:`ucsdk.lab.rpc` frames. Requests are
``(call_id, method, args, kwargs)``; answers ``(call_id, True, result)`` or
``(call_id, False, (exception class name, message))``. The first answer, id 0, reports
``{"peer_id", "addrs", "pid"}`` once the node runs (or why it could not start).
The agent exits when asked (``stop``) or when its request pipe closes, which is also what happens
when the lab's process dies: nothing else holds the pipe's other end. (A parent-death
signal would not do: Linux sends it when the *thread* that started the child ends.)
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from ucsdk.lab.rpc import read_frame, write_frame
from ucsdk.lab.stun import StunServer, binding_request

# What a lab may call on the node (the blocking facade's public calls).
NODE_CALLS = frozenset(
    {
        "connect",
        "ping",
        "peers",
        "connections",
        "events",
        "metrics",
        "metrics_history",
        "get_metrics",
        "get_discovered_peers",
        "dial_peer",
        "find_peer",
        "disconnect",
        "provide",
        "find_providers",
        "autonat_reports",
        "probe_nat",
        "reachability",
        "check_reachability",
        "autonat_v2_checks",
        "nat_type",
        "diagnose",
        "reserve",
        "reservations",
        "hole_punches",
        "services",
        "addresses",
        "dial_attempts",
        "resources",
        "subscribe",
        "unsubscribe",
        "publish",
        "topics",
        "messages",
        "wait_for_message",
        "wait_for_subscribers",
    }
)
# What a lab may call on the node's universal-connectivity chat (made on first use).
CHAT_CALLS = frozenset(
    {"send", "dm", "share_file", "fetch_file", "lines", "messages", "wait_for", "peers", "dropped"}
)
CHAT_CALLS_WITH_TIMEOUT = frozenset({"dm", "fetch_file", "wait_for"})


def stun_probe(servers: list[tuple[str, int]], local_port: int = 0) -> list[dict[str, Any]]:
    """From one UDP socket, ask each STUN server which address it sees us as."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("0.0.0.0", local_port))
        local = sock.getsockname()
        rows = []
        for server in servers:
            try:
                ip, port = binding_request(sock, (server[0], int(server[1])))
                rows.append(
                    {
                        "local": f"{local[0]}:{local[1]}",
                        "server": f"{server[0]}:{server[1]}",
                        "mapped": f"{ip}:{port}",
                        "error": None,
                    }
                )
            except Exception as exc:
                rows.append(
                    {
                        "local": f"{local[0]}:{local[1]}",
                        "server": f"{server[0]}:{server[1]}",
                        "mapped": None,
                        "error": str(exc),
                    }
                )
        return rows
    finally:
        sock.close()


def tcp_probe(host: str, port: int, timeout: float = 3.0) -> dict[str, Any]:
    """Open (and close) a plain TCP connection; how it ended."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            local = conn.getsockname()
        return {"ok": True, "local": f"{local[0]}:{local[1]}", "error": None}
    except OSError as exc:
        return {"ok": False, "local": None, "error": f"{type(exc).__name__}: {exc}"}


class Agent:
    def __init__(self, config: dict[str, Any], out: IO[bytes]) -> None:
        self.config = dict(config)
        self.out = out
        self.lock = threading.Lock()
        self.node: Any = None
        self.chat: Any = None
        self.stun: StunServer | None = None
        self.done = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ucsdk-agent")

    def send(self, message: tuple[Any, ...]) -> None:
        with self.lock:
            try:
                write_frame(self.out, message)
            except (BrokenPipeError, ValueError, OSError):
                self.done.set()

    def start(self) -> None:
        import ucsdk

        stun = bool(self.config.pop("stun", False))
        preset = self.config.pop("preset", "development")
        try:
            self.node = ucsdk.Node(ucsdk.ConnectivityConfig.preset(preset, **self.config))
            if stun:
                self.stun = StunServer("0.0.0.0")
                self.stun.start()
        except Exception as exc:
            self.send((0, False, (type(exc).__name__, str(exc))))
            raise SystemExit(3) from exc
        self.send(
            (0, True, {"peer_id": self.node.peer_id, "addrs": self.node.addrs, "pid": os.getpid()})
        )

    def handle(
        self, call_id: int, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        try:
            if method in NODE_CALLS:
                result = getattr(self.node, method)(*args, **kwargs)
            elif method in ("peer_id", "addrs"):
                result = getattr(self.node, method)
            elif method == "chat":
                result = self.chat_call(*args, **kwargs)
            elif method == "stun_probe":
                result = stun_probe(*args, **kwargs)
            elif method == "tcp_probe":
                result = tcp_probe(*args, **kwargs)
            elif method == "stun_stats":
                result = {
                    "answered": self.stun.answered if self.stun else 0,
                    "dropped": self.stun.dropped if self.stun else 0,
                }
            else:
                raise ValueError(f"unknown lab call {method!r}")
        except Exception as exc:
            self.send((call_id, False, (type(exc).__name__, str(exc))))
            return
        try:
            self.send((call_id, True, result))
        except Exception as exc:  # unpicklable result
            self.send((call_id, False, (type(exc).__name__, str(exc))))

    def chat_call(self, call: str, /, *args: Any, timeout: Any = None, **kwargs: Any) -> Any:
        """``call`` on the node's :class:`ucsdk.apps.uc.Chat`, made on the first call."""
        if call not in CHAT_CALLS:
            raise ValueError(f"unknown chat call {call!r}")
        with self.lock:
            if self.chat is None:
                from ucsdk.apps.uc import Chat

                self.chat = Chat(self.node)
        if call in CHAT_CALLS_WITH_TIMEOUT:
            kwargs["timeout"] = timeout
        if call == "dropped":
            return dict(self.chat.dropped)
        return getattr(self.chat, call)(*args, **kwargs)

    def serve(self, stream: IO[bytes]) -> None:
        while not self.done.is_set():
            try:
                request = read_frame(stream)
            except Exception:
                break
            if request is None:
                break
            call_id, method, args, kwargs = request
            if method == "stop":
                self.send((call_id, True, None))
                break
            self.pool.submit(self.handle, call_id, method, args, kwargs)
        self.shutdown()

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.stun is not None:
            self.stun.stop()
        if self.chat is not None:
            self.chat.stop()
        if self.node is not None:
            self.node.stop()


def run(config: dict[str, Any], requests: IO[bytes], answers: IO[bytes]) -> int:
    """Run one lab node: start it, answer ``requests`` on ``answers`` until asked to stop
    or until ``requests`` closes. Logging goes to stderr (the host's log)."""
    logging.basicConfig(
        level=os.environ.get("UCSDK_LAB_LOG", "WARNING"),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    agent = Agent(config, answers)
    agent.start()
    agent.serve(requests)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m ucsdk.lab.agent CONFIG`` (the node's process without a zygote)."""
    argv = sys.argv[1:] if argv is None else argv
    # Frames go to the original stdout; anything printed goes to stderr (the host's log).
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    return run(json.loads(argv[0]) if argv else {}, sys.stdin.buffer, out)


if __name__ == "__main__":
    sys.exit(main())
