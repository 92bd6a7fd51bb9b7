"""AutoNAT v1 between real hosts on loopback: the server's rules and the client's verdict."""

from __future__ import annotations

import itertools

import multiaddr
import pytest
import trio
from _hosts import closed_port, connect, hosts
from libp2p.abc import IHost

from ucsdk._wire import read_delimited, write_delimited
from ucsdk.nat.autonat import (
    AUTONAT_PROTOCOL,
    E_BAD_REQUEST,
    E_DIAL_ERROR,
    E_DIAL_REFUSED,
    OK,
    AutoNAT,
)
from ucsdk.proto import AutoNATMessage


@pytest.mark.parametrize("claim", ["third_party_ip", "relay_address"])
def test_server_refuses_to_dial_anything_but_the_observed_ip(claim: str) -> None:
    async def main() -> None:
        async with hosts(2) as (server, client):
            served = AutoNAT(server, boot_delay=3600)
            asking = AutoNAT(client, boot_delay=3600, serve=False)
            await served.start()
            await asking.start()
            await connect(client, server)
            addr = {
                "third_party_ip": "/ip4/203.0.113.77/tcp/4001",
                "relay_address": "/ip4/127.0.0.1/tcp/4001/p2p-circuit",
            }[claim]
            report = await asking.ask(server.get_id(), [addr])
            assert report.status == E_DIAL_REFUSED
            assert "127.0.0.1" in report.status_text  # names the IP it would dial
            assert served.served[-1]["observed_ip"] == "127.0.0.1"
            assert asking.nat_status == "unknown"  # a refusal is no evidence
            await asking.stop()
            await served.stop()

    trio.run(main)


def test_dial_back_uses_a_fresh_connection_not_the_existing_one() -> None:
    """The client is connected to the server, but the address it asks about is dead: the
    server must report a dial error (py-libp2p's server reported success here)."""

    async def main() -> None:
        async with hosts(2) as (server, client):
            served = AutoNAT(server, boot_delay=3600, dial_timeout=3)
            asking = AutoNAT(client, boot_delay=3600, serve=False, min_agreement=1)
            await served.start()
            await asking.start()
            await connect(client, server)
            dead = f"/ip4/127.0.0.1/tcp/{closed_port()}"
            report = await asking.ask(server.get_id(), [dead])
            assert report.status == E_DIAL_ERROR, report
            assert dead in report.status_text
            assert asking.nat_status == "private"
            live = [str(a).split("/p2p/")[0] for a in client.get_addrs()]
            report = await asking.ask(server.get_id(), live)
            assert report.status == OK and report.dialed_addr == live[0]
            assert asking.nat_status == "public"
            # The dial-back came from another identity than the server's.
            assert served._dialer is not None
            assert served._dialer.get_id() != server.get_id()
            await asking.stop()
            await served.stop()

    trio.run(main)


async def raw_request(client: IHost, server: IHost, payload: bytes) -> tuple[int, str]:
    stream = await client.new_stream(server.get_id(), [AUTONAT_PROTOCOL])
    await write_delimited(stream, payload)
    reply = AutoNATMessage.FromString(await read_delimited(stream, 4096))
    await stream.close()
    return reply.dialResponse.status, reply.dialResponse.statusText


