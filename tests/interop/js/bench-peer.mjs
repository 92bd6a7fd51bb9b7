// js-libp2p nodes for bench/peers.py: the js half of the side-by-side bench with ucsdk.
// One process holds any number of nodes (js -> js runs two in one process, as the ucsdk
// pairing runs two nodes in one Python process). Each node: TCP on 127.0.0.1, Noise,
// Yamux, Identify, GossipSub (the universal-connectivity app's message id, so ucsdk and js
// agree on ids), and two protocols served by hand:
//   /ipfs/ping/1.0.0        echo 32-byte payloads (libp2p 3 has no ping in its core and
//                           this install has no @libp2p/ping; the wire is the spec's)
//   /ucsdk-bench/sink/1.0.0 read an 8-byte big-endian length, that many bytes, answer "k"
//                           (bench/pubsub.py's sink)
// It starts with node 0 and prints {"event":"ready","peer":..,"addrs":[..]} (tests/interop/_ucjs.py's
// UcJsPeer runs it with script="bench-peer.mjs"). Driven by JSON lines on stdin, answers {"event":"done"|"error","id":..} on stdout:
//   {"cmd":"node"} -> {node, peer, addr}
//   {"cmd":"connect","node":i,"addr":A,"count":n} -> {ms:[...]} (dial, hang up; dialled at the end)
//   {"cmd":"ping","node":i,"peer":P,"count":n} -> {ms:[...]} (a new stream per ping)
//   {"cmd":"rtt","node":i,"peer":P,"count":n} -> {ms:[...]} (one stream)
//   {"cmd":"send","node":i,"peer":P,"bytes":N} -> {s} (the sink protocol, 64 KiB writes)
//   {"cmd":"subscribe","node":i,"topic":T}   {"cmd":"subscribers","node":i,"topic":T} -> {peers}
//   {"cmd":"arrivals","node":i,"topic":T} -> {count, last} (last: epoch ms of the newest)
//   {"cmd":"flood","node":i,"topic":T,"count":N,"size":S} -> {start, end} (epoch ms; 64 in flight)
//   {"cmd":"stop"}
if (!Promise.withResolvers) {
  // Node 20 lacks it; libp2p 3 uses it.
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
import { createHash, randomBytes } from 'node:crypto'
import { createInterface } from 'node:readline'
import { performance } from 'node:perf_hooks'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { gossipsub } from '@libp2p/gossipsub'
import { byteStream } from '@libp2p/utils'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'

const PING = '/ipfs/ping/1.0.0'
const SINK = '/ucsdk-bench/sink/1.0.0'
const CHUNK = 64 * 1024
const IN_FLIGHT = 64
const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const epochMs = () => performance.timeOrigin + performance.now()
const msgIdFn = (msg) => {
  if (msg.type !== 'signed') throw new Error('unsigned message')
  return new Uint8Array(createHash('sha256').update(msg.sequenceNumber.toString()).digest())
}

const nodes = []
const arrivals = [] // per node: Map topic -> {count, last}

async function newNode () {
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    // js-libp2p refuses a host's sixth inbound connection within a second by default;
    // the connect figure dials the same listener again and again
    connectionManager: { inboundConnectionThreshold: 10_000 },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, msgIdFn, ignoreDuplicatePublishError: true })
    }
  })
  const seen = new Map()
  node.services.pubsub.addEventListener('message', (evt) => {
    const topic = evt.detail.topic
    const entry = seen.get(topic) ?? { count: 0, last: 0 }
    entry.count += 1
    entry.last = epochMs()
    seen.set(topic, entry)
  })
  await node.handle(PING, async (stream) => {
    const bytes = byteStream(stream)
    try {
      for (;;) {
        const payload = await bytes.read({ bytes: 32 })
        await bytes.write(payload)
      }
    } catch {
      // the peer closed its side: the ping stream ends
    }
    try { await stream.close() } catch {}
  }, { runOnLimitedConnection: false })
  await node.handle(SINK, async (stream) => {
    const bytes = byteStream(stream)
    const header = await bytes.read({ bytes: 8 })
    let left = Number(new DataView(header.subarray().buffer, header.subarray().byteOffset, 8).getBigUint64(0))
    while (left > 0) {
      const chunk = await bytes.read()
      if (chunk == null) throw new Error('the sink stream ended early')
      left -= chunk.byteLength
    }
    await bytes.write(new TextEncoder().encode('k'))
    await stream.close()
  })
  nodes.push(node)
  arrivals.push(seen)
  const addr = node.getMultiaddrs().find((a) => a.toString().includes('/tcp/'))
  return { node: nodes.length - 1, peer: node.peerId.toString(), addr: addr.toString() }
}

