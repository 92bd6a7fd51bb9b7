"""Property-based fuzzing of every ucsdk handler that parses network input.

Shared by ``tests/security/test_fuzz.py`` (a bounded number of examples in CI) and
``bench/fuzz.py`` (``make fuzz``: minutes, and a table of handlers x cases x outcomes).

A :class:`FuzzRig` runs a victim :class:`ucsdk.Node` (relay server, AutoNAT server, DHT,
pubsub discovery and mDNS on loopback, ``auto_dial`` off so nothing it hears makes it dial),
a relay node the victim reserves on (DCUtR is only spoken over relayed connections) which
is also the good peer that pings the victim, and two attacker processes
(``tests/_attacker.py``): one connected directly, one that reaches the victim only through
the relay. Hypothesis generates the input; :meth:`FuzzRig.case` sends it over a real
stream (or UDP for mDNS) and classifies what the node did with it:

``accepted``
    a well-formed request the handler served (an answer, or a legitimate refusal such as
    "no reservation" or "dial refused");
``rejected-counted``
    the handler's ``dropped`` counter (``get_metrics().invalid_message_kinds``) grew;
``ignored-by-zeroconf``
    mDNS only, not counted: a packet zeroconf drops before ucsdk sees it (not DNS, not
    an announcement of the node's service type), or an announcement ucsdk took;
``UNCOUNTED``
    rejected (an error status, a reset or silence) without any counter growing: a defect;
``HANDLER-STOPPED``
    mDNS only: after the input, a good announcement is no longer heard: a defect.

Why Hypothesis: its strategies compose protobuf-like structures (typed fields, lists,
absurd values) and byte-level mutations of them; a failure is shrunk to a minimal input
and kept in its example database, so it is replayed first next run; ``deadline`` and
``max_examples`` bound each run, and the CI part stays small while ``make fuzz`` runs long.

The victim's addresses are loopback only, generated addresses are loopback or garbage, and
a case whose mutation could name another host is discarded (:func:`stays_local`), so
nothing a case says makes any process send traffic off this machine.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import secrets
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import hypothesis.strategies as st
import multiaddr
from _attacker import Attacker
from _hostile_peers import mdns_announcement, send_mdns, txt
from _hostile_peers import wait_until as hostile_wait_until
from libp2p.kad_dht.pb.kademlia_pb2 import Message as DhtMessage
from libp2p.peer.id import ID

import ucsdk
from ucsdk._wire import encode_uvarint
from ucsdk.nat import relay as relay_mod
from ucsdk.nat.autonat import AUTONAT_PROTOCOL
from ucsdk.nat.dcutr import DCUTR_PROTOCOL
from ucsdk.proto import AutoNATMessage, HolePunch, HopMessage, Peer, StopMessage

KAD_PROTOCOL = "/ipfs/kad/1.0.0"
ACCEPTED, COUNTED, ZEROCONF, UNCOUNTED, STOPPED = (
    "accepted",
    "rejected-counted",
    "ignored-by-zeroconf",
    "UNCOUNTED",
    "HANDLER-STOPPED",
)
DEFECTS = (UNCOUNTED, STOPPED)
RSS_BOUND_MB = 150  # growth of this process (node + harness) over a whole run

MDNS_NAME = f"fz{os.getpid() % 100000}"  # this process's own service type: no other node's
MDNS_SERVICE_TYPE = f"_{MDNS_NAME}._udp.local."


def mdns_ptr_elsewhere(service_type: str = MDNS_SERVICE_TYPE) -> bytes:
    """An answer whose PTR for ``service_type`` names an instance of another type: zeroconf's
    ``get_service_info`` raises ``BadTypeInNameException`` for it (found by fuzzing)."""
    from _hostile_peers import _name, _record

    answer = _record(service_type, 12, _name("x._other._udp.local."))
    return struct.pack("!HHHHHH", 0, 0x8400, 0, 1, 0, 0) + answer


# -------------------------------------------------------------------- strategies
_U32 = st.one_of(st.integers(0, 3), st.integers(0, 2**32 - 1))
_U64 = st.one_of(st.integers(0, 3), st.just(2**64 - 1), st.integers(0, 2**64 - 1))
_ENUM = st.one_of(st.integers(0, 5), st.integers(-(2**31), 2**31 - 1))


def _tcp(ip: str, port: int) -> bytes:
    return multiaddr.Multiaddr(f"/ip4/{ip}/tcp/{port}").to_bytes()


def _quic(ip: str, port: int) -> bytes:
    return multiaddr.Multiaddr(f"/ip4/{ip}/udp/{port}/quic-v1").to_bytes()


# Addresses a case may carry: loopback, or not an address at all (see ``stays_local``).
_IP = st.sampled_from(["127.0.0.1", "127.0.0.2", "127.255.255.254", "0.0.0.0"])
_PORT = st.one_of(st.just(0), st.just(65535), st.integers(1, 65535))
ADDR = st.one_of(
    st.builds(_tcp, _IP, _PORT),
    st.builds(_quic, _IP, _PORT),
    st.binary(max_size=48),
)


def _addrs(max_size: int) -> st.SearchStrategy[list[bytes]]:
    return st.one_of(st.lists(ADDR, max_size=4), st.lists(ADDR, max_size=max_size))


PEER_BYTES = st.one_of(st.just(b""), st.binary(max_size=40), st.just(b"\x00\x24" + b"\x08" * 36))


_LOCAL_IPS = ("127.", "0.0.0.0", "::1", "::")


def _local_ip(text: str) -> bool:
    return text.startswith(_LOCAL_IPS) or text in ("::1", "::")


def _addr_is_local(raw: bytes) -> bool:
    """False if ``raw`` decodes to a multiaddr naming a host off this machine."""
    try:
        parts = str(multiaddr.Multiaddr(raw)).split("/")
    except Exception:
        return True  # not an address: nothing to dial
    for i, part in enumerate(parts[:-1]):
        if part in ("ip4", "ip6") and not _local_ip(parts[i + 1]):
            return False
        if part in ("dns", "dns4", "dns6", "dnsaddr") and parts[i + 1] != "localhost":
            return False
    return True


def _unframe(data: bytes) -> bytes:
    size, i = 0, 0
    for i, byte in enumerate(data[:10]):
        size |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return data[i + 1 : i + 1 + size]
    return data


def stays_local(data: bytes, message_type: Any = None) -> bool:
    """Could ``data`` name an address off this machine (a mutation can turn 127.0.0.1
    into a public IP)?  Cases that could are discarded, so that nothing a discovery or
    hole-punch handler learns from a case is ever dialled off loopback."""
    for text in re.findall(rb"/ip[46]/([^/\x00-\x1f]*)", data):
        if not _local_ip(text.decode("latin-1")):
            return False
    if re.search(rb"/dns[46a-z]*/", data):
        return False
    if message_type is None:
        return True
    candidates = [data, _unframe(data)]
    for candidate in candidates:
        try:
            message = message_type.FromString(candidate)
        except Exception:
            continue
        if not all(_addr_is_local(raw) for raw in _addr_fields(message)):
            return False
    return True


def _addr_fields(message: Any) -> list[bytes]:
    """Every repeated bytes field anywhere in ``message`` (the address lists)."""
    out: list[bytes] = []
    for descriptor, value in message.ListFields():
        if descriptor.type == descriptor.TYPE_MESSAGE:
            items = value if descriptor.is_repeated else [value]
            for item in items:
                out.extend(_addr_fields(item))
        elif descriptor.type == descriptor.TYPE_BYTES:
            out.extend(value if descriptor.is_repeated else [value])
    return out


def mutate(data: bytes) -> st.SearchStrategy[bytes]:
    """Byte-level mutations of ``data``: unchanged, truncated, a byte flipped, bytes
    inserted or deleted, or doubled."""
    n = len(data)

    def flip(i: int, bit: int) -> bytes:
        if not n:
            return data
        i %= n
        return data[:i] + bytes([data[i] ^ (1 << bit)]) + data[i + 1 :]

    return st.one_of(
        st.just(data),
        st.integers(0, max(n - 1, 0)).map(lambda k: data[:k]),
        st.builds(flip, st.integers(0, 10**6), st.integers(0, 7)),
        st.builds(
            lambda i, extra: data[: i % (n + 1)] + extra + data[i % (n + 1) :],
            st.integers(0, 10**6),
            st.binary(min_size=1, max_size=16),
        ),
        st.builds(
            lambda i, k: data[: i % (n + 1)] + data[i % (n + 1) + k :],
            st.integers(0, 10**6),
            st.integers(1, 8),
        ),
        st.just(data + data),
    )


def framed(payloads: st.SearchStrategy[bytes], max_size: int = 4096) -> st.SearchStrategy[bytes]:
    """One length-prefixed frame of a generated payload, or framing gone wrong: a
    truncated varint, an over-long varint, a length past the limit, a length that lies,
    no prefix at all."""
    return st.one_of(
        payloads.map(lambda p: encode_uvarint(len(p)) + p),
        payloads.map(lambda p: encode_uvarint(len(p)) + p),
        st.integers(1, 9).map(lambda k: b"\xff" * k),  # varint cut off
        st.just(b"\xff" * 10 + b"\x01"),  # a varint longer than 64 bits
        st.builds(
            lambda extra, p: encode_uvarint(max_size + extra) + p,
            st.one_of(st.integers(1, 10), st.just(2**40)),
            st.binary(max_size=64),
        ),  # oversize
        st.builds(
            lambda p, delta: encode_uvarint(len(p) + delta) + p,
            payloads,
            st.integers(1, 100),
        ),  # a length longer than what follows
        payloads,  # no length prefix
        st.binary(max_size=256),
    )


def proto_mutations(messages: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Serialised messages, then byte mutations of them (mutations of valid protobufs)."""
    return messages.flatmap(mutate)


