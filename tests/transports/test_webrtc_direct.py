"""WebRTC-Direct between real sockets on loopback: ucsdk to ucsdk through the node API (v1
and v2 dials, a stream of several MB, the certificate across restarts, nothing left after
stop), and the listener against hostile senders of raw UDP: garbage, malformed STUN, bad
USERNAMEs, unknown versions, floods of first contacts from one IP and from many.

The browser side (Chromium dialling a ucsdk node, v1 and v2) is in
tests/browser/test_browser_peer.py.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import string
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aioice import stun
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ucsdk
from tests._util import echo_round_trip, wait_for
from ucsdk.transports.webrtc import WebRTCDirect, WebRTCDirectLimits, webrtc_certificate

LISTEN = "/ip4/127.0.0.1/udp/0/webrtc-direct"
QUIET = {"enable_mdns": False, "enable_dht_discovery": False, "enable_autonat": False}
ICE_CHARS = string.ascii_letters + string.digits + "+/"


def _addr(node: ucsdk.Node) -> str:
    return next(a for a in node.addrs if "/webrtc-direct/" in a)


def _port(node: ucsdk.Node) -> int:
    return int(_addr(node).split("/udp/")[1].split("/")[0])


def _transport(node: ucsdk.Node) -> WebRTCDirect:
    manager = node._manager
    assert manager is not None and manager.webrtc_direct is not None
    return manager.webrtc_direct


def _mux(node: ucsdk.Node) -> Any:
    host = node._manager.host  # type: ignore[union-attr]
    listeners = host.get_network().listeners.values()
    return next(lst._mux for lst in listeners if getattr(lst, "_mux", None) is not None)


def _node(**overrides: Any) -> ucsdk.Node:
    return ucsdk.Node.development(
        listen_addrs=["/ip4/127.0.0.1/tcp/0", LISTEN], **{**QUIET, **overrides}
    )


@pytest.fixture
def pair() -> Iterator[tuple[ucsdk.Node, ucsdk.Node]]:
    a, b = _node(), _node()
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


@pytest.fixture
def server() -> Iterator[ucsdk.Node]:
    node = _node()
    try:
        yield node
    finally:
        node.stop()


def _ufrag(version: int = 1, n: int = 32) -> str:
    return f"libp2p+webrtc+v{version}/" + "".join(secrets.choice(ICE_CHARS) for _ in range(n))


def _binding(username: str, key: str | None = None) -> bytes:
    """A STUN binding request as a WebRTC-Direct dialer's first check (signed with
    ``key`` when given, as ICE signs with the server's password)."""
    msg = stun.Message(
        message_method=stun.Method.BINDING,
        message_class=stun.Class.REQUEST,
        transaction_id=os.urandom(12),
    )
    msg.attributes["USERNAME"] = username
    msg.attributes["PRIORITY"] = 1853824767
    msg.attributes["ICE-CONTROLLING"] = int.from_bytes(os.urandom(8), "big")
    if key is not None:
        msg.add_message_integrity(key.encode())
    return bytes(msg)


def _send(port: int, datagrams: list[bytes], source: str = "127.0.0.1") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        for data in datagrams:
            sock.sendto(data, ("127.0.0.1", port))


def _bridge_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "asyncio-bridge"]


# ------------------------------------------------------------------ through the node API
def test_two_nodes_connect_ping_and_stream_over_webrtc_direct(pair: Any) -> None:
    a, b = pair
    addr = _addr(a)
    assert "/certhash/u" in addr and addr.endswith(f"/p2p/{a.peer_id}")
    assert addr.count("/p2p/") == 1
    info = b.connect(addr)
    assert (info.peer_id, info.transport) == (a.peer_id, "webrtc-direct")
    rtts = b.ping(a.peer_id, count=5)
    assert len(rtts) == 5 and all(0 < r < 1000 for r in rtts)

    # many 16 KiB messages: framing and flow control both ways
    echo_round_trip(a, b, 1024 * 1024 + 17, timeout=60)

    # Both sides name the transport and the direction; the listener knows the dialer's
    # address (py-libp2p leaves it empty).
    assert wait_for(lambda: len(a.connections()) == 1, 10), a.connections()
    row = a.connections().set_index("peer_id").loc[b.peer_id]
    assert (row["transport"], row["direction"]) == ("webrtc-direct", "inbound")
    # The dialer's host candidates include this machine's other interfaces: its checks
    # may come from any of them (over loopback), so only the form is certain.
    assert re.fullmatch(r"/ip4/[0-9.]+/udp/[0-9]+/webrtc-direct", str(row["remote_addr"]))
    row = b.connections().set_index("peer_id").loc[a.peer_id]
    assert (row["transport"], row["direction"]) == ("webrtc-direct", "outbound")
    assert _transport(a).versions["v1"] >= 1


