"""Pubsub: a peer cannot stop a node's pubsub by sending messages with junk keys.

Before: py-libp2p's signature check raised on a ``key`` that is not a serialized key, in
its Pubsub service's task; the service ended, the supervisor restarted it, and after
``service_max_restarts`` (10) crashes it stayed down: eleven messages from any connected
peer turned discovery off for good. Now they are dropped and counted, and pubsub runs on.
"""

from __future__ import annotations

from _attacker import Attacker
from _hostile_peers import MESHSUB, publish_with_junk_key, wait_until

import ucsdk
from ucsdk.config import DEFAULT_DISCOVERY_TOPIC

MESSAGES = 15
"""More than ``service_max_restarts`` (10)."""


def test_messages_with_junk_keys_are_dropped_and_pubsub_stays_up() -> None:
    with ucsdk.Node.development(enable_mdns=False, relay_auto_reserve=False) as node:
        with Attacker() as attacker:
            attacker.run("connect", addr=node.addrs[0])
            for seqno in range(MESSAGES):
                frame = publish_with_junk_key(DEFAULT_DISCOVERY_TOPIC, seqno + 1)
                attacker.run("send", peer=node.peer_id, protocol=MESHSUB, hex=frame.hex(), wait=0.2)

            def counted() -> int:
                return int(node.metrics().invalid_message_kinds.get("pubsub_bad_signature", 0))

            assert wait_until(lambda: counted() >= MESSAGES, 15), counted()
        services = node.services().set_index("name")
        assert services.loc["pubsub", "state"] == "running"
        assert services.loc["pubsub", "restarts"] == 0
        # And discovery still works: an honest peer's announcement is heard.
        with ucsdk.Node.development(enable_mdns=False, pubsub_announce_interval=1.0) as honest:
            honest.connect(node.addrs[0])

            def heard() -> bool:
                peers = {p.peer_id: p for p in node.get_discovered_peers()}
                return honest.peer_id in peers and "pubsub" in peers[honest.peer_id].sources

            assert wait_until(heard, 20)
