// A js-libp2p node running AutoNAT v2 (@libp2p/autonat-v2: client and server in one
// service), for ucsdk's interop tests. It listens on /ip4/0.0.0.0/tcp/<port>, dials the
// multiaddrs given, and prints one JSON object per line on stdout:
//   {"event":"listening","peer":...,"addrs":[...]}   once, every address it listens on
//   {"event":"address","addr":...,"reachable":true|false|null,"verified":...,
//    "private":...,"type":...}                      each own address, again on each change;
//       reachable: true = confirmed by an AutoNAT v2 server's dial-back, false = servers
//       could not dial it, null = not known yet (or private: js does not check those)
//   {"event":"dialled","addr":...,"peer":...} / {"event":"dial_failed","addr":...,"error":...}
//   {"event":"connected","peer":...,"addr":...}     each connection opened
//   {"event":"dial_back","peer":...,"addr":...,"nonce_known":bool}
//       a server dialled us back; nonce_known: its DialBack carried the nonce of one of
//       our requests in flight (the client side's check)
//   {"event":"served","addr":...,"dial_status":...} we (the server) dialled a client back
// Every object also has "ms": milliseconds since the script started.
// Usage: node autonat-v2.mjs [--port N] [--documentation-ranges-public] [multiaddr ...]
//
// --documentation-ranges-public: @libp2p/utils counts 192.0.2.0/24, 198.51.100.0/24 and
// 203.0.113.0/24 (RFC 5737) as private, so js-libp2p neither asks AutoNAT to verify such
// an address of its own (it takes them as verified without asking) nor dials one back as a
// server. The ucsdk NAT lab's "internet" is made of exactly those ranges, so for a lab
// run a module hook drops them from that one table (the same choice ucsdk makes, see
// ucsdk.addresses.scope_of). Nothing else of js-libp2p is changed.
import { register } from 'node:module'

if (!Promise.withResolvers) {
  // Node 20 lacks it; libp2p 3 uses it.
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const started = Date.now()
const say = (obj) => process.stdout.write(JSON.stringify({ ...obj, ms: Date.now() - started }) + '\n')
const DOCUMENTATION_RANGES = ['192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24']

const argv = process.argv.slice(2)
let port = 0
let documentationPublic = false
const toDial = []
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--port') {
    port = Number(argv[++i])
  } else if (argv[i] === '--documentation-ranges-public') {
    documentationPublic = true
  } else {
    toDial.push(argv[i])
  }
}

if (documentationPublic) {
  // Runs in the loader thread: rewrite @libp2p/utils' private-IP table as it is loaded.
  const hooks = `
    const RANGES = ${JSON.stringify(DOCUMENTATION_RANGES)}
    export async function load (url, context, nextLoad) {
      const result = await nextLoad(url, context)
      if (!url.endsWith('/@libp2p/utils/dist/src/private-ip.js')) return result
      let source = typeof result.source === 'string' ? result.source : new TextDecoder().decode(result.source)
      for (const range of RANGES) source = source.replace("'" + range + "',", '')
      return { ...result, source, shortCircuit: true }
    }`
  register('data:text/javascript,' + encodeURIComponent(hooks), import.meta.url)
}

const { createLibp2p } = await import('libp2p')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { identify } = await import('@libp2p/identify')
const { autoNATv2 } = await import('@libp2p/autonat-v2')
const { isPrivate, isPrivateIp } = await import('@libp2p/utils')
const { multiaddr } = await import('@multiformats/multiaddr')

if (documentationPublic && DOCUMENTATION_RANGES.some(r => isPrivateIp(r.split('/')[0]))) {
  process.stderr.write('the private-IP table of @libp2p/utils was not rewritten\n')
  process.exit(2)
}

const node = await createLibp2p({
  addresses: { listen: [`/ip4/0.0.0.0/tcp/${port}`] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify(), autoNAT: autoNATv2() }
})
const { client, server } = node.services.autoNAT

// Client: note what the dial-back handler's nonce lookup found (the handler is looked up
// on the instance at each call, so wrapping it here sees every dial-back).
let lastLookup = null
const nonces = new (class extends Set {
  has (value) {
    const found = super.has(value)
    lastLookup = { nonce: String(value), found }
    return found
  }
})(client.nonces)
client.nonces = nonces
const handleDialBack = client.handleDialBackStream.bind(client)
client.handleDialBackStream = async (stream, connection) => {
  lastLookup = null
  try {
    await handleDialBack(stream, connection)
  } finally {
    say({
      event: 'dial_back',
      peer: connection.remotePeer.toString(),
      addr: connection.remoteAddr.toString(),
      nonce: lastLookup?.nonce ?? null,
      nonce_known: lastLookup?.found ?? false
    })
  }
}
// Server: each dial-back it makes, with the DialStatus it will answer.
const dialClientBack = server.dialClientBack.bind(server)
server.dialClientBack = async (ma, nonce, options) => {
  const status = await dialClientBack(ma, nonce, options)
  say({ event: 'served', addr: ma.toString(), dial_status: status })
  return status
}

const addressManager = node.components.addressManager
const printed = new Map()
const reportAddresses = () => {
  const now = Date.now()
  for (const meta of addressManager.getAddressesWithMetadata()) {
    const addr = meta.multiaddr.toString()
    const priv = isPrivate(meta.multiaddr)
    let reachable = null
    if (!priv) {
      if (meta.verified) reachable = true
      else if (meta.expires > now) reachable = false // un-confirmed until it expires
    }
    const row = { event: 'address', addr, reachable, verified: meta.verified, private: priv, type: meta.type }
    const key = JSON.stringify(row)
    if (printed.get(addr) !== key) {
      printed.set(addr, key)
      say(row)
    }
  }
}

say({
  event: 'listening',
  peer: node.peerId.toString(),
  addrs: addressManager.getAddressesWithMetadata().map(m => m.multiaddr.toString()),
  documentation_ranges_public: documentationPublic
})
reportAddresses()
node.addEventListener('self:peer:update', reportAddresses)
const timer = setInterval(reportAddresses, 250)
node.addEventListener('connection:open', (evt) => {
  say({ event: 'connected', peer: evt.detail.remotePeer.toString(), addr: evt.detail.remoteAddr.toString() })
})

for (const addr of toDial) {
  try {
    const conn = await node.dial(multiaddr(addr))
    say({ event: 'dialled', addr, peer: conn.remotePeer.toString() })
  } catch (err) {
    say({ event: 'dial_failed', addr, error: String(err) })
  }
}

const stop = async () => {
  clearInterval(timer)
  await node.stop()
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
