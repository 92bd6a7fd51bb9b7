"""RFC 5780 NAT behaviour discovery in the lab: classify the NAT in front of a host from
outside, with real STUN Binding messages, the way RFC 5780 §4.3–4.6 does.

A STUN server with two addresses and two ports, ``(IP1, P1)``, ``(IP1, P2)``,
``(IP2, P1)`` and ``(IP2, P2)``, lives on a dedicated public host. This process opens every
socket itself (the server's in the server's namespace, the client's in the host's, see
:func:`ucsdk.lab.net.udp_socket`), so "answer from the other address" needs no
CHANGE-REQUEST attribute: the probe simply answers from the other socket.

- **Mapping** (§4.3): from one client socket, Binding requests to ``(IP1, P1)``,
  ``(IP2, P1)`` and ``(IP2, P2)``. The same mapped address for all three:
  endpoint-independent; the same for the two ``IP2`` ports only: address-dependent;
  otherwise address-and-port-dependent. A mapped address equal to the local one: no NAT.
- **Filtering** (§4.4): a fresh socket asks ``(IP1, P1)``; the answer comes from
  ``(IP2, P2)``. If it arrives: endpoint-independent. Otherwise, from ``(IP1, P2)``: if it
  arrives, address-dependent, else address-and-port-dependent.
- **Port preservation**: the mapped port equals the socket's local port.
- **Hairpinning** (§4.5): a second socket on the host sends a Binding request to the first
  socket's mapped address; does it arrive (and from which source)?
- **Binding lifetime** (§4.6, optional): for each idle wait ``N`` s, a fresh socket asks
  ``(IP1, P1)``, stays silent ``N`` s, then the server sends to its mapping: does it
  arrive? The waits run in parallel.

:meth:`ucsdk.lab.Lab.nat_behaviour` sets up the server host and calls :func:`probe`.

Example (as root):
    >>> import ucsdk.lab
    >>> with ucsdk.lab.Lab() as lab:  # doctest: +SKIP
    ...     host = lab.add_host("a", nat="full_cone", node=False)
    ...     report = lab.nat_behaviour(host, lifetime_waits=(1, 5))
    ...     print(report.mapping, report.filtering)  # endpoint_independent endpoint_independent
    ...     print(report.frame)                        # one row per test
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ucsdk import errors
from ucsdk.lab import net
from ucsdk.lab.stun import StunError, _request, _success, parse_success

#: The server's two ports (the STUN port and the next one).
PORT1, PORT2 = 3478, 3479
#: Classification codes, as in :attr:`ucsdk.lab.NatType.behaviour`.
NO_NAT = "no_nat"
EI = "endpoint_independent"
AD = "address_dependent"
APD = "address_and_port_dependent"
FRAME_COLUMNS = ["test", "from", "to", "observed", "result"]

_servers_lock = threading.Lock()


@dataclass(frozen=True)
class NatBehaviourReport:
    """What an RFC 5780 probe found out about the NAT in front of one lab host.

    ``mapping`` and ``filtering`` are ``"no_nat"`` (mapping only),
    ``"endpoint_independent"``, ``"address_dependent"`` or ``"address_and_port_dependent"``
    (compare :attr:`ucsdk.lab.NatType.behaviour`); ``lifetime`` maps each idle wait
    (seconds) to whether the server's packet still got in after it. ``frame`` has one row
    per test.

    Example:
        >>> report = NatBehaviourReport("a", "10.1.0.2:40000", "198.51.100.10:40000",
        ...     "endpoint_independent", "endpoint_independent", True, False)
        >>> report.matches(("endpoint_independent", "endpoint_independent"))
        True
        >>> list(report.summary())[:3]
        ['host', 'mapping', 'filtering']
    """

    host: str
    local: str
    mapped: str
    mapping: str
    filtering: str
    port_preservation: bool
    hairpinning: bool
    hairpin_source: str | None = None
    lifetime: dict[float, bool] = field(default_factory=dict)
    tests: tuple[dict[str, Any], ...] = ()

    @property
    def frame(self) -> pd.DataFrame:
        """One row per test: ``test``, ``from``, ``to``, ``observed``, ``result``."""
        return pd.DataFrame(list(self.tests), columns=FRAME_COLUMNS)

    def summary(self) -> dict[str, Any]:
        """The classification as one flat dictionary (a row of a comparison table)."""
        row: dict[str, Any] = {
            "host": self.host,
            "mapping": self.mapping,
            "filtering": self.filtering,
            "port_preservation": self.port_preservation,
            "hairpinning": self.hairpinning,
            "local": self.local,
            "mapped": self.mapped,
        }
        for wait, alive in sorted(self.lifetime.items()):
            row[f"alive_after_{wait:g}s"] = alive
        return row

    def matches(self, behaviour: tuple[str, str]) -> bool:
        """Whether ``(mapping, filtering)`` is what was measured."""
        return (self.mapping, self.filtering) == tuple(behaviour)

    def __str__(self) -> str:
        parts = [
            f"mapping {self.mapping}",
            f"filtering {self.filtering}",
            f"port {'preserved' if self.port_preservation else 'not preserved'}",
            f"hairpinning {'yes' if self.hairpinning else 'no'}",
        ]
        parts += [
            f"alive after {w:g}s: {'yes' if a else 'no'}" for w, a in sorted(self.lifetime.items())
        ]
        return f"NAT in front of {self.host}: " + ", ".join(parts)


def _fmt(addr: tuple[str, int] | None) -> str | None:
    return None if addr is None else f"{addr[0]}:{addr[1]}"


def _receive(sock: socket.socket, timeout: float) -> tuple[bytes, tuple[str, int]] | None:
    """One datagram within ``timeout`` s, or ``None``."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([sock], [], [], left)
        if ready:
            data, src = sock.recvfrom(2048)
            return data, (src[0], src[1])


