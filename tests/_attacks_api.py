"""Attacks on the API edge: a peer that makes py-libp2p fail inside a node's call."""

from __future__ import annotations

from typing import Any

import trio
from _attacker import attack
from libp2p.custom_types import TProtocol


@attack("serve_silent")
async def serve_silent(host: Any, args: dict[str, Any]) -> bool:
    """Answer ``args["protocol"]`` streams by reading what comes and never replying; with
    ``args["reset"]`` true, reset each stream after the first bytes instead."""
    reset = bool(args.get("reset", False))

    async def handler(stream: Any) -> None:
        try:
            await stream.read(65536)
            if reset:
                await stream.reset()
                return
            await trio.sleep_forever()
        except Exception:
            return

    host.set_stream_handler(TProtocol(args["protocol"]), handler)
    return True


@attack("churn")
async def churn(host: Any, args: dict[str, Any]) -> dict[str, int]:
    """Connect to ``args["addr"]`` and disconnect, ``args["times"]`` times, pausing
    ``args["pause"]`` seconds after each; how many connects succeeded and failed."""
    import multiaddr
    from libp2p.peer.peerinfo import info_from_p2p_addr

    info = info_from_p2p_addr(multiaddr.Multiaddr(args["addr"]))
    done = {"connected": 0, "failed": 0}
    for _ in range(int(args.get("times", 10))):
        try:
            with trio.fail_after(float(args.get("timeout", 5))):
                await host.connect(info)
            done["connected"] += 1
        except Exception:
            done["failed"] += 1
        await host.disconnect(info.peer_id)
        await trio.sleep(float(args.get("pause", 0.2)))
    return done
