"""WebTransport between real processes' sockets on loopback: ucsdk to ucsdk through the
node API, and the listener against hostile clients (wrong and expired certificates, bad
CONNECT requests, too many sessions, garbage datagrams, a server that lies in Noise).

The browser side (Chromium dialling a ucsdk node) is in tests/browser/test_browser_peer.py.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
from multiaddr import Multiaddr

import ucsdk
from tests._util import echo_round_trip, on_loop, wait_for
from ucsdk import errors
from ucsdk.identity import new_key_pair
from ucsdk.transports.certs import (
    MAX_VALIDITY,
    CertificateManager,
    certhash_from_multibase,
    certhash_multibase,
)
from ucsdk.transports.webtransport import (
    WebTransportConnection,
    WebTransportLimits,
    WebTransportListener,
    WebTransportTransport,
    parse_webtransport_addr,
)

WT_LISTEN = "/ip4/127.0.0.1/udp/0/quic-v1/webtransport"
QUIET = {"enable_mdns": False, "enable_dht_discovery": False, "enable_autonat": False}
DAY = 86400.0


def _wt_addr(node: ucsdk.Node) -> str:
    return next(a for a in node.addrs if "/webtransport/" in a)


def _transport(node: ucsdk.Node) -> WebTransportTransport:
    manager = node._manager
    assert manager is not None and manager.webtransport is not None
    return manager.webtransport


# ------------------------------------------------------------------ through the node API
@pytest.fixture
def pair() -> Any:
    a = ucsdk.Node.development(listen_addrs=["/ip4/127.0.0.1/tcp/0", WT_LISTEN], **QUIET)
    b = ucsdk.Node.development(listen_addrs=["/ip4/127.0.0.1/tcp/0", WT_LISTEN], **QUIET)
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def test_two_nodes_connect_ping_and_stream_over_webtransport(pair: Any) -> None:
    a, b = pair
    addr = _wt_addr(a)
    host, _port, hashes, peer = parse_webtransport_addr(Multiaddr(addr))
    assert (host, peer, len(hashes)) == ("127.0.0.1", a.peer_id, 2)
    assert "webtransport" in a.config.transports

    info = b.connect(addr)
    assert info.peer_id == a.peer_id
    rtts = b.ping(a.peer_id, count=5)
    assert len(rtts) == 5 and all(0 < r < 1000 for r in rtts)

    # several MB: flow control both ways
    echo_round_trip(a, b, 3 * 1024 * 1024 + 17, timeout=30)

    for node, other in ((a, b), (b, a)):
        row = node.connections().set_index("peer_id").loc[other.peer_id]
        assert row["transport"] == "webtransport"
    assert _transport(a).stats()["accepted"] == 1 and _transport(b).stats()["dials"] == 1


def test_stop_leaves_no_session_or_socket() -> None:
    a = ucsdk.Node.development(listen_addrs=[WT_LISTEN], **QUIET)
    b = ucsdk.Node.development(listen_addrs=[WT_LISTEN], **QUIET)
    b.connect(_wt_addr(a))
    ta, tb = _transport(a), _transport(b)
    listener = ta.listeners[0]
    assert on_loop(a, lambda: len(listener.sessions)) == 1
    assert on_loop(b, lambda: len(tb.dialled)) == 1
    client_sock = on_loop(b, lambda: next(iter(tb.dialled)).sock)
    b.stop()
    a.stop()
    assert client_sock.fileno() == -1 and listener.sock is not None
    assert listener.sock.fileno() == -1
    assert not listener.sessions and not listener.by_cid and not tb.dialled


def test_a_wrong_certhash_is_refused_and_the_listener_serves_on(pair: Any) -> None:
    a, b = pair
    addr = _wt_addr(a)
    _host, _port, hashes, _peer = parse_webtransport_addr(Multiaddr(addr))
    wrong = certhash_multibase(b"\x12\x20" + bytes(32))
    forged = addr.replace(certhash_multibase(hashes[0]), wrong).replace(
        "/certhash/" + certhash_multibase(hashes[1]), ""
    )
    with pytest.raises(errors.DialError, match="certificate hash"):
        b.connect(forged)
    assert _transport(b).rejections["dial_bad_certificate"] == 1
    b.connect(addr)  # the right hashes still work
    assert a.peer_id in set(b.connections()["peer_id"])


def test_an_expired_certificate_is_refused(pair: Any) -> None:
    a, b = pair
    ta = _transport(a)
    seed = new_key_pair().private_key.to_bytes()
    stale = CertificateManager(seed, clock=lambda: time.time() - 30 * DAY)
    on_loop(a, lambda: setattr(ta, "certificates", stale))
    addr = _wt_addr(a)  # advertises the stale certificates' hashes
    with pytest.raises(errors.DialError, match="not valid now"):
        b.connect(addr)
    assert _transport(b).rejections["dial_bad_certificate"] == 1


def test_the_server_must_list_the_dialled_certhashes_in_noise(pair: Any) -> None:
    """A server whose Noise extension lacks a dialled hash (a man in the middle, or a
    stale server) is refused before the client's last handshake message."""
    a, b = pair
    ta = _transport(a)

    class Forgetful(CertificateManager):
        def noise_certhashes(self) -> list[bytes]:
            return [self.current().multihash]  # not the next one it advertises

    seed = a._manager.host.get_private_key().to_bytes()  # type: ignore[union-attr]
    on_loop(a, lambda: setattr(ta, "certificates", Forgetful(seed)))
    with pytest.raises(errors.DialError, match="certhashes extension lacks"):
        b.connect(_wt_addr(a))
    assert _transport(b).rejections["dial_noise_failed"] == 1
    assert wait_for(lambda: ta.rejections["noise_failed"] == 1, 5)


