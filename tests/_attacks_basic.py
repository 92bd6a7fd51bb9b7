"""Basic moves every attacker needs: connect to a victim, send raw frames on a protocol."""

from __future__ import annotations

import contextlib
from typing import Any

import multiaddr
import trio
from _attacker import attack
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr


@attack("connect")
async def connect(host: Any, args: dict[str, Any]) -> str:
    """Connect to ``args["addr"]`` (a full multiaddr); the victim's peer id."""
    info = info_from_p2p_addr(multiaddr.Multiaddr(args["addr"]))
    with trio.fail_after(float(args.get("timeout", 10))):
        await host.connect(info)
    return str(info.peer_id)


@attack("send")
async def send(host: Any, args: dict[str, Any]) -> dict[str, Any]:
    """Open ``args["protocol"]`` to ``args["peer"]``, write ``args["hex"]`` (hex bytes) and
    read what comes back until the stream ends, is reset, or ``args["wait"]`` seconds pass.

    Answers ``{"opened": bool, "reply_hex": str, "ended": "eof" | "reset" | "timeout"}``.
    """
    peer = ID.from_base58(args["peer"])
    reply = b""
    try:
        with trio.fail_after(float(args.get("timeout", 10))):
            stream = await host.new_stream(peer, [TProtocol(args["protocol"])])
    except Exception as exc:
        return {"opened": False, "reply_hex": "", "ended": type(exc).__name__}
    ended = "timeout"
    with trio.move_on_after(float(args.get("wait", 5))):
        try:
            await stream.write(bytes.fromhex(args.get("hex", "")))
            while True:
                chunk = await stream.read(65536)
                if not chunk:
                    ended = "eof"
                    break
                reply += chunk
        except Exception as exc:
            ended = "reset" if "reset" in type(exc).__name__.lower() else type(exc).__name__
    with trio.move_on_after(2):
        with contextlib.suppress(Exception):
            await stream.reset()
    return {"opened": True, "reply_hex": reply.hex(), "ended": ended}
