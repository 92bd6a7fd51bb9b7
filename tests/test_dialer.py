"""The dial strategy on loopback: ranked, parallel, relay fallback, every attempt kept."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from _util import closed_port

import ucsdk
from ucsdk.connectivity.dialer import SAME_RELAY_FALLBACK, rank_addrs
from ucsdk.host import interface_ipv4_addresses

QUIET = {"enable_mdns": False, "enable_pubsub_discovery": False, "auto_dial": False}


@pytest.fixture
def silent_listener() -> Iterator[str]:
    """A TCP port that accepts connections and never says a word (a dial to it hangs in
    the security handshake until its timeout)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not done.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"/ip4/127.0.0.1/tcp/{server.getsockname()[1]}"
    finally:
        done.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()


def test_ranking_follows_go_libp2ps_dial_ranker() -> None:
    public_tcp, public_quic = "/ip4/203.0.113.5/tcp/1", "/ip4/203.0.113.5/udp/1/quic-v1"
    lan_tcp, lan_quic = "/ip4/10.0.0.5/tcp/1", "/ip4/10.0.0.5/udp/1/quic-v1"
    circuit = "/ip4/198.51.100.1/tcp/1/p2p/QmRelay/p2p-circuit"
    plan = dict(
        rank_addrs(
            [public_tcp, circuit, lan_tcp, public_quic, lan_quic], tcp_delay=0.25, relay_delay=0.5
        )
    )
    assert plan == {
        public_quic: 0.0,
        lan_quic: 0.0,
        lan_tcp: 0.03,
        public_tcp: 0.25,
        circuit: 0.5,  # the peer has a public direct address: the relay waits
    }
    # A NATed peer: private addresses and a circuit. Nothing to wait for.
    nated = dict(rank_addrs([lan_tcp, circuit], tcp_delay=0.25, relay_delay=0.5))
    assert nated == {lan_tcp: 0.0, circuit: 0.0}
    # Circuits through a relay over QUIC go first; over TCP they wait like TCP does.
    other_relay = "/ip4/198.51.100.2/udp/1/quic-v1/p2p/QmOther/p2p-circuit"
    both = dict(rank_addrs([circuit, other_relay], tcp_delay=0.25, relay_delay=0.5))
    assert both == {other_relay: 0.0, circuit: 0.25}
    # Through one relay, the second circuit is only a fallback for the first.
    quic_circuit = circuit.replace("/tcp/1/", "/udp/1/quic-v1/")
    same = dict(rank_addrs([circuit, quic_circuit], tcp_delay=0.25, relay_delay=0.5))
    assert same == {quic_circuit: 0.0, circuit: SAME_RELAY_FALLBACK}


def test_a_hanging_address_does_not_hold_up_a_good_one(silent_listener: str) -> None:
    with (
        ucsdk.Node.development(connection_timeout=5.0, **QUIET) as a,
        ucsdk.Node.development(**QUIET) as b,
    ):
        good = b.addrs[0].rsplit("/p2p/", 1)[0]
        started = time.monotonic()
        assert a.dial_peer(b.peer_id, addrs=[silent_listener, good])
        assert time.monotonic() - started < 2.0  # not after the 5 s timeout of the other
        attempts = a.dial_attempts()
        outcome = dict(zip(attempts["addr"], attempts["outcome"], strict=True))
        assert outcome[good] == "connected"
        assert outcome[silent_listener] == "cancelled"
        assert (attempts["ms"] >= 0).all()


def test_every_failed_address_is_kept_with_its_reason() -> None:
    closed = f"/ip4/127.0.0.1/tcp/{closed_port()}"
    with (
        ucsdk.Node.development(**QUIET) as a,
        ucsdk.Node.development(**QUIET) as b,
    ):
        ws = "/ip4/127.0.0.1/tcp/9/ws"  # websocket is not enabled on a: never dialled
        assert not a.dial_peer(b.peer_id, addrs=[closed, ws])
        rows = a.dial_attempts().set_index("addr")
        assert rows.loc[closed, "outcome"] == "failed" and rows.loc[closed, "error"]
        assert rows.loc[ws, "outcome"] == "skipped"
        assert "not enabled" in rows.loc[ws, "error"]
        assert a.metrics().total_connections_failed == 1