class _Probe:
    def __init__(self, client_ns: str, server_ns: str, ip1: str, ip2: str, timeout: float) -> None:
        self.client_ns = client_ns
        self.timeout = timeout
        self.ip1, self.ip2 = ip1, ip2
        self.servers: dict[tuple[str, int], socket.socket] = {}
        self.clients: list[socket.socket] = []
        self.tests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        for ip in (ip1, ip2):
            for port in (PORT1, PORT2):
                self.servers[(ip, port)] = net.udp_socket(server_ns, (ip, port))

    def close(self) -> None:
        for sock in [*self.servers.values(), *self.clients]:
            sock.close()

    def client(self) -> socket.socket:
        sock = net.udp_socket(self.client_ns)
        with self._lock:
            self.clients.append(sock)
        return sock

    def note(self, test: str, src: str | None, dst: str | None, observed: Any, result: Any) -> None:
        with self._lock:
            self.tests.append(
                {"test": test, "from": src, "to": dst, "observed": observed, "result": result}
            )

    def ask(self, client: socket.socket, server: tuple[str, int]) -> tuple[str, int]:
        """A Binding request from ``client`` to ``server``; the mapped address it reports
        (the server answers from the socket that was asked)."""
        srv = self.servers[server]
        for _ in range(3):
            txid = os.urandom(12)
            client.sendto(_request(txid), server)
            got = _receive(srv, self.timeout)
            if got is None:
                continue
            data, src = got
            if data[8:20] != txid:
                continue
            srv.sendto(_success(txid, src), src)
            answer = _receive(client, self.timeout)
            if answer is None:
                continue
            try:
                return parse_success(answer[0], txid)
            except StunError:
                continue
        raise errors.LabError(
            f"RFC 5780 probe from {self.client_ns}",
            "NoAnswer",
            f"no STUN answer from {server[0]}:{server[1]} (is outbound UDP blocked?)",
        )

    def answered_from(
        self, client: socket.socket, server: tuple[str, int], source: tuple[str, int]
    ) -> tuple[bool, tuple[str, int]]:
        """Ask ``server``, answer from ``source`` instead: whether the answer arrived, and
        the mapping the request came from."""
        txid = os.urandom(12)
        client.sendto(_request(txid), server)
        got = _receive(self.servers[server], self.timeout)
        if got is None:
            raise errors.LabError(
                f"RFC 5780 probe from {self.client_ns}",
                "NoAnswer",
                f"{server[0]}:{server[1]} got no request",
            )
        mapped = got[1]
        self.servers[source].sendto(_success(txid, mapped), mapped)
        answer = _receive(client, self.timeout)
        return answer is not None and answer[0][8:20] == txid, mapped