async function pingOnce (bytes) {
  const payload = randomBytes(32)
  const started = performance.now()
  await bytes.write(payload)
  const echo = await bytes.read({ bytes: 32 })
  const ms = performance.now() - started
  if (Buffer.compare(Buffer.from(echo.subarray()), payload) !== 0) throw new Error('ping mismatch')
  return ms
}

async function run (command) {
  const node = nodes[command.node ?? 0]
  switch (command.cmd) {
    case 'node':
      return await newNode()
    case 'connect': {
      const ma = multiaddr(command.addr)
      const ms = []
      for (let i = 0; i < command.count; i++) {
        const started = performance.now()
        const conn = await node.dial(ma)
        ms.push(performance.now() - started)
        await node.hangUp(conn.remotePeer)
      }
      await node.dial(ma)
      return { ms }
    }
    case 'ping': {
      const peer = peerIdFromString(command.peer)
      const ms = []
      for (let i = 0; i < command.count; i++) {
        const started = performance.now()
        const stream = await node.dialProtocol(peer, PING)
        const bytes = byteStream(stream)
        await pingOnce(bytes)
        ms.push(performance.now() - started)
        await stream.close()
      }
      return { ms }
    }
    case 'rtt': {
      const stream = await node.dialProtocol(peerIdFromString(command.peer), PING)
      const bytes = byteStream(stream)
      const ms = []
      for (let i = 0; i < command.count; i++) ms.push(await pingOnce(bytes))
      await stream.close()
      return { ms }
    }
    case 'send': {
      const chunk = randomBytes(CHUNK)
      const header = new Uint8Array(8)
      new DataView(header.buffer).setBigUint64(0, BigInt(command.bytes))
      const started = performance.now()
      const stream = await node.dialProtocol(peerIdFromString(command.peer), SINK)
      const bytes = byteStream(stream)
      await bytes.write(header)
      for (let sent = 0; sent < command.bytes; sent += CHUNK) await bytes.write(chunk)
      const answer = await bytes.read({ bytes: 1 })
      const s = (performance.now() - started) / 1000
      if (answer.subarray()[0] !== 0x6b) throw new Error('the sink did not answer k')
      await stream.close()
      return { s }
    }
    case 'subscribe':
      node.services.pubsub.subscribe(command.topic)
      return {}
    case 'subscribers':
      return {
        peers: node.services.pubsub.getSubscribers(command.topic).map(String),
        mesh: node.services.pubsub.getMeshPeers(command.topic).map(String)
      }
    case 'arrivals':
      return arrivals[command.node ?? 0].get(command.topic) ?? { count: 0, last: 0 }
    case 'flood': {
      const data = new Uint8Array(command.size)
      let next = 0
      const start = epochMs()
      const worker = async () => {
        while (next < command.count) {
          const seq = next++
          const payload = data.slice()
          new DataView(payload.buffer).setUint32(0, seq)
          await node.services.pubsub.publish(command.topic, payload)
        }
      }
      await Promise.all(Array.from({ length: IN_FLIGHT }, worker))
      return { start, end: epochMs() }
    }
    case 'stop':
      await Promise.all(nodes.map((n) => n.stop()))
      say({ event: 'done', id: command.id })
      process.exit(0)
      break
    default:
      throw new Error(`unknown command ${command.cmd}`)
  }
}

const lines = createInterface({ input: process.stdin })
lines.on('line', (line) => {
  let command
  try {
    command = JSON.parse(line)
  } catch (err) {
    say({ event: 'error', error: `not JSON: ${line.slice(0, 80)}` })
    return
  }
  run(command).then(
    (result) => say({ event: 'done', id: command.id, ...result }),
    (err) => say({ event: 'error', id: command.id, error: String(err) })
  )
})
const stop = async () => { await Promise.all(nodes.map((n) => n.stop())); process.exit(0) }
lines.on('close', stop)
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
const first = await newNode()
say({ event: 'ready', peer: first.peer, addrs: [first.addr] })
