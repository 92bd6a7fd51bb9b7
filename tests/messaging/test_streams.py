"""User streams between real nodes on loopback: handlers (plain and async), blocking and
asyncio streams, length-prefixed messages, limits, timeouts and errors."""

from __future__ import annotations

import asyncio
import hashlib
import threading

import pytest

import ucsdk
from tests._util import wait_for
from ucsdk import errors

QUIET = {"enable_mdns": False, "enable_dht_discovery": False, "enable_autonat": False}


@pytest.fixture
def pair() -> object:
    a, b = ucsdk.Node.development(**QUIET), ucsdk.Node.development(**QUIET)
    try:
        a.connect(b.addrs[0])
        yield a, b
    finally:
        a.stop()
        b.stop()


def test_a_plain_handler_echoes_length_prefixed_messages(pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    seen: list[str] = []

    def echo(stream: ucsdk.BlockingStream) -> None:
        seen.append(stream.peer_id)
        with stream:
            while True:
                try:
                    stream.write_msg(stream.read_msg())
                except errors.StreamClosed:
                    return

    b.handle("/echo/1.0.0", echo)
    with a.open_stream(b.peer_id, "/echo/1.0.0") as stream:
        assert (stream.peer_id, stream.protocol) == (b.peer_id, "/echo/1.0.0")
        for payload in (b"one", b"", "text is sent as UTF-8", b"\x00" * 70000):
            stream.write_msg(payload)
            expected = payload.encode() if isinstance(payload, str) else payload
            assert stream.read_msg() == expected
    assert seen == [a.peer_id]


def test_an_async_handler_and_raw_bytes(pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair

    async def upper(stream: ucsdk.Stream) -> None:
        async with stream:
            data = await stream.read_exactly(5)
            await stream.write(data.upper())

    b.handle("/upper/1.0.0", upper)
    with a.open_stream(b.peer_id, "/upper/1.0.0") as stream:
        stream.write(b"he")
        stream.write(b"llo")
        assert stream.read_exactly(5) == b"HELLO"
        # The handler closed its side: the end of the stream reads as b"".
        assert stream.read() == b""
        with pytest.raises(errors.StreamClosed, match="ended after 0 of 1 bytes"):
            stream.read_exactly(1)


def test_eight_mebibytes_flow_with_backpressure_and_arrive_intact(pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    digests: list[str] = []

    async def sink(stream: ucsdk.Stream) -> None:
        digest = hashlib.sha256()
        while chunk := await stream.read():
            digest.update(chunk)
        digests.append(digest.hexdigest())
        await stream.write(b"done")
        await stream.close()

    b.handle("/sink/1.0.0", sink)
    data = bytes(range(256)) * (8 * 4096)
    with a.open_stream(b.peer_id, "/sink/1.0.0", timeout=30) as stream:
        for start in range(0, len(data), 1 << 20):
            stream.write(data[start : start + (1 << 20)], timeout=30)
        stream.close()
    assert wait_for(lambda: digests, 30) == [hashlib.sha256(data).hexdigest()]


def test_an_oversized_message_is_refused_before_its_body_is_read(pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    outcome: list[BaseException] = []

    def strict(stream: ucsdk.BlockingStream) -> None:
        try:
            stream.read_msg(max_size=1024)
        except errors.MessageTooLarge as exc:
            outcome.append(exc)

    b.handle("/strict/1.0.0", strict)
    with a.open_stream(b.peer_id, "/strict/1.0.0") as stream:
        # Only the length prefix is needed for the refusal; the body is never sent.
        stream.write(ucsdk.messaging.streams.encode_uvarint(10_000_000))
        assert stream.read() == b""  # reset by the handler
    assert wait_for(lambda: outcome, 10)
    assert "10000000 bytes is over the 1024-byte limit" in str(outcome[0])


def test_errors_name_what_went_wrong(pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    with pytest.raises(errors.OperationFailed, match=r"open a /nobody/1\.0\.0 stream"):
        a.open_stream(b.peer_id, "/nobody/1.0.0")
    with pytest.raises(errors.InvalidInput, match="invalid protocol 'no-slash'"):
        a.open_stream(b.peer_id, "no-slash")
    with pytest.raises(errors.InvalidInput, match="invalid handler"):
        b.handle("/x/1", "not a function")
    with pytest.raises(errors.InvalidPeerId):
        a.open_stream("not-a-peer", "/x/1")

    def silent(stream: ucsdk.BlockingStream) -> None:
        stream.read(timeout=10)

    b.handle("/silent/1.0.0", silent)
    with (
        a.open_stream(b.peer_id, "/silent/1.0.0") as stream,
        pytest.raises(errors.Timeout, match=r"read on /silent/1\.0\.0 did not finish"),
    ):
        stream.read(timeout=0.2)
    b.unhandle("/silent/1.0.0")
    with pytest.raises(errors.OperationFailed):
        a.open_stream(b.peer_id, "/silent/1.0.0")


def test_a_handler_that_raises_is_counted_and_its_stream_reset(pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair

    def broken(stream: ucsdk.BlockingStream) -> None:
        stream.read_msg()
        raise ValueError("a bug in the handler")

    b.handle("/broken/1.0.0", broken)
    with a.open_stream(b.peer_id, "/broken/1.0.0") as stream:
        stream.write_msg(b"go")
        try:
            ended = stream.read()
        except errors.StreamClosed:  # the reset arrived as a reset
            ended = b""
        assert ended == b""
    assert wait_for(
        lambda: b.metrics().invalid_message_kinds.get("streams_handler_errors") == 1, 10
    )
    # The service carries on.
    assert set(b.services().set_index("name").loc[["streams"], "state"]) == {"running"}


def test_streams_beyond_the_per_peer_cap_are_reset_and_counted() -> None:
    with (
        ucsdk.Node.development(**QUIET, max_user_streams_per_peer=3) as server,
        ucsdk.Node.development(**QUIET) as client,
    ):
        release = threading.Event()

        async def hold(stream: ucsdk.Stream) -> None:
            await stream.write(b"in")
            while not release.is_set():
                await stream.read(1)  # ends when the client closes

        server.handle("/hold/1.0.0", hold)
        client.connect(server.addrs[0])
        threads_before = set(threading.enumerate())
        held = [client.open_stream(server.peer_id, "/hold/1.0.0") for _ in range(3)]
        for stream in held:
            assert stream.read_exactly(2) == b"in"
        # Idle streams with async handlers cost no thread. (Compared by thread, not by
        # count: a thread of an earlier test may end meanwhile.)
        assert set(threading.enumerate()) - threads_before == set()
        # The fourth is reset by the server as soon as it is negotiated: opening fails,
        # or the stream ends at once, depending on when the reset arrives.
        try:
            with client.open_stream(server.peer_id, "/hold/1.0.0") as extra:
                try:
                    ended = extra.read()
                except errors.StreamClosed:
                    ended = b""
                assert ended == b""
        except errors.OperationFailed as exc:
            assert "/hold/1.0.0" in str(exc)
        assert wait_for(
            lambda: server.metrics().invalid_message_kinds.get("streams_refused_peer") == 1, 10
        )
        release.set()
        for stream in held:
            stream.close()


def test_streams_from_asyncio_with_node_aio(pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair

    def reverse(stream: ucsdk.BlockingStream) -> None:
        with stream:
            stream.write_msg(stream.read_msg()[::-1])

    async def main() -> bytes:
        await b.aio.handle("/reverse/1.0.0", reverse)
        async with await a.aio.open_stream(b.peer_id, "/reverse/1.0.0") as stream:
            await stream.write_msg(b"abc")
            return await stream.read_msg()

    assert asyncio.run(asyncio.wait_for(main(), 30)) == b"cba"


def test_open_stream_dials_a_peer_it_knows_but_is_not_connected_to() -> None:
    with ucsdk.Node.development(**QUIET) as a, ucsdk.Node.development(**QUIET) as b:
        b.handle("/hi/1.0.0", lambda s: s.write(b"hi") or s.close())
        a.connect(b.addrs[0])
        a.disconnect(b.peer_id)
        assert wait_for(lambda: b.peer_id not in set(a.connections()["peer_id"]), 10)
        with a.open_stream(b.peer_id, "/hi/1.0.0") as stream:
            assert stream.read_exactly(2) == b"hi"