def probe(
    host: str,
    client_ns: str,
    server_ns: str,
    ip1: str,
    ip2: str,
    *,
    local_ip: str,
    lifetime_waits: Sequence[float] = (),
    timeout: float = 1.0,
) -> NatBehaviourReport:
    """Classify the NAT between namespace ``client_ns`` (whose address is ``local_ip``) and
    a server namespace ``server_ns`` that has both ``ip1`` and ``ip2``
    (see the module's description). ``timeout``: how long to wait for one packet; a test
    whose packet does not arrive takes that long."""
    with _servers_lock:
        p = _Probe(client_ns, server_ns, ip1, ip2, timeout)
        try:
            return _run(p, host, local_ip, lifetime_waits)
        finally:
            p.close()


def _run(
    p: _Probe, host: str, local_ip: str, lifetime_waits: Sequence[float]
) -> NatBehaviourReport:
    s11, s21, s22, s12 = (p.ip1, PORT1), (p.ip2, PORT1), (p.ip2, PORT2), (p.ip1, PORT2)
    lifetime: dict[float, bool] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, len(lifetime_waits)))
    # The lifetime waits are the long part: open their mappings first (one at a time: only
    # this thread reads the server's sockets), wait in parallel while the rest runs.
    futures = [pool.submit(_lifetime, p, *_open(p), float(w)) for w in lifetime_waits]
    try:
        # Mapping (RFC 5780 §4.3).
        client = p.client()
        local_port = client.getsockname()[1]
        local = (local_ip, local_port)
        mapped = {}
        for server in (s11, s21, s22):
            mapped[server] = p.ask(client, server)
            p.note("mapping", _fmt(local), _fmt(server), _fmt(mapped[server]), None)
        first = mapped[s11]
        if first == local:
            mapping = NO_NAT
        elif mapped[s21] == first:
            mapping = EI if mapped[s22] == first else APD
        else:
            mapping = AD if mapped[s22] == mapped[s21] else APD
        p.tests[-1]["result"] = mapping
        preserved = first[1] == local_port
        p.note("port preservation", _fmt(local), _fmt(s11), _fmt(first), preserved)

        # Filtering (§4.4): a fresh socket that only contacted (IP1, P1).
        fresh = p.client()
        fresh_local = _fmt((local_ip, fresh.getsockname()[1]))
        arrived, fresh_mapped = p.answered_from(fresh, s11, s22)
        p.note(
            "filtering: answer from other ip+port",
            _fmt(s22),
            fresh_local,
            _fmt(fresh_mapped),
            arrived,
        )
        if arrived:
            filtering = EI
        else:
            arrived, _ = p.answered_from(fresh, s11, s12)
            p.note("filtering: answer from other port", _fmt(s12), fresh_local, None, arrived)
            filtering = AD if arrived else APD

        # Hairpinning (§4.5): a second local socket sends to the first one's mapping.
        other = p.client()
        txid = os.urandom(12)
        other.sendto(_request(txid), first)
        got = _receive(client, p.timeout)
        hairpin = got is not None and got[0][8:20] == txid
        source = _fmt(got[1]) if hairpin and got is not None else None
        p.note(
            "hairpinning", _fmt((local_ip, other.getsockname()[1])), _fmt(first), source, hairpin
        )
        for wait, future in zip(lifetime_waits, futures, strict=True):
            lifetime[float(wait)] = future.result()
    finally:
        pool.shutdown(wait=True)
    tests = sorted(p.tests, key=lambda t: str(t["test"]).startswith("lifetime"))
    return NatBehaviourReport(
        host=host,
        local=_fmt(local) or "",
        mapped=_fmt(first) or "",
        mapping=mapping,
        filtering=filtering,
        port_preservation=preserved,
        hairpinning=hairpin,
        hairpin_source=source,
        lifetime=lifetime,
        tests=tuple(tests),
    )


def _open(p: _Probe) -> tuple[socket.socket, tuple[str, int], float]:
    """A fresh client socket with a mapping to ``(IP1, P1)``: socket, mapping, when."""
    client = p.client()
    return client, p.ask(client, (p.ip1, PORT1)), time.monotonic()


def _lifetime(
    p: _Probe, client: socket.socket, mapped: tuple[str, int], since: float, wait: float
) -> bool:
    """After ``wait`` s of silence, does a packet from the server reach the mapping?"""
    server = (p.ip1, PORT1)
    # The idle time is the measurement itself.
    time.sleep(max(0.0, since + wait - time.monotonic()))
    txid = os.urandom(12)
    p.servers[server].sendto(_success(txid, mapped), mapped)
    got = _receive(client, p.timeout)
    alive = got is not None and got[0][8:20] == txid
    p.note(f"lifetime: {wait:g} s idle", _fmt(server), _fmt(mapped), None, alive)
    return alive
