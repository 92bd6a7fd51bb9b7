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
