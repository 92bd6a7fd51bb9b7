"""Hostile moves against a relay (server and client side) and against what a node keeps
per peer: a target whose STOP handler misbehaves, a source that vanishes mid-circuit,
a relay that lies about who is calling, WebSocket identities that hide their IP,
bloated identify answers and swarms of fresh identities claiming to be relays.

State an attack leaves behind (handlers' observations, held streams) lives in this
module's globals, read back by later attacks in the same attacker process.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import multiaddr
import trio
from _attacker import attack
from libp2p.abc import ConnectionType
from libp2p.identity.identify.pb.identify_pb2 import Identify
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr

from ucsdk._wire import read_delimited, write_delimited
from ucsdk.nat.relay import (
    CONNECT,
    HOP_PROTOCOL,
    OK,
    RESERVE,
    STATUS,
    STOP_CONNECT,
    STOP_PROTOCOL,
    STOP_STATUS,
    sign_voucher,
)
from ucsdk.proto import HopMessage, StopMessage
from ucsdk.protocols import IDENTIFY_PROTOCOL

STOP_SEEN: list[dict[str, Any]] = []
"""What this attacker's STOP handler saw: one dict per STOP stream the relay opened."""
HELD: list[Any] = []
"""Streams an attack keeps open for a later one."""


async def _hop(host: Any, relay: ID, message: Any) -> Any:
    stream = await host.new_stream(relay, [HOP_PROTOCOL])
    with trio.fail_after(10):
        await write_delimited(stream, message.SerializeToString())
        reply = HopMessage.FromString(await read_delimited(stream, 4096))
    return stream, reply


async def _wait_end(stream: Any, limit: float, seen: dict[str, Any]) -> tuple[str, float]:
    """Read until the stream ends, counting bytes in ``seen["bytes"]``;
    ``("eof" | "reset" | "open", seconds)``."""
    start = time.monotonic()
    with trio.move_on_after(limit):
        try:
            while data := await stream.read(65536):
                seen["bytes"] += len(data)
            return "eof", time.monotonic() - start
        except Exception:
            return "reset", time.monotonic() - start
    return "open", time.monotonic() - start


@attack("relay_reserve")
async def relay_reserve(host: Any, args: dict[str, Any]) -> int:
    """Reserve a slot on ``args["relay"]`` (connected already); the relay's status code."""
    stream, reply = await _hop(host, ID.from_base58(args["relay"]), HopMessage(type=RESERVE))
    with contextlib.suppress(Exception):
        await stream.close()
    return int(reply.status)


@attack("stop_handler")
async def stop_handler(host: Any, args: dict[str, Any]) -> bool:
    """Serve STOP as a hostile target. ``args["mode"]``:

    - ``"garbage"``: answer the relay's CONNECT with bytes that are no StopMessage;
    - ``"reset"``: reset the stream as soon as the CONNECT arrived;
    - ``"accept"``: answer OK, then send nothing and keep the stream open.

    Then watch (up to ``args["watch"]`` s) whether the relay ends the stream; each STOP
    stream adds ``{"mode", "ended", "after"}`` to ``STOP_SEEN``.
    """
    mode, watch = args["mode"], float(args.get("watch", 20))

    async def handler(stream: Any) -> None:
        seen: dict[str, Any] = {"mode": mode, "ended": "open", "after": None, "bytes": 0}
        STOP_SEEN.append(seen)
        try:
            with trio.fail_after(10):
                StopMessage.FromString(await read_delimited(stream, 4096))
            if mode == "reset":
                await stream.reset()
                seen["ended"] = "we_reset"
                return
            if mode == "garbage":
                await stream.write(b"\x05\xff\xff\xff\xff\xff")
            else:
                reply = StopMessage(type=STOP_STATUS, status=OK)
                await write_delimited(stream, reply.SerializeToString())
            seen["ended"], seen["after"] = await _wait_end(stream, watch, seen)
        except Exception as exc:
            seen["ended"] = f"error {type(exc).__name__}"

    host.set_stream_handler(STOP_PROTOCOL, handler)
    return True


@attack("stop_seen")
async def stop_seen(host: Any, args: dict[str, Any]) -> list[dict[str, Any]]:
    """What the STOP handler has seen so far."""
    return list(STOP_SEEN)


