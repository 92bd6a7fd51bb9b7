"""The attacker harness itself: a hostile host in a separate process reaches a node."""

from __future__ import annotations

import os

import pytest
from _attacker import Attacker, AttackerError

import ucsdk


def test_attacker_is_a_separate_process_that_connects_and_sends() -> None:
    node = ucsdk.Node.development(enable_mdns=False)
    try:
        with Attacker() as attacker:
            assert attacker.proc is not None and attacker.proc.pid != os.getpid()
            assert attacker.run("connect", addr=node.addrs[0]) == node.peer_id
            answer = attacker.run(
                "send", peer=node.peer_id, protocol="/ipfs/ping/1.0.0", hex="00" * 32, wait=3
            )
            assert answer["opened"] and answer["reply_hex"] == "00" * 32
            with pytest.raises(AttackerError, match="no_such_attack"):
                attacker.run("no_such_attack")
            proc = attacker.proc
        assert proc.returncode == 0
    finally:
        node.stop()