def _typed(kind: int, message: Any) -> bytes:
    """``message`` serialised with field 1 (``type`` in every message here) set to ``kind``,
    written by hand: protobuf's Python API refuses enum values the schema does not name,
    and a hostile peer sends them anyway."""
    return b"\x08" + encode_uvarint(kind % 2**64) + message.SerializeToString()


def _autonat(kind: int, peer_id: bytes | None, addrs: list[bytes], with_dial: bool) -> bytes:
    message = AutoNATMessage()
    if with_dial:
        message.dial.peer.addrs.extend(addrs)
        if peer_id is not None:
            message.dial.peer.id = peer_id
    return _typed(kind, message)


def autonat_requests(own_id: bytes) -> st.SearchStrategy[bytes]:
    messages = st.builds(
        _autonat,
        st.one_of(st.just(0), _ENUM),  # 0 is DIAL
        st.one_of(st.none(), st.just(own_id), PEER_BYTES),
        _addrs(400),
        st.booleans(),
    )
    return framed(proto_mutations(messages))


def _hop(kind: int, peer_id: bytes | None, addrs: list[bytes], duration: int, data: int) -> bytes:
    message = HopMessage()
    if peer_id is not None:
        message.peer.id = peer_id
        message.peer.addrs.extend(addrs)
    message.limit.duration = duration
    message.limit.data = data
    return _typed(kind, message)


