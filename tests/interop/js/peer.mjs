// A js-libp2p node with GossipSub and @libp2p/pubsub-peer-discovery, for ucsdk's interop
// tests. It prints one JSON object per line on stdout:
//   {"event":"listening","addr":...}            once, its loopback address with /p2p/
//   {"event":"discovered","peer":...,"addrs":[]} each announcement pubsub discovery accepted
//   {"event":"subscribers","peers":[...]}        every second, the topic's subscribers
// Usage: node peer.mjs [multiaddr-to-dial]
if (!Promise.withResolvers) {
  // Node 20 lacks it; libp2p 3 uses it.
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { gossipsub } from '@libp2p/gossipsub'
import { pubsubPeerDiscovery } from '@libp2p/pubsub-peer-discovery'
import { multiaddr } from '@multiformats/multiaddr'

const TOPIC = '_peer-discovery._p2p._pubsub'
const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    discovery: pubsubPeerDiscovery({ interval: 1000, topics: [TOPIC] }),
    identify: identify(),
    pubsub: gossipsub({ allowPublishToZeroTopicPeers: true })
  }
})
node.services.discovery.addEventListener('peer', (evt) => {
  say({ event: 'discovered', peer: evt.detail.id.toString(), addrs: evt.detail.multiaddrs.map(String) })
})
say({ event: 'listening', peer: node.peerId.toString(), addr: node.getMultiaddrs()[0].toString() })
if (process.argv[2]) {
  await node.dial(multiaddr(process.argv[2]))
  say({ event: 'dialled', addr: process.argv[2] })
}
setInterval(() => {
  say({ event: 'subscribers', peers: node.services.pubsub.getSubscribers(TOPIC).map(String) })
}, 1000)
const stop = async () => { await node.stop(); process.exit(0) }
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