def test_certhash_parsing_rejects_non_sha256() -> None:
    with pytest.raises(ValueError, match="sha2-256"):
        certhash_from_multibase("uEiAt")
    with pytest.raises(ValueError, match="multibase"):
        certhash_from_multibase("")


# ----------------------------------------------------------------------- certificates
def test_certificates_roll_over_with_overlap_and_survive_a_restart() -> None:
    seed = new_key_pair().private_key.to_bytes()
    now = [1_800_000_000.0]
    certs = CertificateManager(seed, clock=lambda: now[0])
    first = certs.advertised()
    assert len(first) == 2 and first[0].index + 1 == first[1].index
    for cert in first:
        x = cert.x509()
        assert cert.not_after - cert.not_before <= MAX_VALIDITY - DAY
        assert x.extensions  # Chromium refuses a certificate with none (seen)
        assert x.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    assert certs.current().not_before <= now[0] <= certs.current().not_after

    # Restarted, the node derives the same certificates: cached addresses still verify.
    again = CertificateManager(seed, clock=lambda: now[0])
    assert again.advertised_multibase() == certs.advertised_multibase()
    other = CertificateManager(new_key_pair().private_key.to_bytes(), clock=lambda: now[0])
    assert set(other.advertised_multibase()).isdisjoint(certs.advertised_multibase())

    # One period later the served certificate is the one advertised as next, the old one
    # is still accepted in Noise, and a new next one is advertised.
    now[0] = first[0].not_after - certs.margin + 1
    assert certs.current().multihash == first[1].multihash
    assert first[0].multihash in certs.noise_certhashes()
    assert certs.advertised()[1].index == first[1].index + 1
    # Every moment is covered by a certificate valid then.
    for step in range(0, int(3 * certs.period), 3600 * 7):
        now[0] = 1_800_000_000.0 + step
        cert = certs.current()
        assert cert.not_before <= now[0] <= cert.not_after


# --------------------------------------------------------------- hostile raw clients
async def _serve(
    nursery: trio.Nursery, transport: WebTransportTransport, seen: list[Any] | None = None
) -> tuple[WebTransportListener, Multiaddr]:
    async def handler(conn: WebTransportConnection) -> None:
        if seen is not None:
            seen.append(conn)
        await conn.terminated.wait()

    transport.set_background_nursery(nursery)
    listener = transport.create_listener(handler)
    listener.background_nursery = nursery
    await listener.listen(Multiaddr(WT_LISTEN))
    addr = listener.get_addrs()[0]
    return listener, addr


async def _raw_session(
    nursery: trio.Nursery, addr: Multiaddr, headers: list[tuple[bytes, bytes]], wait: float = 5
) -> WebTransportConnection:
    """A QUIC+HTTP/3 client that sends ``headers`` as its request and stops there."""
    host, port, _h, _p = parse_webtransport_addr(addr)
    client = WebTransportTransport(new_key_pair())
    client.set_background_nursery(nursery)
    conn = client.client_connection(host, port)
    conn.quic.connect((host, port), now=time.time())
    conn.transmit()
    with trio.move_on_after(wait):
        await conn.handshake_done.wait()
        if headers and not conn.terminated.is_set():
            conn.session_id = conn.quic.get_next_available_stream_id()
            conn.h3.send_headers(conn.session_id, headers)
            conn.transmit()
            await conn.session_ready.wait()
    return conn


def _connect_headers(port: int, path: bytes, method: bytes = b"CONNECT") -> list[Any]:
    return [
        (b":method", method),
        (b":scheme", b"https"),
        (b":authority", f"127.0.0.1:{port}".encode()),
        (b":path", path),
        (b":protocol", b"webtransport"),
    ]


