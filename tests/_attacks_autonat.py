"""AutoNAT attacks: a lying server that answers OK to every DIAL, and a client that opens
many AutoNAT streams and sends nothing or half a request.

Run in the attacker process (see ``tests/_attacker.py``).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import multiaddr
import trio
from _attacker import attack
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from ucsdk._wire import read_delimited, write_delimited
from ucsdk.proto import AutoNATMessage

AUTONAT = TProtocol("/libp2p/autonat/1.0.0")


@attack("autonat_lying_server")
async def lying_server(host: Any, args: dict[str, Any]) -> int:
    """Serve AutoNAT and answer every DIAL with ``OK`` without dialling anything.

    Set it up before the victim connects, so that identify lists the protocol. Answers how
    many requests it has lied to so far (call again to read the count).
    """
    state = host.__dict__.setdefault("_autonat_lies", {"count": 0, "installed": False})
    if state["installed"]:
        return int(state["count"])

    async def handler(stream: Any) -> None:
        try:
            with trio.fail_after(10):
                request = AutoNATMessage.FromString(await read_delimited(stream, 4096))
                reply = AutoNATMessage(type=1)
                reply.dialResponse.status = 0  # OK
                reply.dialResponse.statusText = "dial back succeeded"
                if request.dial.peer.addrs:
                    reply.dialResponse.addr = request.dial.peer.addrs[0]
                await write_delimited(stream, reply.SerializeToString())
                state["count"] += 1
        except Exception:
            pass
        finally:
            with contextlib.suppress(Exception), trio.move_on_after(2):
                await stream.close()

    host.set_stream_handler(AUTONAT, handler)
    state["installed"] = True
    return 0


@attack("autonat_hold_streams")
async def hold_streams(host: Any, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Open ``args["count"]`` AutoNAT streams to ``args["peer"]`` at once, write
    ``args["hex"]`` (default nothing) on each and hold them until the victim ends them or
    ``args["wait"]`` seconds pass.

    One answer per stream: ``{"opened": bool, "ended": "eof" | "reset" | "timeout" | ...,
    "after_s": seconds from the write until it ended}``.
    """
    peer = ID.from_base58(args["peer"])
    payload = bytes.fromhex(args.get("hex", ""))
    wait = float(args.get("wait", 10))
    results: list[dict[str, Any]] = []
    streams = []
    for _ in range(int(args["count"])):
        try:
            with trio.fail_after(10):
                stream = await host.new_stream(peer, [AUTONAT])
            streams.append(stream)
        except Exception as exc:
            results.append({"opened": False, "ended": type(exc).__name__, "after_s": 0.0})

    async def hold(stream: Any) -> None:
        started = time.monotonic()
        ended = "timeout"
        with trio.move_on_after(wait):
            try:
                if payload:
                    await stream.write(payload)
                while True:
                    if not await stream.read(4096):
                        ended = "eof"
                        break
            except Exception as exc:
                name = type(exc).__name__.lower()
                ended = "reset" if "reset" in name else ("eof" if "eof" in name else name)
        results.append(
            {"opened": True, "ended": ended, "after_s": round(time.monotonic() - started, 2)}
        )
        with contextlib.suppress(Exception), trio.move_on_after(2):
            await stream.reset()

    async with trio.open_nursery() as nursery:
        for stream in streams:
            nursery.start_soon(hold, stream)
    return results


@attack("autonat_ask")
async def ask(host: Any, args: dict[str, Any]) -> dict[str, Any]:
    """A well-behaved client: ask ``args["peer"]`` to dial this host back at its own
    listen addresses. Answers ``{"status": int, "text": str}``."""
    peer = ID.from_base58(args["peer"])
    request = AutoNATMessage(type=0)
    request.dial.peer.id = host.get_id().to_bytes()
    for addr in host.get_addrs():
        request.dial.peer.addrs.append(multiaddr.Multiaddr(str(addr).split("/p2p/")[0]).to_bytes())
    with trio.fail_after(float(args.get("timeout", 30))):
        stream = await host.new_stream(peer, [AUTONAT])
        try:
            await write_delimited(stream, request.SerializeToString())
            reply = AutoNATMessage.FromString(await read_delimited(stream, 4096))
        finally:
            with contextlib.suppress(Exception), trio.move_on_after(2):
                await stream.close()
    return {"status": reply.dialResponse.status, "text": reply.dialResponse.statusText}
