"""A victim for amplification attacks: a TCP socket on loopback that counts connections."""

from __future__ import annotations

import socket
import threading


class Victim:
    """A listening TCP socket on loopback counting the connections that reach it."""

    def __init__(self, ip: str = "127.0.0.1", silent: bool = False) -> None:
        """``silent``: keep each connection open without a word (a dial to it hangs until
        the dialler gives up), instead of closing it at once."""
        self.silent = silent
        self.held: list[socket.socket] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((ip, 0))
        self.ip = ip
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def addr(self) -> str:
        return f"/ip4/{self.ip}/tcp/{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            if self.silent:
                self.held.append(conn)
            else:
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        for conn in self.held:
            conn.close()