def hop_requests(own_id: bytes, victim_id: bytes) -> st.SearchStrategy[bytes]:
    messages = st.builds(
        _hop,
        st.one_of(st.sampled_from([0, 1, 2]), _ENUM),  # RESERVE, CONNECT, STATUS
        st.one_of(st.none(), st.just(own_id), st.just(victim_id), PEER_BYTES),
        _addrs(300),
        _U32,
        _U64,
    )
    return framed(proto_mutations(messages))


def _stop(kind: int, peer_id: bytes | None, duration: int, data: int, status: int) -> bytes:
    message = StopMessage()
    if peer_id is not None:
        message.peer.id = peer_id
    message.limit.duration = duration
    message.limit.data = data
    if status:
        message.status = status
    return _typed(kind, message)


def stop_requests(own_id: bytes) -> st.SearchStrategy[bytes]:
    messages = st.builds(
        _stop,
        st.one_of(st.sampled_from([0, 1]), _ENUM),  # CONNECT, STATUS
        st.one_of(st.none(), st.just(own_id), PEER_BYTES),
        _U32,
        _U64,
        st.sampled_from([0, 100, 200, 202, 400, 401]),
    )
    return framed(proto_mutations(messages))


def _holepunch(kind: int, addrs: list[bytes]) -> bytes:
    return _typed(kind, HolePunch(ObsAddrs=addrs))