def test_a_v2_dialer_is_accepted_on_the_same_port(pair: Any) -> None:
    """ucsdk's dialer can speak v2 too (no munging); the listener tells the flows apart
    by the ufrag prefix on one UDP port."""
    a, b = pair
    _transport(b)._config.webrtc_direct_dial_version = 2
    assert b.connect(_addr(a)).transport == "webrtc-direct"
    assert b.ping(a.peer_id, count=1)
    assert _transport(a).versions["v2"] >= 1 and not _transport(a).versions["v1"]


def test_the_certhash_survives_a_restart(tmp_path: Path) -> None:
    """The certificate is derived from the host key (go-libp2p does the same since 0.49):
    a browser's cached address keeps working after the node restarts."""
    identity = tmp_path / "identity.key"
    with _node(identity_path=str(identity)) as first:
        before = _addr(first).split("/certhash/")[1].split("/")[0]
    with _node(identity_path=str(identity)) as again:
        after = _addr(again).split("/certhash/")[1].split("/")[0]
    with _node() as other:
        someone_else = _addr(other).split("/certhash/")[1].split("/")[0]
    assert before == after != someone_else
    key = ucsdk.identity.new_key_pair().private_key.to_bytes()
    cert = webrtc_certificate(key).certificate
    assert cert.signature_hash_algorithm is not None
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]


def test_stop_leaves_no_bridge_thread_and_frees_the_port() -> None:
    before = _bridge_threads()
    a, b = _node(), _node()
    b.connect(_addr(a))
    port = _port(a)
    assert len(_bridge_threads()) >= len(before) + 2
    a.stop()
    b.stop()
    assert wait_for(lambda: _bridge_threads() == before, 10), _bridge_threads()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", port))  # released


def test_a_peer_that_went_away_is_dropped() -> None:
    """py-libp2p watches a WebRTC peer connection only until it is up: a peer that stopped
    stayed listed for good (still there after 60 s). ucsdk closes the connection when the
    peer connection fails: at the latest when ICE consent checks go unanswered (~30 s)."""
    a, b = _node(), _node()
    try:
        b.connect(_addr(a))
        assert wait_for(lambda: len(a.connections()) == 1, 10)
    finally:
        b.stop()
    try:
        assert wait_for(lambda: a.connections().empty, 45), a.connections()
    finally:
        a.stop()


def test_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="max_handshakes"):
        WebRTCDirectLimits(max_handshakes=0)
    with pytest.raises(ValueError, match="positive"):
        WebRTCDirectLimits(handshake_timeout=0)


# ------------------------------------------------------------------ hostile senders
def _state(node: ucsdk.Node) -> tuple[int, int]:
    mux = _mux(node)
    return len(mux._by_ufrag), len(mux._by_addr)


def test_garbage_and_malformed_stun_leave_no_state(server: ucsdk.Node) -> None:
    port = _port(server)
    garbage = [os.urandom(n) for n in (1, 19, 100, 1200)]
    # STUN-shaped (binding request header, magic cookie) with a USERNAME attribute that
    # claims 200 bytes and has 4.
    header = b"\x00\x01\x00\x08\x21\x12\xa4\x42" + os.urandom(12)
    malformed = [header + b"\x00\x06\x00\xc8abcd", header[:20]]
    _send(port, garbage + malformed)
    refused = _transport(server).rejections
    assert wait_for(lambda: refused["unroutable"] >= 4, 10), dict(refused)
    assert _state(server) == (0, 0)
    with _node() as dialler:  # still serving
        assert dialler.connect(_addr(server)).peer_id == server.peer_id


@pytest.mark.parametrize(
    ("username", "reason"),
    [
        (_ufrag(1) + "\r\na=candidate:x:" + _ufrag(1), "bad_username"),  # SDP injection
        (_ufrag(1), "bad_username"),  # no client half
        (_ufrag(1) + ":ab", "bad_username"),  # client ufrag under 4 chars
        (_ufrag(1) + ":" + "é" * 8, "bad_username"),  # not ice-chars
        ("libp2p+webrtc+v1/short:abcd", "bad_username"),  # v1 password under 22 chars
        (_ufrag(9) + ":" + "a" * 8, "unknown_version"),
        ("x" * 40 + ":" + "a" * 8, "unknown_version"),  # no version prefix at all
        (_ufrag(1, 300) + ":abcd", "bad_username"),  # over 256 chars
    ],
)
def test_bad_usernames_are_refused_before_any_state(
    server: ucsdk.Node, username: str, reason: str
) -> None:
    refused = _transport(server).rejections
    _send(_port(server), [_binding(username)])
    assert wait_for(lambda: refused[reason] == 1, 10), dict(refused)
    assert sum(refused.values()) == 1
    assert _state(server) == (0, 0)
    assert not _transport(server).versions


