"""AutoNAT v2 between two py-libp2p hosts on loopback (WORK IN PROGRESS, branch
wip/autonat-v2): a dial-back verified by its nonce, a failed dial, dial data before an IP
other than the requester's, a refusal for an address the server will not dial."""

from __future__ import annotations

import multiaddr
import trio
from libp2p import new_host
from libp2p.peer.peerinfo import PeerInfo

from ucsdk.nat.autonat_v2 import DIAL_DATA_MIN, AutoNATv2


def test_checks_over_the_wire() -> None:
    async def main() -> list[object]:
        server, client = new_host(), new_host()
        loop = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
        async with server.run(loop), client.run(loop):
            serving = AutoNATv2(server, allow_private=True)
            asking = AutoNATv2(client, serve=False)
            await serving.start()
            await asking.start()
            try:
                await client.connect(PeerInfo(server.get_id(), server.get_addrs()))
                mine = [str(a).split("/p2p/")[0] for a in client.get_addrs()]
                sid = server.get_id()
                return [
                    await asking.check(sid, mine),
                    await asking.check(sid, ["/ip4/127.0.0.1/tcp/9"]),
                    await asking.check(sid, ["/ip4/127.0.0.2/tcp/9"]),
                    await asking.check(sid, ["/ip4/127.0.0.1/udp/9/webrtc-direct"]),
                ]
            finally:
                await asking.stop()
                await serving.stop()

    same_ip, closed, other_ip, refused = trio.run(main)
    assert (same_ip.response, same_ip.dial, same_ip.reachable) == ("OK", "OK", True)
    assert same_ip.dial_data == 0
    assert (closed.dial, closed.reachable) == ("E_DIAL_ERROR", False)
    assert other_ip.dial_data >= DIAL_DATA_MIN and other_ip.reachable is False
    assert (refused.response, refused.addr, refused.reachable) == ("E_DIAL_REFUSED", None, None)