def dcutr_messages() -> st.SearchStrategy[bytes]:
    """One DCUtR frame then the end of the stream: never a SYNC after a CONNECT, so no
    case makes the node punch."""
    messages = st.builds(_holepunch, st.one_of(st.sampled_from([100, 300]), _ENUM), _addrs(300))
    return framed(proto_mutations(messages)).filter(lambda d: stays_local(d, HolePunch))


def _dht(kind: int, key: bytes, peers: list[tuple[bytes, list[bytes]]], level: int) -> bytes:
    message = DhtMessage(key=key, clusterLevelRaw=level)
    for peer_id, addrs in peers:
        peer = message.closerPeers.add()
        peer.id = peer_id
        peer.addrs.extend(addrs)
    return _typed(kind, message)


def dht_messages() -> st.SearchStrategy[bytes]:
    messages = st.builds(
        _dht,
        st.one_of(st.integers(0, 5), _ENUM),
        st.binary(max_size=80),
        st.lists(st.tuples(PEER_BYTES, _addrs(8)), max_size=6),
        st.integers(0, 2**31 - 1),
    )
    return framed(proto_mutations(messages), max_size=16 * 1024).filter(
        lambda d: stays_local(d, DhtMessage)
    )


def announcements(public_key: bytes) -> st.SearchStrategy[bytes]:
    """Pubsub discovery records (a ``Peer`` with a key and addresses), their own key or not."""
    key = st.one_of(st.just(public_key), st.binary(max_size=40))
    addrs = st.one_of(
        st.lists(ADDR, max_size=4),
        st.lists(ADDR, min_size=50, max_size=200),
        st.builds(lambda: [_tcp("127.0.0.1", 4001)] * 10_000),  # 10k addresses (oversized)
    )
    messages = st.builds(lambda k, a: Peer(publicKey=k, addrs=a).SerializeToString(), key, addrs)
    return st.one_of(proto_mutations(messages), st.binary(max_size=256)).filter(
        lambda d: stays_local(d, Peer)
    )


def _identify(
    key: bytes | None, agent: str, addrs: list[bytes], observed: bytes | None, protocols: list[str]
) -> bytes:
    from libp2p.identity.identify.pb.identify_pb2 import Identify

    message = Identify(agent_version=agent, listen_addrs=addrs, protocols=protocols)
    if key is not None:
        message.public_key = key
    if observed is not None:
        message.observed_addr = observed
    return message.SerializeToString()


def identify_answers(public_key: bytes) -> st.SearchStrategy[bytes]:
    """Identify answers: the attacker's key or junk, absurd agent strings, many addresses,
    many protocols; then mutated and framed (up to and over the 64 KiB limit)."""
    messages = st.builds(
        _identify,
        st.one_of(st.none(), st.just(public_key), st.binary(max_size=40)),
        st.one_of(st.text(max_size=20), st.just("x" * 5000)),
        _addrs(300),
        st.one_of(st.none(), ADDR),
        st.one_of(st.lists(st.text(max_size=12), max_size=5), st.just(["/p"] * 2000)),
    )
    return framed(proto_mutations(messages), max_size=64 * 1024).filter(lambda d: stays_local(d))