@attack("hop_connect")
async def hop_connect(host: Any, args: dict[str, Any]) -> dict[str, Any]:
    """Ask ``args["relay"]`` for a circuit to ``args["target"]``; ``args["then"]``:
    ``"hold"`` keeps the stream open (in ``HELD``), ``"disconnect"`` drops the whole
    connection to the relay, ``"reset"`` resets the circuit stream, ``"send"`` writes
    ``args["bytes"]`` bytes into it (answering how many the relay took) and holds it."""
    relay = ID.from_base58(args["relay"])
    request = HopMessage(type=CONNECT)
    request.peer.id = ID.from_base58(args["target"]).to_bytes()
    stream, reply = await _hop(host, relay, request)
    then = args.get("then", "hold")
    if reply.status == OK:
        if then == "disconnect":
            await host.disconnect(relay)
        elif then == "reset":
            await stream.reset()
        elif then == "send":
            HELD.append(stream)
            sent, chunk = 0, b"\x00" * 16384
            with trio.move_on_after(10):
                try:
                    while sent < int(args["bytes"]):
                        await stream.write(chunk)
                        sent += len(chunk)
                except Exception:
                    pass
            return {"status": int(reply.status), "sent": sent}
        else:
            HELD.append(stream)
    return {"status": int(reply.status)}


@attack("fake_relay")
async def fake_relay(host: Any, args: dict[str, Any]) -> bool:
    """Answer every RESERVE with a valid-looking reservation (signed by this host)."""

    async def handler(stream: Any) -> None:
        try:
            message = HopMessage.FromString(await read_delimited(stream, 4096))
            if message.type != RESERVE:
                await stream.reset()
                return
            peer = stream.muxed_conn.peer_id
            expire = int(time.time()) + 3600
            reply = HopMessage(type=STATUS, status=OK)
            reply.reservation.expire = expire
            reply.reservation.addrs.extend(a.to_bytes() for a in host.get_addrs()[:1])
            reply.reservation.voucher = sign_voucher(
                host.get_private_key(), host.get_id(), peer, expire
            )
            await write_delimited(stream, reply.SerializeToString())
            await stream.close()
        except Exception:
            with contextlib.suppress(Exception):
                await stream.reset()

    host.set_stream_handler(HOP_PROTOCOL, handler)
    return True


@attack("stop_as_other")
async def stop_as_other(host: Any, args: dict[str, Any]) -> dict[str, Any]:
    """As a relay the victim reserved on: announce a connection from ``args["claim"]``
    (a peer id) over STOP, then secure it as this host (another peer id).

    Answers the STOP status and whether the victim closed the relayed connection within
    ``args["wait"]`` seconds.
    """
    victim = ID.from_base58(args["victim"])
    stream = await host.new_stream(victim, [STOP_PROTOCOL])
    request = StopMessage(type=STOP_CONNECT)
    request.peer.id = ID.from_base58(args["claim"]).to_bytes()
    with trio.fail_after(10):
        await write_delimited(stream, request.SerializeToString())
        answer = StopMessage.FromString(await read_delimited(stream, 4096))
    if answer.status != OK:
        return {"status": int(answer.status), "closed": None}
    remote = multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/1/p2p/{host.get_id()}/p2p-circuit")
    raw = RawConnection(stream, True, ConnectionType.RELAYED, [remote])
    conn = await host.get_network().upgrade_outbound_raw_conn(raw, victim)
    closed = False
    with trio.move_on_after(float(args.get("wait", 10))):
        while not conn.muxed_conn.is_closed:
            await trio.sleep(0.05)
        closed = True
    with contextlib.suppress(Exception):
        await conn.close()
    return {"status": int(answer.status), "closed": closed}


@contextlib.asynccontextmanager
async def _fresh_host(listen: str, transports: list[str] | None = None) -> Any:
    from ucsdk.config import ConnectivityConfig
    from ucsdk.host import build_host, disable_auto_dial
    from ucsdk.identity import new_key_pair

    extra = {"transports": transports} if transports else {}
    config = ConnectivityConfig.preset("development", enable_mdns=False, **extra)
    fresh = build_host(config, new_key_pair())
    async with fresh.run([multiaddr.Multiaddr(listen)]):
        await disable_auto_dial(fresh)
        try:
            yield fresh
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await fresh.close()


@attack("ws_reserve_flood")
async def ws_reserve_flood(host: Any, args: dict[str, Any]) -> list[int]:
    """``args["count"]`` fresh identities connect over WebSocket to ``args["addr"]`` and
    each asks for a reservation; their status codes (connections kept until all asked)."""
    info = info_from_p2p_addr(multiaddr.Multiaddr(args["addr"]))
    statuses: list[int] = []
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(int(args["count"])):
            fresh = await stack.enter_async_context(
                _fresh_host("/ip4/127.0.0.1/tcp/0/ws", ["tcp", "websocket"])
            )
            with trio.fail_after(10):
                await fresh.connect(info)
            stream, reply = await _hop(fresh, info.peer_id, HopMessage(type=RESERVE))
            with contextlib.suppress(Exception):
                await stream.close()
            statuses.append(int(reply.status))
    return statuses


