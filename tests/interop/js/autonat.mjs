// A js-libp2p node that runs the AutoNAT v1 service (@libp2p/autonat), for ucsdk's interop
// tests. Prints {"event":"listening","peer":...,"addr":...} once, on stdout.
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
import { autoNAT } from '@libp2p/autonat'

const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify(), autonat: autoNAT() }
})
process.stdout.write(JSON.stringify({ event: 'listening', peer: node.peerId.toString(), addr: node.getMultiaddrs()[0].toString() }) + '\n')
const stop = async () => { await node.stop(); process.exit(0) }
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
