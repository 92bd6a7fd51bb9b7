"""The hardened host: py-libp2p's insecure defaults are closed (each trap is a test)."""

from __future__ import annotations

import contextlib
import logging
import time

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.abc import INetStream
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.security.secio import transport as secio

import ucsdk
from tests._util import wait_for
from ucsdk import ConnectivityConfig
from ucsdk.host import build_host
from ucsdk.identity import new_key_pair


def _dial_with_raw_host(target: str, security: str) -> bool:
    """Dial ``target`` from a plain py-libp2p host offering only ``security``."""
    key_pair = create_new_key_pair()
    if security == "plaintext":
        options = {PLAINTEXT_PROTOCOL_ID: InsecureTransport(key_pair)}
    elif security == "secio":
        options = {secio.ID: secio.Transport(key_pair)}
    else:
        options = {
            NOISE_PROTOCOL_ID: NoiseTransport(
                key_pair, noise_privkey=new_x25519_key_pair().private_key
            )
        }
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    host = new_host(key_pair=key_pair, sec_opt=options, listen_addrs=listen)  # type: ignore[arg-type]

    async def main() -> bool:
        try:
            async with host.run(listen):
                with trio.move_on_after(5):
                    try:
                        await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(target)))
                        return True
                    except Exception:
                        return False
                return False
        finally:
            await host.close()

    return trio.run(main)


@pytest.mark.parametrize("security", ["plaintext", "secio"])
def test_insecure_dialers_are_refused(security: str) -> None:
    # mDNS off: another node on this machine found by mDNS would count as a connection.
    with ucsdk.Node.development(enable_mdns=False) as node:
        assert _dial_with_raw_host(node.addrs[0], security) is False
        assert node.metrics().total_connections_established == 0


def test_noise_dialer_is_accepted() -> None:
    # The positive control: the same raw host with Noise gets in.
    with ucsdk.Node.development(enable_mdns=False) as node:
        assert _dial_with_raw_host(node.addrs[0], "noise") is True
        assert wait_for(lambda: node.metrics().total_connections_established > 0, 5)
        assert node.metrics().total_connections_established == 1


def test_only_noise_and_yamux_first_are_offered() -> None:
    host = build_host(ConnectivityConfig.preset("development"), new_key_pair())
    upgrader = host.get_network().upgrader  # type: ignore[attr-defined]
    assert [str(p) for p in upgrader.security_multistream.transports] == ["/noise"]
    assert next(str(p) for p in upgrader.muxer_multistream.transports) == "/yamux/1.0.0"


def test_first_connect_has_no_happy_eyeballs_delay() -> None:
    # py-libp2p's default waits 250 ms on every first connect; ours must not.
    host = build_host(ConnectivityConfig.preset("development"), new_key_pair())
    assert host.get_network().connection_config.max_connections_per_peer == 1  # type: ignore[attr-defined]
    durations = []
    with ucsdk.Node.development() as a:
        for _ in range(3):
            with ucsdk.Node.development() as b:
                started = time.perf_counter()
                a.connect(b.addrs[0])
                durations.append(time.perf_counter() - started)
    assert sorted(durations)[1] < 0.25


def test_libp2p_logging_propagates(caplog: pytest.LogCaptureFixture) -> None:
    with ucsdk.Node.development():
        pass
    assert logging.getLogger("libp2p").propagate is True
    caplog.set_level(logging.DEBUG)
    logging.getLogger("libp2p.example").warning("reaches the root logger")
    assert "reaches the root logger" in caplog.text


def test_seed_logger_name_is_used(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="UniversalConnectivity")
    with ucsdk.Node.development() as a, ucsdk.Node.development() as b:
        a.connect(b.addrs[0])
    assert any(r.name == "UniversalConnectivity" for r in caplog.records)