def _run(test: Callable[[trio.Nursery], Awaitable[None]]) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(30):
                await test(nursery)
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_bad_connect_requests_are_refused_and_counted() -> None:
    async def scenario(nursery: trio.Nursery) -> None:
        server = WebTransportTransport(new_key_pair())
        listener, addr = await _serve(nursery, server)
        port = parse_webtransport_addr(addr)[1]
        cases = [
            (b"/.well-known/libp2p-webtransport?type=tls", "bad_path", 404),
            (b"/etc/passwd", "bad_path", 404),
            (b"/.well-known/libp2p-webtransport", "bad_path", 404),
        ]
        for path, _reason, status in cases:
            conn = await _raw_session(nursery, addr, _connect_headers(port, path))
            assert conn.connect_response == status, path
        conn = await _raw_session(nursery, addr, _connect_headers(port, b"/", b"GET"))
        assert conn.connect_response == 400
        assert server.rejections["bad_path"] == 3
        assert server.rejections["not_webtransport_connect"] == 1
        # The server closed those sessions; a real client is served.
        assert await wait_until(lambda: not listener.sessions)
        client = WebTransportTransport(new_key_pair())
        client.set_background_nursery(nursery)
        conn = await client.dial(addr)
        assert conn.is_established
        assert await wait_until(lambda: server.accepted == 1)
        await client.close()
        await server.close()

    _run(scenario)


async def wait_until(predicate: Callable[[], Any], timeout: float = 5) -> bool:
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.02)
        return True
    return False


def test_too_many_sessions_are_refused_until_slow_handshakes_time_out() -> None:
    async def scenario(nursery: trio.Nursery) -> None:
        limits = WebTransportLimits(max_sessions_per_ip=2, handshake_timeout=1.5)
        server = WebTransportTransport(new_key_pair(), limits=limits)
        listener, addr = await _serve(nursery, server)
        port = parse_webtransport_addr(addr)[1]
        ok = _connect_headers(port, b"/.well-known/libp2p-webtransport?type=noise")
        # Two sessions that say CONNECT and then never start Noise.
        idle = [await _raw_session(nursery, addr, ok) for _ in range(2)]
        assert [c.connect_response for c in idle] == [200, 200]
        third = await _raw_session(nursery, addr, ok, wait=0.7)
        assert not third.handshake_done.is_set() or third.terminated.is_set()
        assert server.rejections["session_limit_per_ip"] >= 1
        assert len(listener.sessions) == 2
        # The server ends the stalled handshakes, then serves again.
        assert await wait_until(lambda: server.rejections["handshake_timeout"] == 2, 5)
        assert await wait_until(lambda: not listener.sessions)
        client = WebTransportTransport(new_key_pair())
        client.set_background_nursery(nursery)
        conn = await client.dial(addr)
        assert conn.is_established
        await client.close()
        await server.close()

    _run(scenario)


def test_garbage_datagrams_leave_no_state_and_the_listener_serves_on() -> None:
    async def scenario(nursery: trio.Nursery) -> None:
        server = WebTransportTransport(new_key_pair())
        listener, addr = await _serve(nursery, server)
        port = parse_webtransport_addr(addr)[1]
        rng = random.Random(7)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
            for i in range(400):
                size = rng.choice([1, 20, 200, 1200, 1350])
                body = bytearray(rng.randbytes(size))
                if i % 2 and size >= 1200:
                    # Shaped like a QUIC v1 Initial: long header, version 1, 8-byte DCID.
                    body[0] = 0xC0 | (body[0] & 0x0F)
                    body[1:5] = b"\x00\x00\x00\x01"
                    body[5] = 8
                attacker.sendto(bytes(body), ("127.0.0.1", port))
                if i % 50 == 0:
                    await trio.sleep(0.01)
        assert await wait_until(lambda: sum(server.rejections.values()) >= 350)
        assert server.rejections["malformed_packet"] > 0
        assert not listener.sessions and not listener.by_cid
        client = WebTransportTransport(new_key_pair())
        client.set_background_nursery(nursery)
        conn = await client.dial(addr)
        stream = await conn.open_stream()
        assert not stream.inbound
        await client.close()
        await server.close()

    _run(scenario)


def test_streams_beyond_the_limit_are_reset_and_counted() -> None:
    async def scenario(nursery: trio.Nursery) -> None:
        server = WebTransportTransport(
            new_key_pair(), limits=WebTransportLimits(max_streams_per_session=3)
        )
        seen: list[WebTransportConnection] = []
        _listener, addr = await _serve(nursery, server, seen)
        client = WebTransportTransport(new_key_pair())
        client.set_background_nursery(nursery)
        conn = await client.dial(addr)
        streams = [await conn.open_stream() for _ in range(5)]
        for stream in streams:
            await stream.write(b"x")
        assert await wait_until(lambda: server.rejections["stream_limit"] == 2)
        # The two refused streams were reset; the three accepted ones stay usable.
        refused = 0
        for stream in streams:
            with trio.move_on_after(2):
                try:
                    await stream.read(1)
                except Exception:
                    refused += 1
        assert refused == 2
        assert seen and len(seen[0].streams) == 3
        await client.close()
        await server.close()

    _run(scenario)