def test_with_no_circuit_known_the_shared_relay_is_tried() -> None:
    """b holds a reservation on r; a knows only a dead direct address of b, and that r is
    a relay. ``use_relay=True`` reaches b through r."""
    dead = f"/ip4/127.0.0.1/tcp/{closed_port()}"
    with (
        ucsdk.Node.development(enable_relay_server=True, **QUIET) as r,
        ucsdk.Node.development(**QUIET) as a,
        ucsdk.Node.development(**QUIET) as b,
    ):
        b.reserve(r.addrs[0])
        a.connect(r.addrs[0])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # a learns r speaks the hop protocol (identify)
            peers = a.peers()
            if len(peers) and any("circuit/relay" in p for p in peers.iloc[0]["protocols"]):
                break
            time.sleep(0.05)
        assert a.dial_peer(b.peer_id, addrs=[dead], use_relay=True)
        attempts = a.dial_attempts()
        won = attempts[attempts["outcome"] == "connected"].iloc[-1]
        assert bool(won["relayed"]) and f"/p2p/{r.peer_id}/p2p-circuit" in won["addr"]
        conns = a.connections()
        assert bool(conns[conns["peer_id"] == b.peer_id].iloc[0]["relayed"])
        assert a.ping(b.peer_id, count=1)


def test_a_peer_on_this_machine_is_dialled_over_loopback() -> None:
    own = [ip for ip in interface_ipv4_addresses() if not ip.startswith("127.")]
    if not own:
        pytest.skip("this machine has no interface besides loopback")
    with (
        ucsdk.Node.development(listen_host="0.0.0.0", **QUIET) as a,
        ucsdk.Node.development(**QUIET) as b,
    ):
        everything = [x.rsplit("/p2p/", 1)[0] for x in a.addrs]
        assert any(own[0] in x for x in everything) and any("/127.0.0.1/" in x for x in everything)
        assert b.dial_peer(a.peer_id, addrs=everything)
        rows = b.dial_attempts().set_index("addr")
        mine = [x for x in everything if own[0] in x]
        assert (rows.loc[mine, "outcome"] == "skipped").all()


def test_connect_dials_the_address_it_was_given_only() -> None:
    dead = f"/ip4/127.0.0.1/tcp/{closed_port()}"
    with (
        ucsdk.Node.development(**QUIET) as a,
        ucsdk.Node.development(**QUIET) as b,
    ):
        assert not a.dial_peer(b.peer_id, addrs=[dead])  # now in a's table
        a.connect(b.addrs[0])
        attempts = a.dial_attempts()
        last = attempts[attempts["dial_id"] == attempts["dial_id"].max()]
        assert list(last["addr"]) == [b.addrs[0].rsplit("/p2p/", 1)[0]]
        # dial_peer tries every address it knows (the dead one too).
        a.disconnect(b.peer_id)
        deadline = time.monotonic() + 5
        while a.connections()["peer_id"].eq(b.peer_id).any() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert a.dial_peer(b.peer_id)
        attempts = a.dial_attempts()
        last = attempts[attempts["dial_id"] == attempts["dial_id"].max()]
        assert dead in set(last["addr"])


def test_a_dial_for_a_stream_waits_for_the_dial_in_flight_to_that_peer() -> None:
    """A stream opened while the dialer connects to its peer (a DHT query to a peer the
    peerstore just learnt did this) waits for that dial and uses its connection. Before,
    it dialled a second one (a websocket ``connect`` under load: 2 connections in 5 of 6
    runs)."""
    import trio
    from libp2p.peer.id import ID
    from multiaddr import Multiaddr

    alone = {**QUIET, "enable_dht_discovery": False}
    with ucsdk.Node.development(**alone) as server, ucsdk.Node.development(**alone) as client:
        host = client.manager.host
        swarm = host.get_network()
        pid = ID.from_base58(server.peer_id)
        addr = Multiaddr(server.addrs[0].split("/p2p/")[0])
        host.get_peerstore().add_addrs(pid, [addr], 60)

        async def dial_and_open_a_stream_at_once() -> None:
            began = trio.Event()

            async def dial_by_address() -> None:
                began.set()
                await swarm.dial_addr(addr, pid)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(dial_by_address)
                # Trio may run tasks started together in either order: the stream's dial
                # starts once the dial by address is under way, as in connect() then a query.
                await began.wait()
                nursery.start_soon(swarm.dial_peer, pid)

        client._portal.call(dial_and_open_a_stream_at_once)
        assert len(client.connections()) == 1, client.connections()
        assert not swarm._ongoing_dials  # the entry went with the dial