def mdns_packets(service_type: str, peer_id: str) -> st.SearchStrategy[bytes]:
    """mDNS announcements with generated TXT records, their mutations, and raw junk."""
    addr = st.sampled_from(
        [
            f"/ip4/127.0.0.1/tcp/4001/p2p/{peer_id}",
            f"/ip4/127.0.0.1/udp/4001/quic-v1/p2p/{peer_id}",
            "/ip4/127.0.0.1/tcp/4001",
            "/not/a/multiaddr",
            f"/ip4/999.1.1.1/tcp/1/p2p/{peer_id}",
        ]
    )
    value = st.one_of(
        addr.map(lambda a: b"dnsaddr=" + a.encode()),
        st.binary(max_size=80),
        st.just(b"dnsaddr=" + b"/ip4/127.0.0.1" * 17),
    )
    records = st.lists(value, max_size=6).map(lambda vs: txt(*[v[:255] for v in vs]))
    packets = st.builds(
        lambda n, r: mdns_announcement(service_type, f"fz{n:06d}", r),
        st.integers(0, 999_999),
        records,
    )
    return st.one_of(packets.flatmap(mutate), st.binary(max_size=512)).filter(stays_local)


# ------------------------------------------------------------------------ the rig
def dropped_by(node: ucsdk.Node, prefix: str) -> int:
    """The sum of ``<prefix>_<reason>`` drop counters (``relay`` excludes ``relay_client``)."""
    kinds = node.metrics().invalid_message_kinds
    total = 0
    for key, value in kinds.items():
        if not key.startswith(prefix + "_"):
            continue
        if prefix == "relay" and key.startswith("relay_client_"):
            continue
        total += value
    return total


def wait_until(condition: Callable[[], Any], timeout: float, step: float = 0.02) -> bool:
    """:func:`_hostile_peers.wait_until`, polling faster (each fuzz case waits on one)."""
    return hostile_wait_until(condition, timeout, step)


def rss_mb() -> float:
    """Resident set of this process now, in MiB (after a garbage collection).

    Not the peak (``ru_maxrss``): in the test suite's process the peak also holds whatever
    earlier tests and Hypothesis's own shrinking took, and would not come down.
    """
    import gc

    gc.collect()
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status(reply_hex: str, message_type: Any) -> int | None:
    """The status of the first length-prefixed reply, or None if there is none."""
    data = bytes.fromhex(reply_hex)
    if not data:
        return None
    size, shift, i = 0, 0, 0
    while i < len(data) and i < 10:
        size |= (data[i] & 0x7F) << shift
        shift += 7
        i += 1
        if not data[i - 1] & 0x80:
            break
    try:
        message = message_type.FromString(data[i : i + size])
    except Exception:
        return None
    if message_type is AutoNATMessage:
        return int(message.dialResponse.status)
    if message_type is HolePunch:
        return int(message.type)
    return int(message.status)


# Answers that are a handler serving a well-formed request (not a rejection).
_AUTONAT_SERVED = {0, 100, 101}  # OK, E_DIAL_ERROR, E_DIAL_REFUSED
_HOP_SERVED = {
    relay_mod.OK,
    relay_mod.RESERVATION_REFUSED,
    relay_mod.RESOURCE_LIMIT_EXCEEDED,
    relay_mod.CONNECTION_FAILED,
    relay_mod.NO_RESERVATION,
}


