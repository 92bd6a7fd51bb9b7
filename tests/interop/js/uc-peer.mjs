// A js-libp2p peer of the universal-connectivity app, configured as the app's node-js-peer
// (node-js-peer/src/lib/libp2p.ts), plus the js-peer's file sharing, for ucsdk's interop
// tests, notebook and benchmark:
// - GossipSub { allowPublishToZeroTopicPeers, msgIdFn: sha256(decimal seqno),
//   ignoreDuplicatePublishError }, StrictSign (the default);
// - pubsub peer discovery on universal-connectivity-browser-peer-discovery;
// - chat on universal-connectivity (raw UTF-8), files on universal-connectivity-file;
// - direct messages on /universal-connectivity/dm/1.0.0 (length-prefixed dm protobufs, one
//   request and one response, 5 s, opened with negotiateFully: false as the app does);
// - files served and fetched on /universal-connectivity-file/1 (uvarint-prefixed id, then
//   uvarint-prefixed bytes).
//
// Driven by JSON lines on stdin; prints JSON lines on stdout. Commands:
//   {"cmd":"dial","addr":A}                 {"cmd":"publish","topic":T,"text":S}
//   {"cmd":"dm","peer":P,"text":S}          {"cmd":"share","b64":B,"name":N}
//   {"cmd":"fetch","peer":P,"file":I}       {"cmd":"peers"}
//   {"cmd":"flood","topic":T,"count":N,"size":S,"run":R}   (N messages of S bytes, 64 in flight)
//   {"cmd":"subscribe","topic":T}
//   {"cmd":"stop"}
// Each command may carry "id": it comes back in the answer {"event":"done"|"error","id":..}.
// Events: ready {peer, addrs}; message {topic, from, type, text, b64?, seqno};
// dm {from, text, type}; discovered {peer, addrs}; connected/disconnected {peer}.
// Usage: node uc-peer.mjs [--discovery-interval MS] [--webrtc-direct] [--webrtc-via RELAY]
//   --webrtc-direct: also listen and dial on WebRTC-Direct (@libp2p/webrtc, node-datachannel),
//   as the app's server peers do.
//   --webrtc-via RELAY: private-to-private WebRTC (/webrtc) as the app's peers behind NAT do:
//   reserve a slot on the relay at RELAY (circuit relay v2) and take /webrtc dials through
//   it; dial <circuit>/webrtc/p2p/<peer> addresses too.
// No ICE servers: @libp2p/webrtc's default is four public STUN servers, and this peer may
// only reach the nodes its test started.
if (!Promise.withResolvers) {
  // Node 20 lacks it; libp2p 3 uses it.
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
import { createHash, randomUUID } from 'node:crypto'
import { createInterface } from 'node:readline'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { webRTC, webRTCDirect } from '@libp2p/webrtc'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { gossipsub } from '@libp2p/gossipsub'
import { pubsubPeerDiscovery } from '@libp2p/pubsub-peer-discovery'
import { lpStream } from '@libp2p/utils'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'

const CHAT_TOPIC = 'universal-connectivity'
const FILE_TOPIC = 'universal-connectivity-file'
const DISCOVERY_TOPIC = 'universal-connectivity-browser-peer-discovery'
const DM_PROTOCOL = '/universal-connectivity/dm/1.0.0'
const FILE_PROTOCOL = '/universal-connectivity-file/1'
const TIMEOUT = 5000
const MAX_FILES = 32
const MAX_FILE = 64 * 1024 * 1024

const argIndex = process.argv.indexOf('--discovery-interval')
const discoveryInterval = argIndex > 0 ? Number(process.argv[argIndex + 1]) : 10_000
const withWebRTCDirect = process.argv.includes('--webrtc-direct')
const viaIndex = process.argv.indexOf('--webrtc-via')
const webrtcVia = viaIndex > 0 ? process.argv[viaIndex + 1] : null
const rtcConfiguration = { iceServers: [] }
const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

// The app's message id: the raw sha256 digest of the decimal text of the sequence number.
const msgIdFn = (msg) => {
  if (msg.type !== 'signed') throw new Error('unsigned message')
  return new Uint8Array(createHash('sha256').update(msg.sequenceNumber.toString()).digest())
}

// --- the dm protobufs (node-js-peer/src/protobuf/direct-message.proto), by hand ----------
const utf8 = new TextEncoder()
const fromUtf8 = new TextDecoder()
function varint (n) {
  const out = []
  let v = BigInt(n)
  if (v < 0n) v += 1n << 64n
  do {
    let byte = Number(v & 0x7fn)
    v >>= 7n
    if (v > 0n) byte |= 0x80
    out.push(byte)
  } while (v > 0n)
  return out
}
const field = (num, wire) => varint((num << 3) | wire)
const lenField = (num, bytes) => [...field(num, 2), ...varint(bytes.length), ...bytes]
function encodeMetadata () {
  return [...lenField(1, utf8.encode('0.0.1')), ...field(2, 0), ...varint(Date.now())]
}
function encodeRequest (content) {
  return new Uint8Array([
    ...lenField(1, encodeMetadata()), ...lenField(2, utf8.encode(content)),
    ...lenField(3, utf8.encode('text/plain'))
  ])
}
function encodeResponse (status, statusText) {
  const out = [...lenField(1, encodeMetadata()), ...field(2, 0), ...varint(status)]
  if (statusText != null) out.push(...lenField(3, utf8.encode(statusText)))
  return new Uint8Array(out)
}
function decodeFields (bytes) {
  const fields = {}
  let i = 0
  const readVarint = () => {
    let value = 0n
    let shift = 0n
    for (;;) {
      if (i >= bytes.length) throw new Error('truncated varint')
      const b = bytes[i++]
      value |= BigInt(b & 0x7f) << shift
      if (!(b & 0x80)) return value
      shift += 7n
    }
  }
  while (i < bytes.length) {
    const key = Number(readVarint())
    const num = key >> 3
    const wire = key & 7
    if (wire === 0) fields[num] = readVarint()
    else if (wire === 2) {
      const len = Number(readVarint())
      if (i + len > bytes.length) throw new Error('truncated field')
      fields[num] = bytes.subarray(i, i + len)
      i += len
    } else throw new Error(`wire type ${wire}`)
  }
  return fields
}
function decodeRequest (bytes) {
  const f = decodeFields(bytes)
  return {
    metadata: f[1] != null ? decodeFields(f[1]) : null,
    content: f[2] != null ? fromUtf8.decode(f[2]) : '',
    type: f[3] != null ? fromUtf8.decode(f[3]) : ''
  }
}
function decodeResponse (bytes) {
  const f = decodeFields(bytes)
  return {
    metadata: f[1] != null ? decodeFields(f[1]) : null,
    status: f[2] != null ? Number(f[2]) : 0,
    statusText: f[3] != null ? fromUtf8.decode(f[3]) : undefined
  }
}

// --- the node ----------------------------------------------------------------------------
const node = await createLibp2p({
  addresses: {
    listen: [
      '/ip4/127.0.0.1/tcp/0',
      ...(withWebRTCDirect ? ['/ip4/127.0.0.1/udp/0/webrtc-direct'] : []),
      ...(webrtcVia != null ? [`${webrtcVia}/p2p-circuit`, '/webrtc'] : [])
    ]
  },
  transports: [
    tcp(),
    ...(withWebRTCDirect ? [webRTCDirect({ rtcConfiguration })] : []),
    ...(webrtcVia != null ? [circuitRelayTransport(), webRTC({ rtcConfiguration })] : [])
  ],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  connectionGater: { denyDialMultiaddr: async () => false },
  services: {
    discovery: pubsubPeerDiscovery({
      interval: discoveryInterval, topics: [DISCOVERY_TOPIC], listenOnly: false
    }),
    identify: identify(),
    pubsub: gossipsub({
      allowPublishToZeroTopicPeers: true, msgIdFn, ignoreDuplicatePublishError: true
    })
  }
})
const pubsub = node.services.pubsub
pubsub.subscribe(CHAT_TOPIC)
pubsub.subscribe(FILE_TOPIC)

pubsub.addEventListener('message', (evt) => {
  const msg = evt.detail
  if (msg.topic === DISCOVERY_TOPIC) return
  const event = {
    event: 'message',
    topic: msg.topic,
    type: msg.type,
    from: msg.type === 'signed' ? msg.from.toString() : null,
    seqno: msg.type === 'signed' ? msg.sequenceNumber.toString() : null,
    text: fromUtf8.decode(msg.data),
    size: msg.data.length,
    received_ns: process.hrtime.bigint().toString()
  }
  say(event)
})
node.services.discovery.addEventListener('peer', (evt) => {
  say({ event: 'discovered', peer: evt.detail.id.toString(), addrs: evt.detail.multiaddrs.map(String) })
})
node.addEventListener('peer:connect', (evt) => say({ event: 'connected', peer: evt.detail.toString() }))
node.addEventListener('peer:disconnect', (evt) => say({ event: 'disconnected', peer: evt.detail.toString() }))

// Direct messages in: answer OK, then report (the app answers before it shows the message).
await node.handle(DM_PROTOCOL, async (stream, connection) => {
  const signal = AbortSignal.timeout(TIMEOUT)
  try {
    const lp = lpStream(stream, { maxDataLength: 64 * 1024 })
    const request = decodeRequest((await lp.read({ signal })).subarray())
    await lp.write(encodeResponse(200), { signal })
    await stream.close({ signal })
    say({ event: 'dm', from: connection.remotePeer.toString(), text: request.content, type: request.type })
  } catch (err) {
    say({ event: 'dm_error', error: String(err) })
    stream.abort(err)
  }
})

// Files: serve what was shared here (in memory, bounded).
const files = new Map()
await node.handle(FILE_PROTOCOL, async (stream) => {
  const signal = AbortSignal.timeout(TIMEOUT)
  try {
    const lp = lpStream(stream, { maxDataLength: MAX_FILE })
    const id = fromUtf8.decode((await lp.read({ signal })).subarray())
    const data = files.get(id)
    if (data == null) {
      say({ event: 'file_unknown', id })
      await stream.close({ signal })
      return
    }
    await lp.write(data, { signal })
    await stream.close({ signal })
  } catch (err) {
    stream.abort(err)
  }
})

async function dm (peer, text) {
  const signal = AbortSignal.timeout(TIMEOUT)
  const stream = await node.dialProtocol(peerIdFromString(peer), DM_PROTOCOL, { signal, negotiateFully: false })
  const lp = lpStream(stream, { maxDataLength: 64 * 1024 })
  await lp.write(encodeRequest(text), { signal })
  const response = decodeResponse((await lp.read({ signal })).subarray())
  await stream.close({ signal })
  if (response.metadata == null) throw new Error('no metadata in the response')
  if (response.status !== 200) throw new Error(`status ${response.status}: ${response.statusText}`)
  return response
}

async function fetchFile (peer, id) {
  const signal = AbortSignal.timeout(TIMEOUT * 4)
  const stream = await node.dialProtocol(peerIdFromString(peer), FILE_PROTOCOL, { signal })
  const lp = lpStream(stream, { maxDataLength: MAX_FILE })
  await lp.write(utf8.encode(id), { signal })
  const data = (await lp.read({ signal })).subarray()
  await stream.close({ signal })
  if (data.length === 0) throw new Error('empty file')
  return data
}

async function flood (topic, count, size, run) {
  // Each payload (big-endian): 4-byte run, 8-byte index, 8-byte hrtime ns at publish, then
  // zeros (bench/pubsub.py's layout).
  const started = process.hrtime.bigint()
  let inFlight = []
  for (let n = 0; n < count; n++) {
    const data = new Uint8Array(Math.max(size, 20))
    const view = new DataView(data.buffer)
    view.setUint32(0, run)
    view.setBigUint64(4, BigInt(n))
    view.setBigUint64(12, process.hrtime.bigint())
    inFlight.push(pubsub.publish(topic, data))
    if (inFlight.length >= 64) { await Promise.all(inFlight); inFlight = [] }
  }
  await Promise.all(inFlight)
  return Number(process.hrtime.bigint() - started) / 1e6
}

async function run (command) {
  switch (command.cmd) {
    case 'dial': {
      const conn = await node.dial(multiaddr(command.addr))
      return { peer: conn.remotePeer.toString(), remoteAddr: conn.remoteAddr.toString() }
    }
    case 'publish': {
      const result = await pubsub.publish(command.topic, utf8.encode(command.text))
      return { recipients: result.recipients.map(String) }
    }
    case 'dm':
      await dm(command.peer, command.text)
      return {}
    case 'share': {
      const id = randomUUID()
      files.set(id, Buffer.from(command.b64, 'base64'))
      while (files.size > MAX_FILES) files.delete(files.keys().next().value)
      await pubsub.publish(FILE_TOPIC, utf8.encode(id))
      return { file_id: id }
    }
    case 'fetch': {
      const data = await fetchFile(command.peer, command.file)
      return { b64: Buffer.from(data).toString('base64'), sha256: createHash('sha256').update(data).digest('hex') }
    }
    case 'peers':
      return {
        connections: node.getConnections().map((c) => ({ peer: c.remotePeer.toString(), addr: c.remoteAddr.toString() })),
        subscribers: Object.fromEntries(
          [...new Set([CHAT_TOPIC, FILE_TOPIC, DISCOVERY_TOPIC, ...pubsub.getTopics()])]
            .map((t) => [t, pubsub.getSubscribers(t).map(String)]))
      }
    case 'flood':
      return { ms: await flood(command.topic, command.count, command.size, command.run ?? 0) }
    case 'subscribe':
      pubsub.subscribe(command.topic)
      return {}
    case 'stop':
      await node.stop()
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
lines.on('close', async () => { await node.stop(); process.exit(0) })
const stop = async () => { await node.stop(); process.exit(0) }
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
say({ event: 'ready', peer: node.peerId.toString(), addrs: node.getMultiaddrs().map(String) })
