"""A new stream's protocol negotiation (``ucsdk._multiselect``) and Yamux's window credit
and close (``ucsdk._yamux``), over real sockets, with ucsdk hosts and plain py-libp2p
ones."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.host.exceptions import StreamFailure
from libp2p.peer.peerinfo import info_from_p2p_addr

from ucsdk import ConnectivityConfig, _multiselect, _yamux
from ucsdk._multiselect import ProtocolRejected, confirm_protocol
from ucsdk._wire import read_exactly
from ucsdk.host import build_host
from ucsdk.identity import new_key_pair

ECHO = TProtocol("/ucsdk-test/echo/1.0.0")
ABSENT = TProtocol("/ucsdk-test/absent/1.0.0")
LISTEN = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]


def _ucsdk_host() -> IHost:
    return build_host(ConnectivityConfig.preset("development", enable_mdns=False), new_key_pair())


def _plain_host() -> IHost:
    return new_host(key_pair=create_new_key_pair(), listen_addrs=LISTEN)


async def _echo(stream: INetStream) -> None:
    try:
        while data := await stream.read(65536):
            await stream.write(data)
    except Exception:
        return
    finally:
        await stream.close()


async def _echo_once(dialer: IHost, listener: IHost, protocols: list[TProtocol]) -> bytes:
    stream = await dialer.new_stream(listener.get_id(), protocols)
    await stream.write(b"hello")
    answer = await read_exactly(stream, 5)
    await stream.close()
    return answer


def _protocols(a: IHost, b: IHost) -> list[str]:
    try:
        return list(a.get_peerstore().get_protocols(b.get_id()))
    except Exception:
        return []


def _pair(
    make_a: Callable[[], IHost],
    make_b: Callable[[], IHost],
    body: Callable[[IHost, IHost], Awaitable[Any]],
) -> Any:
    """Run ``body(a, b)`` with ``a`` connected to ``b``, both serving ``ECHO``."""
    a, b = make_a(), make_b()
    for host in (a, b):
        host.set_stream_handler(ECHO, _echo)

    async def main() -> Any:
        async with a.run(LISTEN), b.run(LISTEN):
            target = str(b.get_addrs()[0])
            if "/p2p/" not in target:
                target += f"/p2p/{b.get_id()}"
            await a.connect(info_from_p2p_addr(multiaddr.Multiaddr(target)))
            with trio.fail_after(10):
                # Identify over (it replaces the peer's protocols a test may add).
                while str(ECHO) not in _protocols(a, b):
                    await trio.sleep(0.01)
                return await body(a, b)

    return trio.run(main)


@pytest.mark.parametrize("dialer", ["ucsdk", "plain"])
def test_streams_negotiate_between_ucsdk_and_plain_py_libp2p(dialer: str) -> None:
    """A plain py-libp2p dialer waits for the listener's header before it proposes: the
    ucsdk listener must not wait for the proposal first. A plain listener answers a
    ucsdk dialer's header-and-proposal write."""
    hosts = (_ucsdk_host, _plain_host) if dialer == "ucsdk" else (_plain_host, _ucsdk_host)

    async def body(a: IHost, b: IHost) -> list[bytes]:
        return [
            await _echo_once(a, b, [ECHO]),
            # The first proposal refused (na), the second taken.
            await _echo_once(a, b, [ABSENT, ECHO]),
        ]

    assert _pair(*hosts, body) == [b"hello", b"hello"]


@pytest.fixture
def optimistic(monkeypatch: pytest.MonkeyPatch) -> None:
    """Optimistic selection on (it is off by default: see ``_multiselect.OPTIMISTIC``)."""
    monkeypatch.setattr(_multiselect, "OPTIMISTIC", True)


@pytest.mark.usefixtures("optimistic")
def test_a_protocol_the_peer_announced_is_used_without_waiting() -> None:
    async def body(a: IHost, b: IHost) -> tuple[int, bytes]:
        a.get_peerstore().add_protocols(b.get_id(), [str(ECHO)])
        before = _multiselect.optimistic_streams
        answer = await _echo_once(a, b, [ECHO])
        return _multiselect.optimistic_streams - before, answer

    assert _pair(_ucsdk_host, _ucsdk_host, body) == (1, b"hello")


@pytest.mark.usefixtures("optimistic")
def test_confirm_protocol_waits_for_the_echo_and_raises_a_refusal() -> None:
    """A ping confirms the protocol before it times its first round trip."""

    async def body(a: IHost, b: IHost) -> tuple[bool, bool]:
        a.get_peerstore().add_protocols(b.get_id(), [str(ECHO), str(ABSENT)])
        stream = await a.new_stream(b.get_id(), [ECHO])
        pending = "read" in vars(stream)
        await confirm_protocol(stream)
        confirmed = "read" not in vars(stream)
        await stream.close()
        refused = await a.new_stream(b.get_id(), [ABSENT])
        with pytest.raises(ProtocolRejected):
            await confirm_protocol(refused)
        return pending, confirmed

    assert _pair(_ucsdk_host, _ucsdk_host, body) == (True, True)


