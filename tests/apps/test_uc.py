"""The universal-connectivity app between real ucsdk nodes on loopback: chat, direct
messages, files, hostile input, the widget and the ``ucsdk chat`` command.

Interop with js-libp2p peers of the app is in tests/interop/test_uc_interop.py.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import ucsdk
from tests._util import wait_for
from ucsdk import errors
from ucsdk.apps.uc import (
    CHAT_TOPIC,
    DM_PROTOCOL,
    DM_RATE,
    FILE_PROTOCOL,
    UC_SETTINGS,
    Chat,
)

QUIET = {
    "enable_mdns": False,
    "enable_dht_discovery": False,
    "enable_autonat": False,
    **UC_SETTINGS,
}
ROOT = Path(__file__).resolve().parents[2]
CHAT_COMMAND = [sys.executable, "-m", "ucsdk", "chat", "--no-mdns", "--no-dht"]


def _read_to_end(stream: ucsdk.BlockingStream) -> bytes:
    """What arrives before the stream ends; a reset counts as the end."""
    try:
        return stream.read()
    except errors.StreamClosed:
        return b""


@pytest.fixture
def chats() -> Iterator[tuple[Chat, Chat]]:
    with ucsdk.Node.development(**QUIET) as a, ucsdk.Node.development(**QUIET) as b:
        alice, bob = Chat(a), Chat(b)
        a.connect(b.addrs[0])
        assert a.wait_for_subscribers(CHAT_TOPIC, 1, timeout=10)
        assert b.wait_for_subscribers(CHAT_TOPIC, 1, timeout=10)
        yield alice, bob
        alice.stop()
        bob.stop()


def test_chat_both_ways_as_raw_utf8(chats: tuple[Chat, Chat]) -> None:
    alice, bob = chats
    msg_id = alice.send("héllo bob")
    line = bob.wait_for("chat", timeout=10)
    assert (line.text, line.peer_id, line.msg_id) == ("héllo bob", alice.node.peer_id, msg_id)
    assert line.nick == alice.node.peer_id[-8:]
    # On the wire the message is the text's UTF-8 bytes, nothing around it.
    raw = bob.node.wait_for_message(CHAT_TOPIC, timeout=10)
    assert raw.data == "héllo bob".encode()
    bob.send("hi alice")
    assert alice.wait_for("chat", timeout=10).text == "hi alice"
    frame = alice.messages()
    assert list(frame["direction"]) == ["out", "in"]
    assert list(frame["text"]) == ["héllo bob", "hi alice"]
    assert str(frame["time"].dt.tz) == "UTC"
    peers = alice.peers()
    row = peers[peers["peer_id"] == bob.node.peer_id].iloc[0]
    assert bool(row["connected"]) and row["chat_messages"] == 1


def test_invalid_utf8_is_shown_escaped_and_oversize_is_ignored_and_counted(
    chats: tuple[Chat, Chat],
) -> None:
    alice, bob = chats
    # A peer without the app's checks (its own Chat would refuse to send these).
    with ucsdk.Node.development(**QUIET) as mallory:
        mallory.subscribe(CHAT_TOPIC)
        mallory.connect(bob.node.addrs[0])
        assert mallory.wait_for_subscribers(CHAT_TOPIC, 1, timeout=10)
        mallory.publish(CHAT_TOPIC, b"caf\xe9 \xff")
        line = bob.wait_for("chat", timeout=10)
        assert line.text == "caf\\xe9 \\xff"
        assert bob.dropped["invalid_utf8"] == 1
        mallory.publish(CHAT_TOPIC, b"x" * (bob.max_message_size + 1))
        mallory.publish(CHAT_TOPIC, "after the big one")
        assert bob.wait_for("chat", lambda x: x.text == "after the big one", timeout=10)
    assert bob.dropped["oversized"] == 1
    assert [x.text for x in bob.lines() if x.direction == "in"] == [
        "caf\\xe9 \\xff",
        "after the big one",
    ]
    # Not forwarded to alice either.
    assert wait_for(lambda: any(x.text == "after the big one" for x in alice.lines()), 10)
    assert not any(x.text.startswith("xxx") for x in alice.lines())
    with pytest.raises(errors.InvalidInput, match="at most 65536 bytes"):
        alice.send("y" * 70000)


def test_direct_messages_both_ways_and_a_flood_is_capped(chats: tuple[Chat, Chat]) -> None:
    alice, bob = chats
    alice.dm(bob.node.peer_id, "just for you")
    line = bob.wait_for("dm", timeout=10)
    assert (line.text, line.peer_id) == ("just for you", alice.node.peer_id)
    bob.dm(alice.node.peer_id, "thanks")
    assert alice.wait_for("dm", timeout=10).text == "thanks"
    # A flood: DM_RATE more within the window are accepted (one already was), then
    # the peer answers ERROR and counts.
    sent = 1
    with pytest.raises(errors.OperationFailed, match="answered 500: too many direct messages"):
        for n in range(DM_RATE + 5):
            alice.dm(bob.node.peer_id, f"flood {n}")
            sent += 1
    assert sent == DM_RATE
    assert bob.dropped["dm_rate_limited"] == 1
    assert sum(1 for x in bob.lines() if x.kind == "dm" and x.direction == "in") == DM_RATE
    # Bob can still write to alice.
    bob.dm(alice.node.peer_id, "still here")


def test_garbage_on_the_dm_and_file_protocols_is_counted_and_harmless(
    chats: tuple[Chat, Chat],
) -> None:
    alice, bob = chats
    with alice.node.open_stream(bob.node.peer_id, DM_PROTOCOL) as stream:
        stream.write_msg(b"\xff\xff\xff not a protobuf")
        assert _read_to_end(stream) == b""
    assert wait_for(lambda: bob.dropped["dm_malformed"] == 1, 10)
    with alice.node.open_stream(bob.node.peer_id, FILE_PROTOCOL) as stream:
        stream.write(b"\xff\xff\xff\x7f")  # a 268 MB file id
        assert _read_to_end(stream) == b""
    assert wait_for(lambda: bob.dropped["file_bad_request"] == 1, 10)
    alice.dm(bob.node.peer_id, "the protocols still work")
    assert bob.wait_for("dm", timeout=10).text == "the protocols still work"
    assert set(bob.node.services().set_index("name").loc[["streams"], "state"]) == {"running"}


def test_files_both_ways_and_an_unknown_id_is_a_clear_error(
    chats: tuple[Chat, Chat], tmp_path: Path
) -> None:
    alice, bob = chats
    source = tmp_path / "photo.bin"
    source.write_bytes(os.urandom(300_000))
    file_id = alice.share_file(source)
    line = bob.wait_for("file", timeout=10)
    assert (line.file_id, line.peer_id) == (file_id, alice.node.peer_id)
    out = tmp_path / "got"
    out.mkdir()
    data = bob.fetch_file(alice.node.peer_id, file_id, out)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert hashlib.sha256(data).hexdigest() == digest
    assert hashlib.sha256((out / file_id).read_bytes()).hexdigest() == digest
    back = bob.share_file(b"reply bytes", name="reply.txt")
    assert alice.wait_for("file", timeout=10).file_id == back
    assert alice.fetch_file(bob.node.peer_id, back) == b"reply bytes"
    assert list(bob.shared_files()["name"]) == ["reply.txt"]
    with pytest.raises(errors.OperationFailed, match="has no file with that id"):
        bob.fetch_file(alice.node.peer_id, "00000000-0000-0000-0000-000000000000")
    assert alice.dropped["file_unknown"] == 1


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda c: c.send(b"bytes"), "text"),
        (lambda c: c.share_file("/no/such/file"), "a readable file"),
        (lambda c: c.share_file(b""), "not empty"),
        (lambda c: c.fetch_file("12D3KooWxyz", ""), "file_id"),
        (lambda c: c.wait_for("email"), "'chat', 'dm' or 'file'"),
        (lambda c: c.on_line("not callable"), "callback"),
    ],
)
def test_bad_input_at_the_api_names_the_value(chats, call, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(errors.InvalidInput, match=match):
        call(chats[0])


def test_wait_for_times_out_with_a_clear_error(chats: tuple[Chat, Chat]) -> None:
    with pytest.raises(errors.Timeout, match="wait for a dm message"):
        chats[0].wait_for("dm", timeout=0.2)


def test_stop_leaves_the_topics_and_protocols_and_the_widget_thread_ends(
    chats: tuple[Chat, Chat],
) -> None:
    alice, bob = chats
    view = alice.widget(refresh=0.2)
    view.input.value = "from the widget"
    assert view.send()
    assert bob.wait_for("chat", timeout=10).text == "from the widget"
    assert "from the widget" in view.message_list.value
    bob.send("to the widget")
    alice.wait_for("chat", lambda x: x.text == "to the widget", timeout=10)
    assert view.refresh()
    assert "to the widget" in view.message_list.value
    assert bob.node.peer_id[-8:] in view.peer_table.value
    view.input.value = f"/dm {bob.node.peer_id} a dm from the widget"
    assert view.send()
    assert bob.wait_for("dm", timeout=10).text == "a dm from the widget"
    view.close()
    assert not view.running
    assert not [t for t in threading.enumerate() if t.name.startswith("ucsdk-chat")]
    alice.stop()
    topics = alice.node.topics()
    assert not topics[topics["topic"] == CHAT_TOPIC]["subscribed"].any()
    with pytest.raises(errors.OperationFailed):
        bob.dm(alice.node.peer_id, "nobody serves this now")


def test_ucsdk_chat_in_a_terminal(tmp_path: Path) -> None:
    """``ucsdk chat`` as a process: lines typed are sent, lines received are printed,
    /dm and /file work, /quit ends it."""
    with ucsdk.Node.development(**QUIET) as node, Chat(node) as chat:
        proc = subprocess.Popen(
            [*CHAT_COMMAND, "--connect", node.addrs[0]],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: list[str] = []

        def read() -> None:
            assert proc.stdout is not None
            for out in proc.stdout:
                lines.append(out.rstrip("\n"))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            assert wait_for(lambda: any(x.startswith("READY ") for x in lines), 30), lines
            peer = next(x.split()[2] for x in lines if x.startswith("peer id: "))
            assert node.wait_for_subscribers(CHAT_TOPIC, 1, timeout=10)
            assert proc.stdin is not None
            proc.stdin.write("hello from the terminal\n")
            proc.stdin.flush()
            assert chat.wait_for("chat", timeout=10).text == "hello from the terminal"
            chat.send("hello terminal")
            assert wait_for(lambda: any(x.endswith(": hello terminal") for x in lines), 10)
            proc.stdin.write(f"/dm {node.peer_id} private words\n")
            proc.stdin.flush()
            assert chat.wait_for("dm", timeout=10).text == "private words"
            shared = tmp_path / "a.txt"
            shared.write_text("file body")
            proc.stdin.write(f"/file {shared}\n")
            proc.stdin.flush()
            announced = chat.wait_for("file", timeout=10)
            assert chat.fetch_file(peer, announced.file_id or "") == b"file body"
            proc.stdin.write("/quit\n")
            proc.stdin.flush()
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        reader.join(timeout=5)