@attack("claim_relay_flood")
async def claim_relay_flood(host: Any, args: dict[str, Any]) -> int:
    """``args["count"]`` fresh identities, each speaking the relay hop protocol, connect
    to ``args["addr"]``, wait until the victim identified them, and leave; ``args["at_once"]``
    at a time. The number that were identified."""
    info = info_from_p2p_addr(multiaddr.Multiaddr(args["addr"]))
    identified = 0
    limit = trio.Semaphore(int(args.get("at_once", 4)))

    async def one() -> None:
        nonlocal identified
        async with limit, _fresh_host("/ip4/127.0.0.1/tcp/0") as fresh:
            asked = trio.Event()
            from libp2p.identity.identify.identify import identify_handler_for

            answer = identify_handler_for(fresh, True)

            async def on_identify(stream: Any) -> None:
                await answer(stream)
                if stream.muxed_conn.peer_id == info.peer_id:
                    asked.set()

            async def refuse(stream: Any) -> None:
                await stream.reset()

            fresh.set_stream_handler(HOP_PROTOCOL, refuse)
            fresh.set_stream_handler(IDENTIFY_PROTOCOL, on_identify)
            with trio.move_on_after(float(args.get("timeout", 10))):
                await fresh.connect(info)
                # The host's identify and ucsdk's both ask; wait for both answers.
                await asked.wait()
                await trio.sleep(0.3)
                identified += 1

    async with trio.open_nursery() as nursery:
        for _ in range(int(args["count"])):
            nursery.start_soon(one)
    return identified


@attack("bloated_identify")
async def bloated_identify(host: Any, args: dict[str, Any]) -> bool:
    """Answer identify with an ``args["agent"]``-char agent and protocol version,
    ``args["protocols"]`` protocol ids (and ``args["long_protocols"]`` 300-char ones) and
    ``args["addrs"]`` listen addresses."""
    agent = "A" * int(args.get("agent", 65536))
    protocols = [f"/bloat/{i}/1.0.0" for i in range(int(args.get("protocols", 0)))]
    protocols += [f"/long/{i}/" + "x" * 300 for i in range(int(args.get("long_protocols", 0)))]
    addrs = [
        multiaddr.Multiaddr(f"/ip4/10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}/tcp/1")
        for i in range(int(args.get("addrs", 0)))
    ]

    async def handler(stream: Any) -> None:
        message = Identify(
            protocol_version="P" * int(args.get("agent", 65536)),
            agent_version=agent,
            public_key=host.get_public_key().serialize(),
            listen_addrs=[a.to_bytes() for a in addrs],
            protocols=[str(p) for p in host.get_mux().get_protocols() if p] + protocols,
        )
        with contextlib.suppress(Exception):
            await write_delimited(stream, message.SerializeToString())
            await stream.close()

    host.set_stream_handler(IDENTIFY_PROTOCOL, handler)
    return True


@attack("hold_count")
async def hold_count(host: Any, args: dict[str, Any]) -> int:
    """How many held streams there are (and drop them if ``args["drop"]``)."""
    count = len(HELD)
    if args.get("drop"):
        for stream in HELD:
            with contextlib.suppress(Exception):
                await stream.reset()
        HELD.clear()
    return count


@attack("identify_push_bloat")
async def identify_push_bloat(host: Any, args: dict[str, Any]) -> bool:
    """Push (``/ipfs/id/push/1.0.0``) to ``args["peer"]`` an identify update with
    ``args["protocols"]`` protocol ids and ``args["addrs"]`` listen addresses."""
    from libp2p.identity.identify_push.identify_push import ID_PUSH

    message = Identify(
        protocols=[f"/pushed/{i}/1.0.0" for i in range(int(args.get("protocols", 0)))],
        listen_addrs=[
            multiaddr.Multiaddr(f"/ip4/10.9.{i // 256 % 256}.{i % 256}/tcp/1").to_bytes()
            for i in range(int(args.get("addrs", 0)))
        ],
    )
    stream = await host.new_stream(ID.from_base58(args["peer"]), [ID_PUSH])
    with trio.fail_after(10):
        await write_delimited(stream, message.SerializeToString())
    with contextlib.suppress(Exception):
        await stream.close()
    return True