@dataclass
class Outcomes:
    """handler -> case -> outcome -> count, for the ``make fuzz`` table."""

    table: dict[str, dict[str, Counter[str]]] = field(default_factory=dict)

    def add(self, handler: str, case: str, outcome: str) -> None:
        self.table.setdefault(handler, {}).setdefault(case, Counter())[outcome] += 1

    def total(self, handler: str) -> int:
        return sum(sum(c.values()) for c in self.table.get(handler, {}).values())

    def render(self) -> str:
        columns = [ACCEPTED, COUNTED, ZEROCONF, UNCOUNTED, STOPPED]
        head = f"{'handler':<11} {'case':<12} " + " ".join(f"{c:>19}" for c in columns)
        lines = [head, "-" * len(head)]
        for handler, cases in sorted(self.table.items()):
            for case, counts in sorted(cases.items()):
                lines.append(
                    f"{handler:<11} {case:<12} "
                    + " ".join(f"{counts.get(c, 0):>19}" for c in columns)
                )
        return "\n".join(lines)


def case_kind(data: bytes) -> str:
    """A coarse name for an input, for the table: how its framing looks."""
    if not data:
        return "empty"
    size, i = 0, 0
    for i, byte in enumerate(data[:10]):
        size |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            break
    else:
        return "bad-varint"
    if data[i] & 0x80:
        return "cut-varint"
    rest = len(data) - i - 1
    if size > 4096:
        return "oversize"
    if size > rest:
        return "short-frame"
    return "frame"