def test_a_flood_of_first_contacts_from_one_ip_is_rate_limited(server: ucsdk.Node) -> None:
    """60 valid-looking v1 first contacts from 60 ports of one IP: the token bucket lets
    its burst through (8), refuses the rest before parsing, and what was let through is
    forgotten once its handshake times out."""
    transport = _transport(server)
    transport._config.handshake_timeout = 2.0
    port = _port(server)
    for _ in range(60):
        ufrag = _ufrag(1)
        _send(port, [_binding(f"{ufrag}:{ufrag}", key=ufrag)])
    refused = transport.rejections
    burst = transport.limits.first_contacts_burst
    assert wait_for(lambda: sum(transport.versions.values()) + refused["rate_limited"] == 60, 10)
    assert sum(transport.versions.values()) <= burst + 2  # a few refilled meanwhile
    assert refused["rate_limited"] >= 60 - burst - 2
    assert _state(server)[0] <= burst + 2
    assert wait_for(lambda: _state(server) == (0, 0), 30), _state(server)
    with _node() as dialler:  # the bucket refills: a real dial from that IP gets through
        assert wait_for(lambda: dialler.connect(_addr(server)).peer_id == server.peer_id, 10)


def test_handshakes_in_flight_are_capped_across_ips(server: ucsdk.Node) -> None:
    """One first contact from each of 12 loopback IPs with at most 4 handshakes in flight:
    4 are let through, 8 refused as ``handshakes_full``; once those 4 time out, a real
    dialer is served."""
    transport = _transport(server)
    transport._config.max_in_flight_connections = 4
    transport._config.handshake_timeout = 2.0
    port = _port(server)
    for i in range(12):
        ufrag = _ufrag(1)
        _send(port, [_binding(f"{ufrag}:{ufrag}", key=ufrag)], source=f"127.0.0.{i + 2}")
    refused = transport.rejections
    assert wait_for(lambda: refused["handshakes_full"] == 8, 10), dict(refused)
    assert transport.versions["v1"] == 4
    assert wait_for(lambda: _state(server) == (0, 0), 30), _state(server)
    with _node() as dialler:
        assert dialler.connect(_addr(server)).peer_id == server.peer_id


_ice = st.text(alphabet=ICE_CHARS, min_size=0, max_size=300)
_usernames = st.one_of(
    st.text(max_size=300),
    st.builds(lambda a, b: f"{a}:{b}", _ice, _ice),
    st.builds(lambda v, a, b: f"libp2p+webrtc+v{v}/{a}:{b}", st.integers(0, 12), _ice, _ice),
)
_datagrams = st.one_of(
    st.binary(max_size=1500),
    st.builds(lambda u: _binding(u), _usernames),
    # STUN header (any class and method) with mutated attributes
    st.builds(
        lambda head, body: head[:2] + len(body).to_bytes(2, "big") + head[4:] + body,
        st.binary(min_size=20, max_size=20).map(lambda h: h[:4] + b"\x21\x12\xa4\x42" + h[8:]),
        st.binary(max_size=400),
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(datagrams=st.lists(_datagrams, min_size=1, max_size=4))
def test_fuzzed_datagrams_are_counted_and_the_listener_serves_on(
    fuzz_server: ucsdk.Node, datagrams: list[bytes]
) -> None:
    """Arbitrary datagrams, binding requests with arbitrary USERNAMEs and STUN headers with
    mutated attributes, from one fresh source each: every one is counted (a refusal) or let
    through as a first contact (a version), nothing is left for long, the node answers."""
    transport = _transport(fuzz_server)
    seen = sum(transport.rejections.values()) + sum(transport.versions.values())
    for data in datagrams:
        _send(_port(fuzz_server), [data], source=f"127.0.{secrets.randbelow(200) + 1}.9")
    assert wait_for(
        lambda: (
            sum(transport.rejections.values()) + sum(transport.versions.values())
            == seen + len(datagrams)
        ),
        10,
    ), (datagrams, dict(transport.rejections))


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[ucsdk.Node]:
    node = _node()
    _transport(node)._config.handshake_timeout = 1.0
    try:
        yield node
        # After hundreds of inputs, nothing lingers and a real dialer is served.
        assert wait_for(lambda: _state(node) == (0, 0), 30), _state(node)
        with _node() as dialler:
            assert dialler.connect(_addr(node)).peer_id == node.peer_id
    finally:
        node.stop()