@pytest.mark.usefixtures("optimistic")
def test_a_refused_optimistic_proposal_is_a_clear_error_and_the_connection_goes_on() -> None:
    """The peer announced a protocol it does not serve (or no longer): the stream was
    returned at once; its first read raises ProtocolRejected, not garbage or a hang."""

    async def body(a: IHost, b: IHost) -> tuple[str, bytes]:
        a.get_peerstore().add_protocols(b.get_id(), [str(ABSENT)])
        stream = await a.new_stream(b.get_id(), [ABSENT])
        await stream.write(b"data the peer will not take")
        with pytest.raises(ProtocolRejected) as refused:
            await stream.read(100)
        return str(refused.value), await _echo_once(a, b, [ECHO])

    message, answer = _pair(_ucsdk_host, _ucsdk_host, body)
    assert str(ABSENT) in message and "na" in message
    assert answer == b"hello"


def test_optimistic_selection_is_off_by_default() -> None:
    async def body(a: IHost, b: IHost) -> tuple[int, bytes]:
        before = _multiselect.optimistic_streams
        answer = await _echo_once(a, b, [ECHO])
        return _multiselect.optimistic_streams - before, answer

    assert _pair(_ucsdk_host, _ucsdk_host, body) == (0, b"hello")


def test_an_unannounced_unsupported_protocol_fails_at_open() -> None:
    async def body(a: IHost, b: IHost) -> bytes:
        with pytest.raises(StreamFailure):
            await a.new_stream(b.get_id(), [ABSENT])
        return await _echo_once(a, b, [ECHO])

    assert _pair(_ucsdk_host, _ucsdk_host, body) == b"hello"


def test_megabytes_flow_through_batched_window_credit() -> None:
    """Credit comes in batches (half a window): a transfer larger than many windows, in
    small and large reads, still arrives whole, in both directions."""
    payload = bytes(range(256)) * 8192  # 2 MiB

    async def body(a: IHost, b: IHost) -> tuple[bool, int]:
        before = _yamux.batched_updates
        stream = await a.new_stream(b.get_id(), [ECHO])
        received = bytearray()

        async def send() -> None:
            for at in range(0, len(payload), 50_000):
                await stream.write(payload[at : at + 50_000])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            while len(received) < len(payload):
                received += await stream.read(7 if len(received) < 1000 else 65536)
        await stream.close()
        return bytes(received) == payload, _yamux.batched_updates - before

    whole, updates = _pair(_ucsdk_host, _ucsdk_host, body)
    assert whole
    # 2 MiB each way in a 256 KiB window: credit was given, in batches (not per read).
    assert 0 < updates < 200


HEADER_BYTES = _multiselect.encode_messages([_multiselect.HEADER])
HOSTILE_OPENINGS = {
    "a length varint that never ends": HEADER_BYTES + b"\xff" * 12,
    "a proposal without its newline": HEADER_BYTES + b"\x17/ucsdk-test/echo/1.0.0X",
    "a proposal longer than any protocol name": HEADER_BYTES + b"\x90\x4e" + b"a" * 9999 + b"\n",
    "a proposal that is not UTF-8": HEADER_BYTES + b"\x05\xff\xfe\xfd\xfc\n",
    "no header, straight to the proposal": _multiselect.encode_messages([str(ECHO)]),
    "a zero-length message": HEADER_BYTES + b"\x00",
}


@pytest.mark.parametrize("opening", list(HOSTILE_OPENINGS), ids=list(HOSTILE_OPENINGS))
def test_a_hostile_opening_gets_no_protocol_and_the_listener_serves_on(opening: str) -> None:
    """The ucsdk listener looks at what the dialer already sent before it answers: bytes
    from a hostile peer, written raw on a new stream (no client-side negotiation), never
    select a protocol, and the next well-formed stream is served."""

    async def body(a: IHost, b: IHost) -> tuple[bytes, bytes]:
        conn = a.get_network().get_connection(b.get_id())
        assert conn is not None
        stream = await conn.new_stream()
        await stream.write(HOSTILE_OPENINGS[opening])
        reply = b""
        with trio.move_on_after(5):
            try:
                while chunk := await stream.read(4096):
                    reply += chunk
            except Exception:
                pass  # reset or closed by the listener: what a refusal looks like
        await stream.reset()
        return reply, await _echo_once(a, b, [ECHO])

    reply, next_answer = _pair(_plain_host, _ucsdk_host, body)
    assert str(ECHO).encode() + b"\n" not in reply  # ECHO was never selected
    assert next_answer == b"hello"
