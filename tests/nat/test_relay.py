"""Circuit Relay v2 between real hosts on loopback: reservations, circuits, limits."""

from __future__ import annotations

import multiaddr
import trio
from _hosts import connect, hosts
from libp2p.abc import IHost

from ucsdk._wire import read_delimited, write_delimited
from ucsdk.host import describe_connection
from ucsdk.nat.relay import (
    HOP_PROTOCOL,
    NO_RESERVATION,
    OK,
    PERMISSION_DENIED,
    RESOURCE_LIMIT_EXCEEDED,
    CircuitRelayClient,
    CircuitRelayServer,
    RelayError,
    ServedReservation,
    open_voucher,
    utcnow,
)
from ucsdk.proto import HopMessage
from ucsdk.protocols import ping_rtts


def relay_addr(host: IHost) -> str:
    return str(host.get_addrs()[0]).split("/p2p/")[0]


async def hop(client: IHost, relay: IHost, message: object) -> object:
    stream = await client.new_stream(relay.get_id(), [HOP_PROTOCOL])
    await write_delimited(stream, message.SerializeToString())  # type: ignore[attr-defined]
    reply = HopMessage.FromString(await read_delimited(stream, 4096))
    await stream.close()
    return reply


def test_reserve_connect_and_exchange_data_through_the_relay() -> None:
    async def main() -> None:
        async with hosts(3) as (relay, a, b):
            server = CircuitRelayServer(relay)
            ca, cb = CircuitRelayClient(a), CircuitRelayClient(b)
            for s in (server, ca, cb):
                await s.start()
            res = await cb.make_reservation(relay.get_id(), relay_addr(relay))
            # The voucher is signed by the relay, for b, with the reservation's expiry.
            assert res.voucher_valid
            # b's circuit address, which the manager's address book advertises.
            circuit = f"{relay_addr(relay)}/p2p/{relay.get_id()}/p2p-circuit"
            assert cb.circuit_addrs() == [circuit]
            assert res.circuit_addrs == [circuit]
            conn = await ca.dial(b.get_id(), relay.get_id(), relay_addr(relay))
            remote, transport, relayed = describe_connection(conn)
            assert (transport, relayed) == ("relay", True)
            assert remote is not None and "/p2p-circuit" in remote
            rtts = await ping_rtts(a, b.get_id(), 3)  # both ways over the circuit
            assert len(rtts) == 3
            # b sees an inbound relayed connection from a.
            inbound = b.get_network().connections.get(a.get_id(), [])
            assert any(describe_connection(c)[2] for c in inbound)
            assert server.stats["circuit_opened"] == 1
            assert server.reservations[b.get_id().to_base58()].peer == b.get_id().to_base58()
            for s in (ca, cb, server):
                await s.stop()

    trio.run(main)


def test_voucher_checks() -> None:
    async def main() -> None:
        async with hosts(2) as (relay, b):
            server = CircuitRelayServer(relay)
            await server.start()
            await connect(b, relay)
            reply = await hop(b, relay, HopMessage(type=0))
            assert reply.status == OK  # type: ignore[attr-defined]
            voucher = reply.reservation.voucher  # type: ignore[attr-defined]
            signer, peer, expiration = open_voucher(voucher)
            assert (signer, peer) == (relay.get_id(), b.get_id())
            assert expiration == reply.reservation.expire  # type: ignore[attr-defined]
            tampered = bytearray(voucher)
            tampered[-1] ^= 1
            try:
                open_voucher(bytes(tampered))
            except ValueError as exc:
                assert "signature" in str(exc)
            else:
                raise AssertionError("a tampered voucher was accepted")
            await server.stop()

    trio.run(main)


def test_a_reservation_for_someone_else_is_refused() -> None:
    """py-libp2p's relay reserved for whatever peer id the message named."""

    async def main() -> None:
        async with hosts(3) as (relay, attacker, victim):
            server = CircuitRelayServer(relay)
            await server.start()
            await connect(attacker, relay)
            spoof = HopMessage(type=0)
            spoof.peer.id = victim.get_id().to_bytes()
            reply = await hop(attacker, relay, spoof)
            assert reply.status == PERMISSION_DENIED  # type: ignore[attr-defined]
            assert victim.get_id().to_base58() not in server.reservations
            assert server.dropped["spoofed_peer"] == 1
            # Nobody can be reached through a reservation that was never granted.
            connect_msg = HopMessage(type=1)
            connect_msg.peer.id = victim.get_id().to_bytes()
            reply = await hop(attacker, relay, connect_msg)
            assert reply.status == NO_RESERVATION  # type: ignore[attr-defined]
            # Garbage is answered and counted; the relay keeps serving.
            stream = await attacker.new_stream(relay.get_id(), [HOP_PROTOCOL])
            await stream.write(b"\x05\xff\xff\xff\xff\xff")
            answer = HopMessage.FromString(await read_delimited(stream, 4096))
            assert answer.status == 400
            assert server.dropped["malformed"] == 1
            assert (await hop(attacker, relay, HopMessage(type=0))).status == OK  # type: ignore[attr-defined]
            health = server.health()  # dropped, never a crash
            assert (health.state, health.restarts, health.last_error) == ("running", 0, None)
            await server.stop()

    trio.run(main)