def test_a_handler_that_raises_resets_its_stream_and_the_node_goes_on() -> None:
    """py-libp2p lets a handler's exception end the swarm (every connection): one bad
    frame from one peer stopped the node. ucsdk's guard resets that stream and counts it."""
    from ucsdk._wire import read_exactly

    protocol = TProtocol("/ucsdk-test/raises/1.0.0")

    async def raises(stream: INetStream) -> None:
        await read_exactly(stream, 4)
        raise ValueError("a bug in a handler, or input it did not expect")

    async def send_junk(node: ucsdk.Node, peer: str) -> None:
        stream = await node.manager.host.new_stream(ID.from_base58(peer), [protocol])
        await stream.write(b"junk")
        # Until the other side resets it (the read then raises, as a reset stream does).
        with trio.move_on_after(2), contextlib.suppress(Exception):
            await stream.read(1)

    with (
        ucsdk.Node.development(enable_mdns=False) as a,
        ucsdk.Node.development(enable_mdns=False) as b,
    ):
        a._snapshot("add handler", lambda: a.manager.host.set_stream_handler(protocol, raises))
        b.connect(a.addrs[0])
        before = set(b.connections()["opened_at"])
        for _ in range(3):
            b._call("send junk", send_junk, b, a.peer_id, timeout=10)
        assert b.ping(a.peer_id, count=1)
        # The connection the junk came over is still open (not a new one).
        assert before <= set(b.connections()["opened_at"])
        assert a.metrics().invalid_message_kinds.get("stream_handler_ValueError") == 3


def test_cancelled_writes_leave_the_connection_whole() -> None:
    """Tasks writing to streams of one connection are cancelled at random moments, many
    times over; the connection stays usable. py-libp2p's Noise session encrypted a message
    (spending a nonce) and then met the cancellation at the socket write: the message was
    never sent, the peer could decrypt nothing after it and closed the connection (this
    test broke it in its first round). ``ucsdk._noise`` finishes such a write first."""
    import random

    from ucsdk import _noise

    rng = random.Random(7)
    sink, echo = TProtocol("/ucsdk-test/sink/1.0.0"), TProtocol("/ucsdk-test/echo/1.0.0")
    config = ConnectivityConfig.preset("development", enable_mdns=False)
    a, b = build_host(config, new_key_pair()), build_host(config, new_key_pair())

    async def drain(stream: INetStream) -> None:
        with contextlib.suppress(Exception):
            while await stream.read(65536):
                pass

    async def answer(stream: INetStream) -> None:
        await stream.write(await stream.read(100))
        await stream.close()

    b.set_stream_handler(sink, drain)
    b.set_stream_handler(echo, answer)

    async def round_trip() -> bytes:
        stream = await a.new_stream(b.get_id(), [echo])
        await stream.write(b"still there?")
        return await stream.read(100)

    async def main() -> tuple[int, int, bytes]:
        listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
        async with a.run(listen), b.run(listen):
            target = f"{b.get_addrs()[0]}"
            if "/p2p/" not in target:
                target += f"/p2p/{b.get_id()}"
            await a.connect(info_from_p2p_addr(multiaddr.Multiaddr(target)))
            streams = [await a.new_stream(b.get_id(), [sink]) for _ in range(4)]
            before = _noise.finished_after_cancel
            rounds = 0
            while rounds < 600 and _noise.finished_after_cancel - before < 5:
                rounds += 1
                async with trio.open_nursery() as nursery:
                    for stream in streams:
                        nursery.start_soon(stream.write, b"x" * rng.randint(1, 2000))
                    for _ in range(rng.randint(0, 12)):
                        await trio.lowlevel.cancel_shielded_checkpoint()
                    nursery.cancel_scope.cancel()
            with trio.fail_after(5):
                answer = await round_trip()
            cut = _noise.finished_after_cancel - before
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await a.close()
                await b.close()
            return rounds, cut, answer

    rounds, cut, answer = trio.run(main)
    assert cut >= 5, (rounds, cut)  # the cancellations did land inside writes
    assert answer == b"still there?"