class FuzzRig:
    """The running victim, relay and attackers; :meth:`case` runs one input."""

    HANDLERS = ("autonat", "relay_hop", "relay_stop", "dcutr", "dht", "pubsub", "mdns", "identify")

    def __init__(self) -> None:
        self.outcomes = Outcomes()
        self.uncounted: list[tuple[str, str, dict[str, Any]]] = []
        self._stack = contextlib.ExitStack()
        self.mdns_name = MDNS_NAME
        self.service_type = MDNS_SERVICE_TYPE

    # -------------------------------------------------------------- lifecycle
    def __enter__(self) -> FuzzRig:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def _start(self) -> None:
        enter = self._stack.enter_context
        self.relay = enter(
            ucsdk.Node.development(
                enable_mdns=False,
                enable_relay_server=True,
                enable_dht_discovery=False,
                enable_pubsub_discovery=False,
                auto_dial=False,
            )
        )
        self.victim = enter(
            ucsdk.Node.development(
                enable_relay_server=True,
                mdns_service_name=self.mdns_name,
                mdns_interfaces=["127.0.0.1"],
                mdns_query_interval=60.0,
                relay_auto_reserve=False,
                auto_dial=False,
            )
        )
        self.victim.connect(self.relay.addrs[0])
        self.victim.reserve(self.relay.addrs[0], timeout=20)
        self.direct = enter(Attacker())
        self.direct.run("connect", addr=self.victim.addrs[0])
        self.relayed = enter(Attacker())
        self.identifier = enter(Attacker())
        manager = self.victim.manager
        self.victim_id = ID.from_base58(self.victim.peer_id).to_bytes()
        self.attacker_id = ID.from_base58(self.direct.peer_id).to_bytes()
        # An Ed25519 peer id is the identity multihash of the protobuf public key.
        self.attacker_key = self.attacker_id[2:]
        self.topic = manager.pubsub_discovery.topics[0]
        self.relay_full = f"{self.relay.addrs[0]}"
        self.rss_start = rss_mb()
        assert wait_until(self.healthy, 30), self.victim.services()

    # -------------------------------------------------------------- checks
    def healthy(self) -> bool:
        """Every service of the victim running, and it answers a good peer's ping."""
        frame = self.victim.services()
        if set(frame["state"]) != {"running"}:
            return False
        return len(self.relay.ping(self.victim.peer_id, count=1, timeout=10)) == 1

    def bounded(self) -> dict[str, Any]:
        """Table sizes against their caps, and RSS growth in MiB."""
        manager = self.victim.manager
        server = manager.relay_server
        return {
            "peers": (len(manager.peers.snapshots()), manager.peers.max_peers),
            "reservations": (len(server.reservations), server.max_reservations),
            "circuits": (len(server.circuits), server.max_circuits),
            "rss_growth_mb": round(rss_mb() - self.rss_start, 1),
        }

    def assert_bounded(self) -> None:
        sizes = self.bounded()
        for name in ("peers", "reservations", "circuits"):
            used, cap = sizes[name]
            assert used <= cap, (name, used, cap)
        assert sizes["rss_growth_mb"] < RSS_BOUND_MB, sizes

    # -------------------------------------------------------------- strategies
    def strategy(self, handler: str) -> st.SearchStrategy[bytes]:
        return {
            "autonat": lambda: autonat_requests(self.attacker_id),
            "relay_hop": lambda: hop_requests(self.attacker_id, self.victim_id),
            "relay_stop": lambda: stop_requests(self.attacker_id),
            "dcutr": dcutr_messages,
            "dht": dht_messages,
            "pubsub": lambda: announcements(self.attacker_key),
            "mdns": lambda: mdns_packets(self.service_type, self.direct.peer_id),
            "identify": lambda: identify_answers(self.attacker_key),
        }[handler]()

    # -------------------------------------------------------------- one case
    def case(self, handler: str, data: bytes) -> str:
        """Send ``data`` to ``handler``; the outcome (recorded in :attr:`outcomes`)."""
        outcome, info = getattr(self, f"_case_{handler}")(data)
        kind = "packet" if handler in ("mdns", "pubsub") else case_kind(data)
        self.outcomes.add(handler, kind, outcome)
        if outcome in DEFECTS:
            self.uncounted.append((handler, data.hex(), {"outcome": outcome, **info}))
        return outcome

    def _stream_case(
        self,
        prefix: str,
        protocol: str,
        data: bytes,
        served: Callable[[dict[str, Any]], bool],
        attacker: Attacker | None = None,
        **extra: Any,
    ) -> tuple[str, dict[str, Any]]:
        before = dropped_by(self.victim, prefix)
        answer = (attacker or self.direct).run(
            "fuzz_stream",
            peer=self.victim.peer_id,
            protocol=protocol,
            hex=data.hex(),
            wait=8,
            **extra,
        )
        assert answer["opened"], answer
        if served(answer):
            return ACCEPTED, answer
        if wait_until(lambda: dropped_by(self.victim, prefix) > before, 3):
            return COUNTED, answer
        return UNCOUNTED, answer

    def _case_autonat(self, data: bytes) -> tuple[str, dict[str, Any]]:
        # Served: answered with a dial-back result, or a well-formed DIAL whose dial-back
        # is still running when the attacker stops waiting (a silent QUIC port on
        # loopback takes the whole dial timeout, 10 s per address).
        return self._stream_case(
            "autonat",
            str(AUTONAT_PROTOCOL),
            data,
            lambda a: (
                _status(a["reply_hex"], AutoNATMessage) in _AUTONAT_SERVED
                or (a["ended"] == "timeout" and not a["reply_hex"] and _is_dial(data))
            ),
        )

    def _case_relay_hop(self, data: bytes) -> tuple[str, dict[str, Any]]:
        return self._stream_case(
            "relay",
            str(relay_mod.HOP_PROTOCOL),
            data,
            lambda a: _status(a["reply_hex"], HopMessage) in _HOP_SERVED,
        )

    def _case_relay_stop(self, data: bytes) -> tuple[str, dict[str, Any]]:
        # The attacker is no relay the victim reserved on: every STOP must be refused.
        return self._stream_case(
            "relay_client", str(relay_mod.STOP_PROTOCOL), data, lambda a: False
        )

    def _case_dcutr(self, data: bytes) -> tuple[str, dict[str, Any]]:
        # One frame, then the end of the stream: a CONNECT is answered, then the missing
        # SYNC is counted; anything else is counted at once.
        return self._stream_case(
            "dcutr",
            str(DCUTR_PROTOCOL),
            data,
            lambda a: False,
            attacker=self.relayed,
            relay=f"{self.relay_full}",
        )

    def _case_dht(self, data: bytes) -> tuple[str, dict[str, Any]]:
        # Served: answered; a stream with no request at all is nothing to refuse.
        return self._stream_case(
            "dht", KAD_PROTOCOL, data, lambda a: bool(a["reply_hex"]) or not data
        )

    def _case_pubsub(self, data: bytes) -> tuple[str, dict[str, Any]]:
        discovery = self.victim.manager.pubsub_discovery
        before = dropped_by(self.victim, "pubsub")
        accepted = discovery.announcements_received
        answer = self.direct.run(
            "fuzz_pubsub", peer=self.victim.peer_id, topic=self.topic, hex=data.hex()
        )
        assert answer["sent"], answer

        def seen() -> bool:
            return (
                dropped_by(self.victim, "pubsub") > before
                or discovery.announcements_received > accepted
            )

        if not wait_until(seen, 5):
            return UNCOUNTED, answer
        if dropped_by(self.victim, "pubsub") > before:
            return COUNTED, answer
        return ACCEPTED, answer

    def _case_identify(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """The attacker answers identify with ``data`` and reconnects: the victim asks
        (ucsdk's identify service, and py-libp2p's) and takes the answer in or counts it."""
        peer = self.identifier.peer_id
        before = dropped_by(self.victim, "identify")
        identified = _identified(self.victim, peer)
        answer = self.identifier.run("fuzz_identify", addr=self.victim.addrs[0], hex=data.hex())

        def seen() -> bool:
            return (
                dropped_by(self.victim, "identify") > before
                or _identified(self.victim, peer) > identified
            )

        if not wait_until(seen, 8):
            return UNCOUNTED, answer
        if dropped_by(self.victim, "identify") > before:
            return COUNTED, answer
        return ACCEPTED, answer

    def _case_mdns(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """The packet, then an honest announcement of a fresh peer id: once that one is
        discovered, the fuzzed packet (sent first, on the same socket) was handled."""
        manager = self.victim.manager
        before = dropped_by(self.victim, "mdns")
        sentinel = _fresh_peer_id()
        record = txt(f"dnsaddr=/ip4/127.0.0.1/tcp/9/p2p/{sentinel}".encode())
        send_mdns([data, mdns_announcement(self.service_type, f"s{sentinel[-12:]}", record)])
        if not wait_until(lambda: sentinel in manager.peers, 10):
            return STOPPED, {"sentinel": sentinel}
        if dropped_by(self.victim, "mdns") > before:
            return COUNTED, {}
        # Not counted: zeroconf dropped it before ucsdk saw it (junk DNS, another
        # service type, a record it could not resolve is counted) or ucsdk took it.
        return ZEROCONF, {}


def _identified(node: ucsdk.Node, peer_id: str) -> int:
    return sum(
        1 for e in node.manager.recorder.events() if e.kind == "identified" and e.peer_id == peer_id
    )


def _is_dial(data: bytes) -> bool:
    """Is ``data`` one well-framed AutoNAT DIAL request?"""
    size, i = 0, 0
    for i, byte in enumerate(data[:10]):
        size |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            break
    if len(data) - i - 1 < size:
        return False
    try:
        message = AutoNATMessage.FromString(data[i + 1 : i + 1 + size])
    except Exception:
        return False
    return message.type == 0 and message.HasField("dial")


def _fresh_peer_id() -> str:
    from libp2p.crypto.ed25519 import create_new_key_pair

    return str(ID.from_pubkey(create_new_key_pair(secrets.token_bytes(32)).public_key))


@contextlib.contextmanager
def rig() -> Iterator[FuzzRig]:
    with FuzzRig() as running:
        yield running