def test_circuit_limits_close_cleanly() -> None:
    async def main() -> None:
        async with hosts(4) as (relay, a, b, c):
            server = CircuitRelayServer(relay, max_circuits=1, limit_data=6000, limit_duration=60)
            clients = [CircuitRelayClient(h) for h in (a, b, c)]
            await server.start()
            for cl in clients:
                await cl.start()
            ca, cb, cc = clients
            await cb.make_reservation(relay.get_id(), relay_addr(relay))
            await ca.dial(b.get_id(), relay.get_id(), relay_addr(relay))
            # A second circuit exceeds max_circuits=1.
            try:
                await cc.dial(b.get_id(), relay.get_id(), relay_addr(relay))
            except RelayError as exc:
                assert exc.status == RESOURCE_LIMIT_EXCEEDED
            else:
                raise AssertionError("max_circuits was not enforced")

            # Use up the data limit: the relay closes the circuit, the connection ends.
            def relayed_ab() -> list[object]:
                conns = a.get_network().connections.get(b.get_id(), [])
                return [c for c in conns if describe_connection(c)[2]]

            with trio.move_on_after(20):
                while relayed_ab() and not server.closed_circuits:
                    with trio.move_on_after(2):
                        try:
                            await ping_rtts(a, b.get_id(), 5)
                        except Exception:
                            break
            with trio.move_on_after(5):
                while relayed_ab():
                    await trio.sleep(0.05)
            assert not relayed_ab()
            closed = list(server.closed_circuits)
            assert closed and closed[0].ended == "data limit"
            assert max(closed[0].bytes_to_dst, closed[0].bytes_to_src) <= 6000
            assert server.circuits == {}
            # Once it is closed a new circuit is allowed again.
            await cc.dial(b.get_id(), relay.get_id(), relay_addr(relay))
            for cl in clients:
                await cl.stop()
            await server.stop()

    trio.run(main)


def test_duration_limit() -> None:
    async def main() -> None:
        async with hosts(3) as (relay, a, b):
            server = CircuitRelayServer(relay, limit_duration=1)
            ca, cb = CircuitRelayClient(a), CircuitRelayClient(b)
            for s in (server, ca, cb):
                await s.start()
            await cb.make_reservation(relay.get_id(), relay_addr(relay))
            await ca.dial(b.get_id(), relay.get_id(), relay_addr(relay))
            await trio.sleep(2.5)
            assert next(iter(server.closed_circuits)).ended == "duration limit"
            assert not [
                c
                for c in a.get_network().connections.get(b.get_id(), [])
                if describe_connection(c)[2]
            ]
            for s in (ca, cb, server):
                await s.stop()

    trio.run(main)


def test_stop_from_a_relay_without_our_reservation_is_refused() -> None:
    async def main() -> None:
        async with hosts(3) as (relay, a, b):
            # b reserves on nobody; a relay that b never asked tries to hand b a connection.
            server = CircuitRelayServer(relay)
            cb = CircuitRelayClient(b)
            await server.start()
            await cb.start()
            await connect(b, relay)
            # The relay believes b reserved (b never did: b's client holds no reservation).
            pid = b.get_id().to_base58()
            server.reservations[pid] = ServedReservation(pid, "127.0.0.1", 2**40, utcnow())
            ca = CircuitRelayClient(a)
            await ca.start()
            try:
                await ca.dial(b.get_id(), relay.get_id(), relay_addr(relay))
            except RelayError as exc:
                assert exc.status == 203  # CONNECTION_FAILED: b said PERMISSION_DENIED
            else:
                raise AssertionError("b accepted a relayed connection it never asked for")
            assert cb.dropped["no_reservation"] == 1
            for s in (ca, cb, server):
                await s.stop()

    trio.run(main)


def test_multiaddr_helpers_round_trip() -> None:
    from ucsdk.nat.relay import circuit_addr, parse_circuit

    text = circuit_addr("/ip4/203.0.113.10/tcp/4001", "R", "T")
    assert parse_circuit(text) == ("/ip4/203.0.113.10/tcp/4001", "R", "T")
    multiaddr.Multiaddr(
        circuit_addr("/ip4/1.2.3.4/tcp/1", "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN")
    )


def test_reservations_are_refreshed_before_they_expire() -> None:
    async def main() -> None:
        async with hosts(2) as (relay, b):
            server = CircuitRelayServer(relay, reservation_ttl=4)
            cb = CircuitRelayClient(b)
            await server.start()
            await cb.start()
            first = await cb.make_reservation(relay.get_id(), relay_addr(relay))
            await trio.sleep(6)  # longer than the reservation lives
            current = cb.reservations[relay.get_id().to_base58()]
            assert current.refreshed >= 1 and current.expire > first.expire
            assert server.stats["reservation_renewed"] >= 1, (server.stats, cb.stats)
            assert b.get_id().to_base58() in server.reservations
            await cb.stop()
            await server.stop()

    trio.run(main)
