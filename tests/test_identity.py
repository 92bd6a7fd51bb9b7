"""Identity: Ed25519, created once with mode 0600, same peer id after restart."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from libp2p.crypto.keys import KeyType

import ucsdk
from ucsdk.errors import ConfigError
from ucsdk.identity import load_or_create_key_pair


def test_identity_persists_across_restarts(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "node.key"
    with ucsdk.Node.development(identity_path=key_file) as first:
        first_id = first.peer_id
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    content = key_file.read_bytes()
    with ucsdk.Node.development(identity_path=str(key_file)) as second:
        assert second.peer_id == first_id
        assert second.addrs[0].endswith(first_id)
    assert key_file.read_bytes() == content
    assert load_or_create_key_pair(key_file).private_key.get_type() == KeyType.Ed25519


def test_without_identity_path_each_node_is_new() -> None:
    with ucsdk.Node.development() as a, ucsdk.Node.development() as b:
        assert a.peer_id != b.peer_id


def test_corrupt_identity_file_is_a_config_error(tmp_path: Path) -> None:
    key_file = tmp_path / "node.key"
    key_file.write_bytes(b"this is not a key")
    with pytest.raises(ConfigError, match="identity_path"):
        ucsdk.Node.development(identity_path=key_file)
