"""/dnsaddr/ bootstrap entries, resolved through a DNS server the test runs on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import dns.message
import dns.rcode
import dns.rrset

import ucsdk


@contextmanager
def dns_server(records: dict[str, list[str]]) -> Iterator[str]:
    """A tiny UDP DNS server on 127.0.0.1 answering TXT queries from ``records``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()
    queries: list[str] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except OSError:
                continue
            query = dns.message.from_wire(data)
            name = query.question[0].name.to_text()
            queries.append(name)
            response = dns.message.make_response(query)
            texts = records.get(name)
            if texts is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            else:
                quoted = [f'"{t}"' for t in texts]
                response.answer.append(dns.rrset.from_text(name, 60, "IN", "TXT", *quoted))
            sock.sendto(response.to_wire(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        sock.close()


OTHER = "12D3KooWGJgrwNyt6xdxbn6GkzD5uTZRV6wtmWkCZxiRqKNe1nUT"


def test_dnsaddr_bootstrap_is_resolved_and_dialled() -> None:
    # mDNS off: a node on this machine's loopback that mDNS finds would be listed too (it
    # happened once with the nodes of a notebook kernel that was still shutting down).
    with ucsdk.Node.development(enable_mdns=False) as target:
        transport = target.addrs[0].split("/p2p/")[0]
        records = {
            "_dnsaddr.bootstrap.example.test.": [
                f"dnsaddr=/dnsaddr/nested.example.test/p2p/{target.peer_id}",
                f"dnsaddr=/ip4/127.0.0.1/tcp/1/p2p/{OTHER}",
            ],
            "_dnsaddr.nested.example.test.": [f"dnsaddr={transport}/p2p/{target.peer_id}"],
        }
        with (
            dns_server(records) as server,
            ucsdk.Node.development(
                connect_to_bootstrap=True,
                bootstrap_peers=[f"/dnsaddr/bootstrap.example.test/p2p/{target.peer_id}"],
                dns_nameservers=[server],
                enable_mdns=False,
            ) as node,
        ):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not node.metrics().active_connections:
                time.sleep(0.05)
            peers = node.peers().set_index("peer_id")
            assert bool(peers.loc[target.peer_id, "connected"])
            assert "bootstrap" in peers.loc[target.peer_id, "sources"]
            # The other peer's entry in the same TXT set was filtered out.
            assert OTHER not in peers.index
            assert list(peers.index) == [target.peer_id]


def test_unresolvable_dnsaddr_fails_fast_and_says_why() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    with dns_server({}) as server:
        for nameserver, reason in ((server, "does not exist"), (closed, "no DNS server")):
            with ucsdk.Node.development(
                connect_to_bootstrap=True,
                bootstrap_peers=ucsdk.IPFS_BOOTSTRAP_PEERS[:1],
                dns_nameservers=[nameserver],
            ) as node:
                started = time.monotonic()
                events = node.events()
                while time.monotonic() - started < 5 and "bootstrap_unresolved" not in set(
                    events["kind"]
                ):
                    time.sleep(0.05)
                    events = node.events()
                unresolved = events[events["kind"] == "bootstrap_unresolved"]
                assert len(unresolved) >= 1, list(events["kind"])
                assert time.monotonic() - started < 5
                assert reason in unresolved.iloc[0]["detail"], unresolved.iloc[0]["detail"]
