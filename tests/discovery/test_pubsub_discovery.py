"""Pubsub peer discovery between real nodes on loopback, and under hostile input."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11
from libp2p.pubsub.pb import rpc_pb2
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport

import ucsdk
from ucsdk._wire import encode_uvarint
from ucsdk.config import DEFAULT_DISCOVERY_TOPIC
from ucsdk.proto import Peer

SIGNING_PREFIX = b"libp2p-pubsub:"


def _wait_for(predicate, timeout: float, step: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def test_ten_nodes_find_each_other_through_one_bootstrap_node() -> None:
    # Pubsub alone: no mDNS (it would also find every other node on this machine).
    fast = {"pubsub_announce_interval": 1.0, "enable_mdns": False}
    bootstrap = ucsdk.Node.development(**fast)
    nodes = [bootstrap]
    try:
        for _ in range(9):
            nodes.append(
                ucsdk.Node.development(
                    connect_to_bootstrap=True, bootstrap_peers=[bootstrap.addrs[0]], **fast
                )
            )
        everyone = {n.peer_id for n in nodes}

        def full() -> bool:
            for node in nodes:
                frame = node.peers()
                found = {
                    pid
                    for pid, sources in zip(frame["peer_id"], frame["sources"], strict=True)
                    if "pubsub" in sources
                }
                if found != everyone - {node.peer_id}:
                    return False
            return True

        assert _wait_for(full, timeout=30), [len(n.peers()) for n in nodes]
        # Discovered peers were dialled: every node ends connected to every other.
        assert _wait_for(lambda: all(int(n.peers()["connected"].sum()) == 9 for n in nodes), 20)
        # Simultaneous dials leave two connections per pair; both sides close the same one.
        assert _wait_for(lambda: all(n.metrics().active_connections == 9 for n in nodes), 20)
        leaf = nodes[5].peers().set_index("peer_id")
        assert leaf.loc[nodes[7].peer_id, "multiaddrs"][0] == nodes[7].addrs[0].split("/p2p/")[0]
        assert nodes[5].metrics().total_peers_discovered == 9
        assert "peer_discovered" in set(nodes[5].events()["kind"])
    finally:
        for node in nodes:
            node.stop()


# ---------------------------------------------------------------------- hostile input
def _signed(key_pair, data: bytes, seqno: int) -> rpc_pb2.Message:  # type: ignore[no-untyped-def]
    message = rpc_pb2.Message(
        from_id=ID.from_pubkey(key_pair.public_key).to_bytes(),
        data=data,
        seqno=seqno.to_bytes(8, "big"),
        topicIDs=[DEFAULT_DISCOVERY_TOPIC],
    )
    message.signature = key_pair.private_key.sign(SIGNING_PREFIX + message.SerializeToString())
    message.key = key_pair.public_key.serialize()
    return message


def _bogus_messages(per_kind: int) -> dict[str, list[rpc_pb2.Message]]:
    attacker = create_new_key_pair()
    good_key = create_new_key_pair().public_key.serialize()
    kinds: dict[str, list[rpc_pb2.Message]] = {
        k: [] for k in ("sybil", "key_mismatch", "malformed", "oversized", "bad_address")
    }
    for i in range(per_kind):
        sybil = create_new_key_pair()
        # A valid announcement from a fresh identity, with no address (nothing to dial).
        kinds["sybil"].append(
            _signed(sybil, Peer(publicKey=sybil.public_key.serialize()).SerializeToString(), i)
        )
        kinds["key_mismatch"].append(
            _signed(attacker, Peer(publicKey=good_key).SerializeToString(), 10**6 + i)
        )
        kinds["malformed"].append(_signed(attacker, os.urandom(40) + b"\xff\xff", 2 * 10**6 + i))
        kinds["oversized"].append(
            _signed(
                attacker,
                Peer(
                    publicKey=attacker.public_key.serialize(), addrs=[os.urandom(100)] * 60
                ).SerializeToString(),
                3 * 10**6 + i,
            )
        )
        kinds["bad_address"].append(
            _signed(
                attacker,
                Peer(
                    publicKey=attacker.public_key.serialize(),
                    addrs=[b"\x99\x88garbage" + os.urandom(8)],
                ).SerializeToString(),
                4 * 10**6 + i,
            )
        )
    return kinds


def _attack(target_addr: str, messages: list[rpc_pb2.Message], settled: Callable[[], bool]) -> None:
    """Speak GossipSub by hand: subscribe, then publish ``messages`` in large batches.

    The stream stays open until ``settled()`` says the target has handled everything (or
    60 s pass): closing it earlier would discard what the target has not read yet.
    """
    key_pair = create_new_key_pair()
    security = {
        NOISE_PROTOCOL_ID: NoiseTransport(key_pair, noise_privkey=new_x25519_key_pair().private_key)
    }
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    host = new_host(key_pair=key_pair, sec_opt=security, listen_addrs=listen)  # type: ignore[arg-type]

    async def main() -> None:
        async with host.run(listen):
            info = info_from_p2p_addr(multiaddr.Multiaddr(target_addr))
            await host.connect(info)
            stream = await host.new_stream(info.peer_id, [PROTOCOL_ID_V11])
            hello = rpc_pb2.RPC(
                subscriptions=[rpc_pb2.RPC.SubOpts(subscribe=True, topicid=DEFAULT_DISCOVERY_TOPIC)]
            ).SerializeToString()
            await stream.write(encode_uvarint(len(hello)) + hello)
            for start in range(0, len(messages), 200):
                rpc = rpc_pb2.RPC(publish=messages[start : start + 200]).SerializeToString()
                await stream.write(encode_uvarint(len(rpc)) + rpc)
                await trio.sleep(0.01)
            with trio.move_on_after(60):
                while not await trio.to_thread.run_sync(settled):
                    await trio.sleep(0.2)
            await stream.close()
        await host.close()

    trio.run(main)


def test_ten_thousand_bogus_announcements_are_dropped_and_counted() -> None:
    per_kind = 2000
    kinds = _bogus_messages(per_kind)
    messages = [m for batch in zip(*kinds.values(), strict=True) for m in batch]
    assert len(messages) == 10_000
    with ucsdk.Node.development(max_discovered_peers=200) as target:
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

        def settled() -> bool:
            return target.metrics().invalid_messages >= 4 * per_kind

        _attack(target.addrs[0], messages, settled)
        metrics = target.metrics()
        kinds_seen = metrics.invalid_message_kinds
        for kind in ("key_mismatch", "malformed", "oversized", "bad_address"):
            assert kinds_seen.get(f"pubsub_{kind}", 0) == per_kind, kinds_seen
        assert metrics.invalid_messages >= 4 * per_kind
        # The sybils were valid, but the table stays within its bound.
        assert len(target.get_discovered_peers()) <= 200
        assert metrics.total_peers_discovered >= 200
        assert metrics.peers_evicted >= 1
        rss_growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
        assert rss_growth_mb < 200, rss_growth_mb
        # Dropped, never a crash.
        pubsub = target.services().set_index("name").loc["pubsub"]
        assert (pubsub["state"], pubsub["restarts"]) == ("running", 0), pubsub.to_dict()
        # Still serving: a real peer is discovered and dialled afterwards.
        with ucsdk.Node.development(
            connect_to_bootstrap=True,
            bootstrap_peers=[target.addrs[0]],
            pubsub_announce_interval=1.0,
        ) as honest:
            assert _wait_for(
                lambda: (
                    target.manager is not None
                    and any(
                        p.peer_id == honest.peer_id and "pubsub" in p.sources
                        for p in target.get_discovered_peers()
                    )
                ),
                timeout=15,
            )
            assert target.ping(honest.peer_id, count=1)
