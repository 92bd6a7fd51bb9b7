"""A minimal STUN Binding server and client (RFC 8489), so the lab can show NAT mappings.

The lab's public hosts answer Binding requests on UDP; a host behind a NAT asks two of them
from one socket and compares the ``XOR-MAPPED-ADDRESS`` each reports. The same public
``ip:port`` from both means endpoint-independent mapping; different ports mean symmetric.

Example:
    >>> import socket
    >>> server = StunServer("127.0.0.1", 0)
    >>> server.start()
    >>> client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    >>> client.bind(("127.0.0.1", 0))
    >>> binding_request(client, server.address) == client.getsockname()
    True
    >>> client.close(); server.stop()
"""

from __future__ import annotations

import os
import socket
import struct
import threading

MAGIC_COOKIE = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
XOR_MAPPED_ADDRESS = 0x0020
STUN_PORT = 3478


class StunError(Exception):
    """A STUN exchange failed (no answer, or an answer that does not parse)."""


def _request(txid: bytes) -> bytes:
    return struct.pack("!HHI", BINDING_REQUEST, 0, MAGIC_COOKIE) + txid


def _success(txid: bytes, addr: tuple[str, int]) -> bytes:
    ip = struct.unpack("!I", socket.inet_aton(addr[0]))[0] ^ MAGIC_COOKIE
    port = addr[1] ^ (MAGIC_COOKIE >> 16)
    attr = struct.pack("!HHBBHI", XOR_MAPPED_ADDRESS, 8, 0, 0x01, port, ip)
    return struct.pack("!HHI", BINDING_SUCCESS, len(attr), MAGIC_COOKIE) + txid + attr


def parse_success(data: bytes, txid: bytes) -> tuple[str, int]:
    """The mapped address in a Binding success response for transaction ``txid``."""
    if len(data) < 20:
        raise StunError("response shorter than a STUN header")
    kind, length, cookie = struct.unpack("!HHI", data[:8])
    if kind != BINDING_SUCCESS or cookie != MAGIC_COOKIE or data[8:20] != txid:
        raise StunError("not a Binding success for our transaction")
    body = data[20 : 20 + length]
    while len(body) >= 4:
        atype, alen = struct.unpack("!HH", body[:4])
        value = body[4 : 4 + alen]
        if atype == XOR_MAPPED_ADDRESS and alen >= 8 and value[1] == 0x01:
            port = struct.unpack("!H", value[2:4])[0] ^ (MAGIC_COOKIE >> 16)
            ip = struct.unpack("!I", value[4:8])[0] ^ MAGIC_COOKIE
            return socket.inet_ntoa(struct.pack("!I", ip)), port
        body = body[4 + alen + (-alen % 4) :]
    raise StunError("no IPv4 XOR-MAPPED-ADDRESS in the response")


def binding_request(
    sock: socket.socket, server: tuple[str, int], timeout: float = 2.0, tries: int = 3
) -> tuple[str, int]:
    """Ask ``server`` which address ``sock``'s packets arrive from."""
    txid = os.urandom(12)
    sock.settimeout(timeout / tries)
    for _ in range(tries):
        sock.sendto(_request(txid), server)
        try:
            while True:
                data, _ = sock.recvfrom(2048)
                try:
                    return parse_success(data, txid)
                except StunError:
                    continue
        except TimeoutError:
            continue
    raise StunError(f"no STUN answer from {server[0]}:{server[1]}")


class StunServer:
    """Answers STUN Binding requests on one UDP socket from a small thread; drops the rest."""

    def __init__(self, host: str = "0.0.0.0", port: int = STUN_PORT) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, port))
        self._sock.settimeout(0.2)
        self.address: tuple[str, int] = self._sock.getsockname()
        self.answered = 0
        self.dropped = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="ucsdk-stun", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                data, addr = self._sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) < 20 or struct.unpack("!HHI", data[:8])[::2] != (
                BINDING_REQUEST,
                MAGIC_COOKIE,
            ):
                self.dropped += 1
                continue
            try:
                self._sock.sendto(_success(data[8:20], addr), addr)
                self.answered += 1
            except OSError:
                self.dropped += 1

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self._sock.close()
