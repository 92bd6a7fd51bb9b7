"""Hostile peers for supervision tests: real py-libp2p hosts and UDP sockets on loopback.

Each :class:`HostilePeer` is a host built the way ucsdk builds hosts, listening on
127.0.0.1, running on a trio loop in a thread of its own (so nothing it does shares the
node under test's loop), with stream handlers that answer what a test scripts: garbage, a
reservation that expires in 2**63 seconds, a message cut off mid-way, silence.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import multiaddr
import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from ucsdk._wire import encode_uvarint, read_delimited, write_delimited
from ucsdk.config import ConnectivityConfig
from ucsdk.host import build_host, disable_auto_dial
from ucsdk.identity import new_key_pair
from ucsdk.nat.relay import HOP_PROTOCOL, OK, RESERVE, STATUS
from ucsdk.proto import HopMessage

Handler = Callable[["HostilePeer", INetStream], Awaitable[None]]

LOOPBACK = ConnectivityConfig.preset("development", enable_mdns=False)


def wait_until(condition: Callable[[], Any], timeout: float, step: float = 0.05) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(step)


class HostilePeer:
    """A libp2p host on 127.0.0.1 in its own thread, answering ``handlers`` its own way.

    Use as a context manager; ``addr`` is its full multiaddr (``.../p2p/<id>``).
    """

    def __init__(self, handlers: dict[str, Handler]) -> None:
        self.handlers = handlers
        self.host: IHost | None = None
        self.streams = 0
        """Streams the handlers were given (any protocol)."""
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="hostile-peer", daemon=True)

    def __enter__(self) -> HostilePeer:
        self._thread.start()
        if not self._ready.wait(30) or self.host is None:
            raise RuntimeError(f"the hostile peer did not start: {self._error!r}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None and self._stop is not None:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._stop.set)
        self._thread.join(15)

    def send(self, peer_id: str, protocol: str, *frames: bytes) -> None:
        """Open ``protocol`` to ``peer_id`` once per frame and write that frame there."""
        assert self.host is not None and self._token is not None
        target = ID.from_base58(peer_id)
        for frame in frames:
            trio.from_thread.run(
                send_junk_to, self.host, target, protocol, frame, trio_token=self._token
            )

    @property
    def peer_id(self) -> str:
        assert self.host is not None
        return self.host.get_id().to_base58()

    @property
    def addr(self) -> str:
        assert self.host is not None
        return f"{self.host.get_transport_addrs()[0]}/p2p/{self.peer_id}"

    def _main(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as exc:  # reported by __enter__ when it never got ready
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        host = build_host(LOOPBACK, new_key_pair())
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            await disable_auto_dial(host)
            for protocol, handler in self.handlers.items():
                host.set_stream_handler(TProtocol(protocol), self._wrap(handler))
            self.host = host
            self._ready.set()
            await self._stop.wait()
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await host.close()

    def _wrap(self, handler: Handler) -> Callable[[INetStream], Awaitable[None]]:
        async def handle(stream: INetStream) -> None:
            self.streams += 1
            with contextlib.suppress(Exception):  # however the victim hangs up
                await handler(self, stream)

        return handle


# ------------------------------------------------------------------- circuit relay
HUGE_EXPIRE = 2**63
YEAR = 365 * 24 * 3600


class ScriptedRelay(HostilePeer):
    """A relay whose answers to successive RESERVE requests follow ``script``.

    Each entry is one of: ``"ok"`` (a reservation for ``ttl`` seconds), ``"huge_expire"``
    (expire 2**63), ``"past_expire"``, ``"far_expire"`` (two years ahead), ``"garbage"``
    (a frame of bytes that are not a HopMessage), ``"cut_off"`` (half a message, then the
    stream closes), ``"silent"`` (no answer, stream held open). The last entry repeats.
    ``answers`` lists what was sent, in order.
    """

    def __init__(self, script: list[str], ttl: int = 4) -> None:
        super().__init__({HOP_PROTOCOL: self._hop})
        self.script = script
        self.ttl = ttl
        self.answers: list[str] = []

    async def _hop(self, _: HostilePeer, stream: INetStream) -> None:
        request = HopMessage.FromString(await read_delimited(stream, 4096))
        if request.type != RESERVE:
            await stream.reset()
            return
        step = self.script[min(len(self.answers), len(self.script) - 1)]
        self.answers.append(step)
        now = int(time.time())
        expire = {
            "ok": now + self.ttl,
            "huge_expire": HUGE_EXPIRE,
            "past_expire": now - 60,
            "far_expire": now + 2 * YEAR,
        }.get(step)
        if expire is not None:
            assert self.host is not None
            reply = HopMessage(type=STATUS, status=OK)
            reply.reservation.expire = expire
            own = str(self.host.get_transport_addrs()[0])
            reply.reservation.addrs.append(multiaddr.Multiaddr(own).to_bytes())
            reply.limit.duration = 120
            reply.limit.data = 1 << 20
            await write_delimited(stream, reply.SerializeToString())
            await stream.close()
        elif step == "garbage":
            await write_delimited(stream, b"\xff" * 12 + b"\x0b\x07garbage")
            await stream.close()
        elif step == "cut_off":
            whole = HopMessage(type=STATUS, status=OK).SerializeToString() + b"\x00" * 40
            await stream.write(encode_uvarint(len(whole)) + whole[:10])
            await stream.close()
        elif step == "silent":
            await trio.sleep(3600)
        else:
            raise AssertionError(f"unknown relay step {step!r}")


# ---------------------------------------------------------------------------- DHT
KAD_PROTOCOL = "/ipfs/kad/1.0.0"

JUNK_FRAMES = [
    b"\x05\xff\xff\xff\xff\xff",  # a frame of bytes no protobuf parses
    b"\x08\x08\xff\xff\xff\xff\xff\xff\xff\xff",  # a field with a varint that never ends
    b"\x0a\x0a\x20\xff\x01",  # a length-delimited field longer than the message
    b"\xff\xff\xff\xff\x0f",  # a 4 GiB length prefix
    b"\x80\x80\x80",  # a length prefix that stops mid-varint
]


async def answer_junk(peer: HostilePeer, stream: INetStream) -> None:
    """A DHT peer that answers every request with junk, a different junk each time."""
    await stream.read(4096)
    await stream.write(JUNK_FRAMES[peer.streams % len(JUNK_FRAMES)])
    await stream.close()


async def send_junk_to(
    host: IHost, peer_id: ID, protocol: str, frame: bytes, linger: float = 0.5
) -> None:
    """Open ``protocol`` to ``peer_id``, write ``frame``, give the peer ``linger`` seconds to
    hang up, then close our side. The peer must have connected to ``host``."""
    with trio.fail_after(5):  # its connection may still be being set up on our side
        while not host.get_network().connections.get(peer_id):
            await trio.sleep(0.01)
    stream = await host.new_stream(peer_id, [TProtocol(protocol)])
    with contextlib.suppress(Exception):
        await stream.write(frame)
        with trio.move_on_after(linger):
            while await stream.read(4096):
                pass
    with contextlib.suppress(Exception):
        await stream.close()


# --------------------------------------------------------------------------- mDNS
MDNS_GROUP = ("224.0.0.251", 5353)


def _name(text: str) -> bytes:
    out = bytearray()
    for label in text.rstrip(".").split("."):
        raw = label.encode()
        out += bytes([len(raw)]) + raw
    return bytes(out + b"\x00")


def _record(name: str, rtype: int, rdata: bytes, ttl: int = 120) -> bytes:
    cache_flush = 0x8001 if rtype != 12 else 0x0001
    return _name(name) + struct.pack("!HHIH", rtype, cache_flush, ttl, len(rdata)) + rdata


def mdns_announcement(service_type: str, instance: str, txt: bytes, port: int = 4001) -> bytes:
    """One mDNS response announcing ``instance`` of ``service_type`` (PTR, SRV, TXT, A) with
    the raw TXT rdata ``txt`` — complete, so a browser needs to ask nothing more."""
    full = f"{instance}.{service_type}"
    server = f"{instance}.local."
    answers = [
        _record(service_type, 12, _name(full)),
        _record(full, 33, struct.pack("!HHH", 0, 0, port) + _name(server)),
        _record(full, 16, txt),
        _record(server, 1, socket.inet_aton("127.0.0.1")),
    ]
    header = struct.pack("!HHHHHH", 0, 0x8400, 0, len(answers), 0, 0)
    return header + b"".join(answers)


def txt(*strings: bytes) -> bytes:
    return b"".join(bytes([len(s)]) + s for s in strings)


def malformed_mdns_packets(service_type: str, peer_id: str) -> dict[str, list[bytes]]:
    """Malformed mDNS input by what the node should make of it.

    ``"malformed"`` and ``"no_dnsaddr"``: well-formed DNS announcing the service with TXT
    records the node must reject (and count by that reason); ``"junk"``: packets no DNS
    parser accepts (zeroconf drops them before the node sees anything).
    """
    counter = itertools.count()

    def announce(record: bytes) -> bytes:
        return mdns_announcement(service_type, f"hostile{next(counter):04d}", record)

    other = "12D3KooWGJgrwNyt6xdxbn6GkzD5uTZRV6wtmWkCZxiRqKNe1nUT"
    malformed = [
        txt(b"dnsaddr=/not/a/multiaddr"),
        txt(b"dnsaddr=/ip4/127.0.0.1/tcp/4001"),  # no /p2p/<id>
        txt(b"dnsaddr=/ip4/127.0.0.1/tcp/4001/p2p/not-a-peer-id"),
        txt(
            f"dnsaddr=/ip4/127.0.0.1/tcp/1/p2p/{peer_id}".encode(),
            f"dnsaddr=/ip4/127.0.0.1/tcp/2/p2p/{other}".encode(),
        ),  # two peers in one record
        b"\x30dnsaddr=/ip4/127.0.0.1",  # a string length past the record's end
        txt(b"dnsaddr=\xff\xfe/ip4"),  # not UTF-8
        txt(b"dnsaddr=/ip4/999.1.1.1/tcp/1/p2p/" + peer_id.encode()),
    ]
    junk = [
        b"",
        b"\x00\x01",  # a header cut short
        struct.pack("!HHHHHH", 0, 0x8400, 0, 40, 0, 0),  # 40 answers promised, none sent
        struct.pack("!HHHHHH", 0, 0x8400, 0, 1, 0, 0) + b"\xc0\x0c" * 4,  # pointer loop
        struct.pack("!HHHHHH", 0, 0x8400, 0, 1, 0, 0) + b"\x3f" + b"a" * 63 + b"\x00",
        bytes(range(256)) * 4,
    ]
    return {
        "malformed": [announce(record) for record in malformed],
        "no_dnsaddr": [announce(txt(b"hello=world")) for _ in range(3)],
        "junk": junk,
    }


def send_mdns(packets: list[bytes]) -> None:
    """Multicast ``packets`` to the mDNS group on loopback only (TTL 1)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        for packet in packets:
            sock.sendto(packet, MDNS_GROUP)


# ------------------------------------------------------------------------- pubsub
MESHSUB = "/meshsub/1.1.0"


def rpc_frame(rpc: Any) -> bytes:
    data = rpc.SerializeToString()
    return encode_uvarint(len(data)) + data


def publish_with_junk_key(topic: str, seqno: int) -> bytes:
    """An RPC publishing one message on ``topic`` from a sender whose key is not in its id
    (a sha2-256 peer id, as RSA keys have), with a ``key`` field that is no key at all."""
    from libp2p.pubsub.pb import rpc_pb2

    sender = b"\x12\x20" + bytes(range(32))
    message = rpc_pb2.Message(
        from_id=sender,
        data=b"hello",
        seqno=seqno.to_bytes(8, "big"),
        topicIDs=[topic],
        signature=b"\x01" * 64,
        key=b"\x0a\x03not a key",
    )
    return rpc_frame(rpc_pb2.RPC(publish=[message]))
