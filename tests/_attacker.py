"""An attacker in a process of its own: a real py-libp2p host that runs scripted attacks.

The security tests attack a running node from outside its process, the way a hostile
peer on the network would. ``Attacker`` starts ``python tests/_attacker.py`` (optionally
under a prefix such as ``ip netns exec <ns>``); that process builds a host the way ucsdk
builds hosts, listens, prints one JSON line ``{"ready": true, "peer_id": ..., "addrs": [...]}``
and then serves requests, one JSON line each on stdin: ``{"attack": name, "args": {...}}``.
It answers each with one JSON line: ``{"result": ...}`` or ``{"error": "..."}``. When
stdin closes, the host stops and the process exits.

Attacks live in ``tests/_attacks_<area>.py`` modules, each an ``async def`` registered with
:func:`attack`; it gets the attacker's host and the request's arguments and returns
something JSON can encode. Every such module in ``tests/`` is loaded by the attacker.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

AttackFn = Callable[[Any, dict[str, Any]], Awaitable[Any]]
ATTACKS: dict[str, AttackFn] = {}


def attack(name: str) -> Callable[[AttackFn], AttackFn]:
    """Register ``fn`` as the attack called ``name``."""

    def register(fn: AttackFn) -> AttackFn:
        if name in ATTACKS:
            raise ValueError(f"two attacks named {name!r}")
        ATTACKS[name] = fn
        return fn

    return register


class AttackerError(RuntimeError):
    """The attacker process failed, or an attack raised there."""


class Attacker:
    """A hostile peer in a child process; use as a context manager.

    ``prefix`` runs it under another command (``["ip", "netns", "exec", ns]`` in the lab);
    ``listen`` is the multiaddr its host listens on.
    """

    def __init__(
        self,
        listen: str = "/ip4/127.0.0.1/tcp/0",
        prefix: Sequence[str] = (),
        timeout: float = 30.0,
    ) -> None:
        self.listen = listen
        self.prefix = list(prefix)
        self.timeout = timeout
        self.proc: subprocess.Popen[str] | None = None
        self.peer_id = ""
        self.addrs: list[str] = []

    @property
    def addr(self) -> str:
        """The first listen address, with ``/p2p/<id>``."""
        return f"{self.addrs[0]}/p2p/{self.peer_id}"

    def __enter__(self) -> Attacker:
        env = dict(os.environ)
        root = str(HERE.parent)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (root, str(HERE), env.get("PYTHONPATH", "")) if p
        )
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, str(HERE / "_attacker.py"), self.listen],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            ready = self._read(self.timeout)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self.peer_id, self.addrs = ready["peer_id"], ready["addrs"]
        return self

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        import selectors

        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise AttackerError(f"the attacker said nothing within {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AttackerError(f"the attacker exited: {err[-2000:]}")
        return dict(json.loads(line))

    def run(self, name: str, timeout: float = 60.0, **args: Any) -> Any:
        """Run the attack ``name`` with ``args`` there; its result (or AttackerError)."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"attack": name, "args": args}) + "\n")
        self.proc.stdin.flush()
        answer = self._read(timeout)
        if "error" in answer:
            raise AttackerError(f"attack {name!r} failed: {answer['error']}")
        return answer["result"]

    def __exit__(self, *exc_info: object) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()  # our own child, by its handle
            proc.wait(5)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


# ------------------------------------------------------------------ the child process
def _load_attacks() -> None:
    for path in sorted(HERE.glob("_attacks_*.py")):
        importlib.import_module(path.stem)


async def _serve(listen: str, attacks: dict[str, AttackFn]) -> None:
    import multiaddr
    import trio

    from ucsdk.config import ConnectivityConfig
    from ucsdk.host import build_host, disable_auto_dial
    from ucsdk.identity import new_key_pair

    config = ConnectivityConfig.preset("development", enable_mdns=False)
    host = build_host(config, new_key_pair())
    out = sys.stdout
    async with host.run([multiaddr.Multiaddr(listen)]):
        await disable_auto_dial(host)
        addrs = [str(a).split("/p2p/")[0] for a in host.get_addrs()]
        print(json.dumps({"ready": True, "peer_id": host.get_id().to_base58(), "addrs": addrs}))
        out.flush()
        stdin = trio.wrap_file(sys.stdin)
        while True:
            line = await stdin.readline()
            if not line:
                break
            request = json.loads(line)
            try:
                fn = attacks[request["attack"]]
                answer: dict[str, Any] = {"result": await fn(host, request.get("args", {}))}
            except Exception as exc:
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(answer, default=str))
            out.flush()
    with trio.CancelScope(shield=True), trio.move_on_after(5):
        await host.close()


def main(argv: list[str]) -> None:
    import trio

    sys.path[:0] = [str(HERE.parent), str(HERE)]
    # The attack modules register with the module ``_attacker``, not with this script.
    registry = importlib.import_module("_attacker")
    registry._load_attacks()
    trio.run(_serve, argv[0] if argv else "/ip4/127.0.0.1/tcp/0", registry.ATTACKS)


if __name__ == "__main__":
    main(sys.argv[1:])
