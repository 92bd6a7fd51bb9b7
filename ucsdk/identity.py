"""Node identity: an Ed25519 key, optionally kept in a file so the peer id survives restarts.

Example:
    >>> import tempfile, os
    >>> from ucsdk.identity import load_or_create_key_pair, peer_id_of
    >>> path = os.path.join(tempfile.mkdtemp(), "node.key")
    >>> first = peer_id_of(load_or_create_key_pair(path))
    >>> first == peer_id_of(load_or_create_key_pair(path))
    True
    >>> oct(os.stat(path).st_mode & 0o777)
    '0o600'
"""

from __future__ import annotations

import os
from pathlib import Path

from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair, KeyType
from libp2p.crypto.serialization import deserialize_private_key
from libp2p.peer.id import ID

from ucsdk.errors import ConfigError


def new_key_pair() -> KeyPair:
    """A fresh Ed25519 key pair."""
    return create_new_key_pair()


def peer_id_of(key_pair: KeyPair) -> str:
    """The base58 peer id of ``key_pair``."""
    return ID.from_pubkey(key_pair.public_key).pretty()


def load_or_create_key_pair(path: str | os.PathLike[str] | None) -> KeyPair:
    """Load the Ed25519 key at ``path``; create it (mode 0600) when the file does not exist.

    ``path=None`` gives a fresh, unsaved key. The file holds the libp2p protobuf encoding
    of the private key, the format other libp2p implementations use for keys.
    """
    if path is None:
        return new_key_pair()
    key_file = Path(path).expanduser()
    if key_file.exists():
        try:
            private_key = deserialize_private_key(key_file.read_bytes())
        except Exception as exc:
            raise ConfigError(
                "identity_path", str(key_file), f"a libp2p private key file ({exc})"
            ) from None
        if private_key.get_type() != KeyType.Ed25519:
            raise ConfigError("identity_path", str(key_file), "an Ed25519 key")
        return KeyPair(private_key, private_key.get_public_key())
    key_pair = new_key_pair()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: two nodes racing to create the same identity must not overwrite each other.
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_or_create_key_pair(key_file)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_pair.private_key.serialize())
    return key_pair
