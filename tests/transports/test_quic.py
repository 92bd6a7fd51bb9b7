"""QUIC-v1 between two nodes on loopback with ucsdk's batched send and receive paths
(``ucsdk._quic``): bulk data arrives whole both ways and on parallel streams, and junk
datagrams at the listener's port (short headers with unknown or live connection ids, long
headers) neither reach a connection nor break the live one."""

from __future__ import annotations

import hashlib
import os
import socket
import threading

from libp2p.peer.id import ID

import ucsdk
from tests._util import echo_round_trip, on_loop, wait_for
from ucsdk._quic import CID_LENGTH, RECEIVE_BATCH

QUIC = {
    "listen_addrs": ["/ip4/127.0.0.1/udp/0/quic-v1"],
    "transports": ["quic"],
    "enable_mdns": False,
    "enable_dht_discovery": False,
    "enable_autonat": False,
    "enable_pubsub_discovery": False,
    "auto_dial": False,
}


async def _digest(stream: ucsdk.Stream) -> None:
    """Read an 8-byte length and that many bytes; answer their SHA-256."""
    total = int.from_bytes(await stream.read_exactly(8), "big")
    hasher, got = hashlib.sha256(), 0
    while got < total:
        chunk = await stream.read(65536)
        if not chunk:
            break
        hasher.update(chunk)
        got += len(chunk)
    await stream.write(hasher.digest())
    await stream.close()


def _send(client: ucsdk.Node, server: ucsdk.Node, payload: bytes) -> bytes:
    with client.open_stream(server.peer_id, "/test/digest/1", timeout=60) as stream:
        stream.write(len(payload).to_bytes(8, "big"))
        for start in range(0, len(payload), 65536):
            stream.write(payload[start : start + 65536], timeout=60)
        return stream.read_exactly(32, timeout=60)


def _udp_port(node: ucsdk.Node) -> int:
    addr = next(a for a in node.addrs if "/quic-v1" in a)
    return int(addr.split("/udp/")[1].split("/")[0])


def _live_cid(a: ucsdk.Node, b: ucsdk.Node) -> bytes:
    """The connection id ``a`` sends its datagrams to ``b`` with (b's end of their QUIC
    connection)."""

    def read() -> bytes:
        network = a.manager.host.get_network()
        conn = network.connections[ID.from_base58(b.peer_id)][0]
        return bytes(conn.muxed_conn._quic._peer_cid.cid)  # type: ignore[attr-defined]

    return on_loop(a, read)


def test_bulk_data_arrives_whole_both_ways_and_on_parallel_streams() -> None:
    with ucsdk.Node.development(**QUIC) as a, ucsdk.Node.development(**QUIC) as b:
        b.handle("/test/digest/1", _digest)
        a.handle("/test/digest/1", _digest)
        a.connect(b.addrs[0])
        payload = os.urandom(8 << 20)
        assert _send(a, b, payload) == hashlib.sha256(payload).digest()
        assert _send(b, a, payload[: 3 << 20]) == hashlib.sha256(payload[: 3 << 20]).digest()
        results: dict[int, bytes] = {}

        def one(i: int) -> None:
            results[i] = _send(a, b, payload[i << 20 : (i + 2) << 20])

        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        for i in range(4):
            assert results[i] == hashlib.sha256(payload[i << 20 : (i + 2) << 20]).digest()
        echo_round_trip(b, a, 1 << 20, timeout=60)


def test_junk_datagrams_do_not_reach_or_break_a_live_connection() -> None:
    with ucsdk.Node.development(**QUIC) as a, ucsdk.Node.development(**QUIC) as b:
        b.handle("/test/digest/1", _digest)
        a.connect(b.addrs[0])
        port = _udp_port(b)
        live = _live_cid(a, b)
        assert len(live) == CID_LENGTH
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
            for i in range(RECEIVE_BATCH * 4):
                kind = i % 4
                if kind == 3:  # short header, the live connection's id, garbage after it
                    data = bytes([0x40]) + live + os.urandom(60)
                    junk.sendto(data, ("127.0.0.1", port))
                    continue
                if kind == 0:  # short header, unknown connection id
                    data = bytes([0x40]) + os.urandom(CID_LENGTH + 40)
                elif kind == 1:  # long header, garbage
                    data = bytes([0xC0]) + os.urandom(60)
                else:  # too short to hold a connection id
                    data = bytes([0x40]) + os.urandom(CID_LENGTH - 1)
                junk.sendto(data, ("127.0.0.1", port))
        payload = os.urandom(2 << 20)
        assert _send(a, b, payload) == hashlib.sha256(payload).digest()
        assert wait_for(lambda: b.peers()["connected"].any(), 10)
        # a second node still gets in through the listener's handshake path
        with ucsdk.Node.development(**QUIC) as c:
            c.connect(b.addrs[0])
            assert _send(c, b, payload[: 1 << 20]) == hashlib.sha256(payload[: 1 << 20]).digest()
