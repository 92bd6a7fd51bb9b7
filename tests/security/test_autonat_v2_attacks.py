"""AutoNAT v2 against hostile peers: raw py-libp2p hosts on loopback that speak the
protocols' bytes wrongly on purpose.

- a server asking for absurd dial data is refused by the client (``dial_data_refused``);
- a dial-back with a nonce the client never sent is reset and counted, and proves nothing;
- a request to dial an IP other than the requester's, without the dial data, is dropped at
  the deadline and nothing is dialled (an amplification attempt);
- streams beyond the per-peer cap are reset before reading; garbage is counted; requests
  past the rate limit are rejected (``E_REQUEST_REJECTED``), and each is counted.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.peer.peerinfo import PeerInfo

from ucsdk._wire import read_delimited, write_delimited
from ucsdk.nat.autonat_v2 import (
    DIAL_BACK_PROTOCOL,
    DIAL_REQUEST_PROTOCOL,
    AutoNATv2,
)
from ucsdk.proto import autonat_v2_pb2 as pb

LOOP = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]


def run(body: Callable[[IHost, IHost], Awaitable[Any]]) -> Any:
    """Two connected hosts on loopback, ``body(ours, theirs)`` in between."""

    async def main() -> Any:
        ours, theirs = new_host(), new_host()
        async with ours.run(LOOP), theirs.run(LOOP):
            await theirs.connect(PeerInfo(ours.get_id(), ours.get_addrs()))
            return await body(ours, theirs)

    return trio.run(main)


def own(host: IHost) -> list[str]:
    return [str(a).split("/p2p/")[0] for a in host.get_addrs()]


def test_a_server_asking_for_absurd_dial_data_is_refused() -> None:
    async def body(ours: IHost, theirs: IHost) -> Any:
        async def greedy(stream: INetStream) -> None:
            await read_delimited(stream, 8192)
            ask = pb.Message()
            ask.dialDataRequest.addrIdx = 0
            ask.dialDataRequest.numBytes = 50_000_000
            await write_delimited(stream, ask.SerializeToString())
            await trio.sleep(5)

        theirs.set_stream_handler(DIAL_REQUEST_PROTOCOL, greedy)
        client = AutoNATv2(ours, serve=False, boot_delay=3600)
        await client.start()
        try:
            with trio.fail_after(10):
                check = await client.check(theirs.get_id(), own(ours))
            return check, dict(client.dropped)
        finally:
            await client.stop()

    check, dropped = run(body)
    assert (check.response, check.reachable, check.dial_data) == ("dial_data_refused", None, 0)
    assert dropped["dial_data_refused"] == 1


def test_a_server_asking_again_and_again_gets_at_most_100_kb() -> None:
    async def body(ours: IHost, theirs: IHost) -> Any:
        async def insatiable(stream: INetStream) -> None:
            await read_delimited(stream, 8192)
            for _ in range(100):  # 60 kB, a hundred times over (6 MB in all)
                ask = pb.Message()
                ask.dialDataRequest.addrIdx = 0
                ask.dialDataRequest.numBytes = 60_000
                await write_delimited(stream, ask.SerializeToString())
            await trio.sleep(5)

        theirs.set_stream_handler(DIAL_REQUEST_PROTOCOL, insatiable)
        client = AutoNATv2(ours, serve=False, boot_delay=3600)
        await client.start()
        try:
            with trio.fail_after(10):
                check = await client.check(theirs.get_id(), own(ours))
            return check
        finally:
            await client.stop()

    check = run(body)
    assert check.response == "dial_data_refused"
    assert 60_000 <= check.dial_data <= 100_000, check


def test_a_dial_back_with_a_nonce_never_sent_is_reset_and_proves_nothing() -> None:
    async def body(ours: IHost, theirs: IHost) -> Any:
        client = AutoNATv2(ours, serve=False, boot_delay=3600)
        await client.start()
        try:
            stream = await theirs.new_stream(ours.get_id(), [DIAL_BACK_PROTOCOL])
            await write_delimited(stream, pb.DialBack(nonce=12345).SerializeToString())
            with trio.fail_after(5):
                answered = await stream.read(64)
            return answered, dict(client.dropped), client.reachability()
        except Exception as exc:  # the reset reaches us as an error: that is the answer
            return type(exc).__name__, dict(client.dropped), client.reachability()
        finally:
            await client.stop()

    answered, dropped, rows = run(body)
    assert not answered or isinstance(answered, str), answered  # no DialBackResponse
    assert dropped["dial_back_unknown_nonce"] == 1
    assert rows == []


def test_an_other_ip_without_dial_data_is_not_dialled() -> None:
    """The requester names 127.0.0.2 (not the IP it comes from) and sends no dial data:
    the server waits for it, gives up, counts it, and the victim sees no connection."""
    victim = socket.socket()
    victim.bind(("127.0.0.2", 0))
    victim.listen(8)
    victim.setblocking(False)
    port = victim.getsockname()[1]

    async def body(ours: IHost, theirs: IHost) -> Any:
        server = AutoNATv2(ours, allow_private=True, read_timeout=0.5, boot_delay=3600)
        await server.start()
        try:
            stream = await theirs.new_stream(ours.get_id(), [DIAL_REQUEST_PROTOCOL])
            request = pb.Message()
            request.dialRequest.addrs.append(
                multiaddr.Multiaddr(f"/ip4/127.0.0.2/tcp/{port}").to_bytes()
            )
            request.dialRequest.nonce = 7
            await write_delimited(stream, request.SerializeToString())
            with trio.fail_after(5):
                asked = pb.Message.FromString(await read_delimited(stream, 8192))
            # Say nothing more; the server must give up on its own.
            with trio.fail_after(10):
                while not server.dropped["dial_data_short"]:
                    await trio.sleep(0.05)
            return asked, dict(server.dropped), list(server.served)
        finally:
            await server.stop()

    try:
        asked, dropped, served = run(body)
        try:
            victim.accept()
            dialled = True
        except BlockingIOError:
            dialled = False
    finally:
        victim.close()
    assert asked.WhichOneof("msg") == "dialDataRequest"
    assert 30_000 <= asked.dialDataRequest.numBytes <= 100_000
    assert dropped["dial_data_short"] == 1
    assert not dialled
    assert served == []


def test_floods_garbage_and_the_rate_limit_are_refused_and_counted() -> None:
    async def body(ours: IHost, theirs: IHost) -> Any:
        server = AutoNATv2(
            ours,
            allow_private=True,
            max_streams_per_peer=2,
            rate_limit_per_peer=2,
            read_timeout=1.0,
            boot_delay=3600,
        )
        await server.start()
        try:
            # Two silent streams hold the per-peer cap; a third is reset before reading.
            held = [await theirs.new_stream(ours.get_id(), [DIAL_REQUEST_PROTOCOL]) for _ in "ab"]
            try:  # reset at once: even the protocol negotiation may not finish
                third = await theirs.new_stream(ours.get_id(), [DIAL_REQUEST_PROTOCOL])
                await third.write(b"\x00")
            except Exception:
                pass
            with trio.fail_after(5):
                while not server.dropped["peer_busy"]:
                    await trio.sleep(0.05)
            for stream in held:
                await stream.reset()
            with trio.fail_after(5):
                while server.dropped["read_timeout"] < 2 and sum(server._open.values()):
                    await trio.sleep(0.05)
            garbage = await theirs.new_stream(ours.get_id(), [DIAL_REQUEST_PROTOCOL])
            await garbage.write(b"\x05\xff\xff\xff\xff\xff")
            with trio.fail_after(5):
                while not server.dropped["malformed"]:
                    await trio.sleep(0.05)
            # A well-formed client: served twice, then rejected by the rate limit.
            client = AutoNATv2(theirs, serve=False, boot_delay=3600)
            await client.start()
            try:
                checks = [await client.check(ours.get_id(), own(theirs)) for _ in range(3)]
            finally:
                await client.stop()
            return checks, dict(server.dropped)
        finally:
            await server.stop()

    checks, dropped = run(body)
    assert [c.response for c in checks] == ["OK", "OK", "E_REQUEST_REJECTED"]
    assert [c.reachable for c in checks] == [True, True, None]
    assert dropped["peer_busy"] >= 1 and dropped["malformed"] == 1
    assert dropped["rate_limited"] == 1