def test_bad_requests_are_answered_counted_and_survived() -> None:
    async def main() -> None:
        async with hosts(3) as (server, client, other):
            served = AutoNAT(server, boot_delay=3600)
            await served.start()
            await connect(client, server)
            spoof = AutoNATMessage(type=0)
            spoof.dial.peer.id = other.get_id().to_bytes()  # someone else's peer id
            spoof.dial.peer.addrs.append(multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/1").to_bytes())
            assert (await raw_request(client, server, spoof.SerializeToString()))[0] == (
                E_BAD_REQUEST
            )
            assert (await raw_request(client, server, b"\xff\x00garbage"))[0] == E_BAD_REQUEST
            wrong = AutoNATMessage(type=1).SerializeToString()  # a response as a request
            assert (await raw_request(client, server, wrong))[0] == E_BAD_REQUEST
            assert served.dropped == {"spoofed_peer": 1, "malformed": 1, "wrong_type": 1}
            # ... and the service still answers a good request.
            good = AutoNATMessage(type=0)
            good.dial.peer.id = client.get_id().to_bytes()
            for addr in client.get_addrs():
                good.dial.peer.addrs.append(
                    multiaddr.Multiaddr(str(addr).split("/p2p/")[0]).to_bytes()
                )
            assert (await raw_request(client, server, good.SerializeToString()))[0] == OK
            health = served.health()  # dropped, never a crash
            assert (health.state, health.restarts, health.last_error) == ("running", 0, None)
            await served.stop()

    trio.run(main)


def test_rate_limit_per_peer() -> None:
    async def main() -> None:
        async with hosts(2) as (server, client):
            served = AutoNAT(server, boot_delay=3600, rate_limit_per_peer=2)
            asking = AutoNAT(client, boot_delay=3600, serve=False)
            await served.start()
            await asking.start()
            await connect(client, server)
            statuses = [(await asking.ask(server.get_id())).status for _ in range(3)]
            assert statuses[:2] == [OK, OK]
            assert statuses[2] == E_DIAL_REFUSED
            assert asking.reports[-1].status_text == "rate limited"
            assert served.dropped == {"rate_limited": 1}  # counted (autonat_rate_limited)
            await asking.stop()
            await served.stop()

    trio.run(main)


def test_verdict_needs_agreement_and_refusals_do_not_count() -> None:
    async def main() -> None:
        async with hosts(3) as (s1, s2, client):
            servers = [AutoNAT(s, boot_delay=3600) for s in (s1, s2)]
            for service in servers:
                await service.start()
            # Both servers are on loopback, one IP group: allow one group here (the
            # default rule of two groups is tested in tests/security/test_autonat_attacks.py).
            asking = AutoNAT(client, boot_delay=3600, serve=False, min_agreement=2, min_groups=1)
            await asking.start()
            await connect(client, s1)
            await connect(client, s2)
            await asking.ask(s1.get_id())
            assert asking.nat_status == "unknown"  # one voice is not enough
            await asking.ask(s2.get_id(), ["/ip4/203.0.113.9/tcp/1"])  # refused
            assert asking.nat_status == "unknown"
            await asking.ask(s2.get_id())
            assert (asking.nat_status, asking.confidence) == ("public", 2)
            await asking.stop()
            for service in servers:
                await service.stop()

    trio.run(main)


def test_rounds_space_out_while_a_confident_verdict_holds() -> None:
    """Three servers agree round after round: the wait between rounds doubles from the
    interval (0.25 s) to 8 times it, instead of asking every 0.25 s for ever."""

    async def main() -> None:
        async with hosts(4) as (s1, s2, s3, client):
            # Servers that answer every round (by default they dial a peer back at most 3
            # times in 90 s, and a refusal is no evidence).
            limits = {"rate_limit_per_peer": 100, "rate_limit_total": 100}
            servers = [AutoNAT(s, boot_delay=3600, **limits) for s in (s1, s2, s3)]
            for service in servers:
                await service.start()
            for server in (s1, s2, s3):
                await connect(client, server)
            asking = AutoNAT(client, query_interval=0.25, boot_delay=0, serve=False, min_groups=1)
            await asking.start()

            def round_starts() -> list[float]:
                # A round's answers come within a moment of each other; rounds are apart.
                times = [r.time.timestamp() for r in asking.reports]
                return [t for i, t in enumerate(times) if i == 0 or t - times[i - 1] > 0.2]

            with trio.fail_after(60):
                while len(round_starts()) < 7:
                    await trio.sleep(0.05)
            await asking.stop()
            for service in servers:
                await service.stop()
            assert asking.nat_status == "public" and asking.confidence == 3
            gaps = [b - a for a, b in itertools.pairwise(round_starts())]
            assert gaps[-1] >= 2.0, gaps  # the wait alone is 8 x 0.25 s by then
            assert gaps[-1] > 2 * gaps[0], gaps  # the first rounds waited 0.25 s

    trio.run(main)
