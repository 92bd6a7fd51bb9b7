// @ts-check
// A js-libp2p browser peer for ucsdk's browser tests, driven through Playwright
// (tests/browser/_browser_peer.py). Dial-only (no listen addresses): WebSocket and
// WebTransport and WebRTC-Direct (v1 as js-libp2p dials it, or v2: see webRTCDirectV2 below),
// and /webrtc through a relay (circuit relay v2), Noise, Yamux, identify, ping, and GossipSub configured like the
// universal-connectivity app's peers (tests/interop/js/uc-peer.mjs): message id = sha256 of
// the decimal seqno, allowPublishToZeroTopicPeers, ignoreDuplicatePublishError, StrictSign.
// window.ucPeer: start, dial, ping, publish, messages, peers, connections, stop.
// Checked with: tsc --noEmit --allowJs --checkJs --strict --module nodenext --lib es2024,dom
//   --skipLibCheck peer.js (typescript 5; not a dependency).
// libp2p 3 calls Promise.withResolvers (Chromium >= 119 has it). Imports are hoisted, so this
// runs after the modules load but before any libp2p call, which is when it is needed.
if (!Promise.withResolvers) {
  /** @type {any} */ (Promise).withResolvers = function () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
import { createLibp2p } from 'libp2p'
import { webSockets } from '@libp2p/websockets'
import { webTransport } from '@libp2p/webtransport'
import { webRTC, webRTCDirect } from '@libp2p/webrtc'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { gossipsub, StrictSign } from '@libp2p/gossipsub'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'

/** @typedef {{from: string | null, text: string, topic: string}} ChatLine */
/** @typedef {{peer: string, remoteAddr: string, transport: string}} ConnectionInfo */
/** @typedef {import('libp2p').Libp2p<{identify: import('@libp2p/identify').Identify,
 *   ping: import('@libp2p/ping').Ping, pubsub: import('@libp2p/gossipsub').GossipSub}>} Node */

const CHAT_TOPIC = 'universal-connectivity'
const DIAL_TIMEOUT = 20_000
const utf8 = new TextEncoder()
const fromUtf8 = new TextDecoder()

/** The app's message id: the raw sha256 digest of the decimal text of the sequence number.
 * @param {import('@libp2p/gossipsub').Message} msg */
async function msgIdFn (msg) {
  if (msg.type !== 'signed') throw new Error('unsigned message')
  const digest = await crypto.subtle.digest('SHA-256', utf8.encode(msg.sequenceNumber.toString()))
  return new Uint8Array(digest)
}

/** @param {string} addr */
function transportOf (addr) {
  if (addr.includes('/p2p-circuit/webrtc')) return 'webrtc'
  if (addr.includes('/p2p-circuit')) return 'relay'
  if (addr.includes('/webtransport')) return 'webtransport'
  if (addr.includes('/ws') || addr.includes('/wss') || addr.includes('/tls/ws')) return 'websocket'
  if (addr.includes('/webrtc-direct')) return 'webrtc-direct'
  if (addr.includes('/webrtc')) return 'webrtc'
  return 'other'
}

// --- what the page shows ------------------------------------------------------------------
const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id))
/** @param {string} line */
function log (line) {
  const stamp = new Date().toISOString().slice(11, 23)
  console.log(`[ucPeer] ${line}`)
  $('log').textContent += `${stamp} ${line}\n`
}
/** @param {string} id @param {string[]} rows */
function showList (id, rows) {
  $(id).replaceChildren(...rows.map((text) => {
    const li = document.createElement('li')
    li.textContent = text
    return li
  }))
}

// --- WebRTC-Direct v2 (libp2p/specs PR 715) -------------------------------------------------
// @libp2p/webrtc 6.0.33 dials v1 only: it replaces the ICE ufrag and pwd of its local offer
// with one random "libp2p+webrtc+v1/..." value ("munging"), and gives the server's
// synthetic answer the same value. Chromium is taking munging away (field trial
// WebRTC-NoSdpMangleUfrag). v2 keeps the offer as the browser made it and gives the answer
// the ufrag and pwd "libp2p+webrtc+v2/<the offer's ice-pwd>", from which the server learns
// the browser's password. With v2 on, this page turns js-libp2p's v1 dial into a v2 dial at
// the two RTCPeerConnection calls where the versions differ; nothing else changes.
const V1_PREFIX = 'libp2p+webrtc+v1/'
const V2_PREFIX = 'libp2p+webrtc+v2/'
const ICE_PWD = /^[A-Za-z0-9+/]{22,256}$/
/** @type {WeakMap<RTCPeerConnection, {sdp: string, pwd: string}>} */
const offers = new WeakMap()
let webrtcDirectVersion = 1
/** @param {string} sdp @param {string} field */
function sdpField (sdp, field) {
  const match = new RegExp(`^a=${field}:([^\\r\\n]*)`, 'm').exec(sdp)
  return match == null ? null : match[1]
}
{
  const proto = RTCPeerConnection.prototype
  const createOffer = proto.createOffer
  const setLocal = proto.setLocalDescription
  const setRemote = proto.setRemoteDescription
  /** @this {RTCPeerConnection} @param {any[]} args */
  proto.createOffer = async function (...args) {
    const offer = await createOffer.apply(this, /** @type {any} */ (args))
    const pwd = sdpField(offer.sdp ?? '', 'ice-pwd')
    if (pwd != null) offers.set(this, { sdp: offer.sdp ?? '', pwd })
    return offer
  }
  /** @this {RTCPeerConnection} @param {RTCSessionDescriptionInit} [desc] */
  proto.setLocalDescription = function (desc) {
    const made = offers.get(this)
    const ufrag = desc?.sdp == null ? null : sdpField(desc.sdp, 'ice-ufrag')
    if (webrtcDirectVersion === 2 && made != null && desc?.type === 'offer' && ufrag?.startsWith(V1_PREFIX)) {
      if (!ICE_PWD.test(made.pwd) || (V2_PREFIX + made.pwd).length > 256) {
        return Promise.reject(new Error(`this browser's ICE password cannot make a v2 ufrag: ${made.pwd}`))
      }
      log('webrtc-direct v2: local offer left as the browser made it')
      return setLocal.call(this, { type: 'offer', sdp: made.sdp })
    }
    return setLocal.call(this, desc)
  }
  /** @this {RTCPeerConnection} @param {RTCSessionDescriptionInit} desc */
  proto.setRemoteDescription = function (desc) {
    const made = offers.get(this)
    const ufrag = desc?.sdp == null ? null : sdpField(desc.sdp, 'ice-ufrag')
    if (webrtcDirectVersion === 2 && made != null && desc.type === 'answer' && ufrag?.startsWith(V1_PREFIX)) {
      const v2 = V2_PREFIX + made.pwd
      const sdp = (desc.sdp ?? '')
        .replace(/^a=ice-ufrag:.*$/m, `a=ice-ufrag:${v2}`)
        .replace(/^a=ice-pwd:.*$/m, `a=ice-pwd:${v2}`)
      log(`webrtc-direct v2: server ufrag ${v2.slice(0, 24)}…`)
      return setRemote.call(this, { type: 'answer', sdp })
    }
    return setRemote.call(this, desc)
  }
}

/** @type {Node | null} */
let node = null
/** @type {ChatLine[]} */
const inbox = []
/** @type {string[]} */
const chat = []

function need () {
  if (node == null) throw new Error('ucPeer.start() first')
  return node
}
/** @returns {ConnectionInfo[]} */
function connections () {
  if (node == null) return []
  return node.getConnections().map((c) => ({
    peer: c.remotePeer.toString(),
    remoteAddr: c.remoteAddr.toString(),
    transport: transportOf(c.remoteAddr.toString())
  }))
}
function refresh () {
  $('status').textContent = node == null ? 'stopped' : `running as ${node.peerId}`
  showList('connections', connections().map((c) => `${c.transport}  ${c.remoteAddr}`))
  showList('chat', chat)
}

/** @param {{iceServers?: string[]}} [options] iceServers: STUN URLs for /webrtc (none by
 * default: @libp2p/webrtc's default is four public STUN servers, and this page may only
 * reach the nodes its test started) */
async function start (options = {}) {
  if (node != null) return node.peerId.toString()
  const iceServers = (options.iceServers ?? []).map((urls) => ({ urls }))
  node = await createLibp2p({
    addresses: { listen: [] },
    // No ICE servers: @libp2p/webrtc's default is four public STUN servers, and this page
    // may only reach the nodes its test started.
    // /webrtc (private to private) goes through a relay: circuit relay v2 for the relayed
    // connection that carries the signalling.
    transports: [
      webSockets(), webTransport(), webRTCDirect({ rtcConfiguration: { iceServers: [] } }),
      circuitRelayTransport(), webRTC({ rtcConfiguration: { iceServers } })
    ],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionGater: { denyDialMultiaddr: () => false }, // loopback and private addresses too
    services: {
      identify: identify(),
      ping: ping(),
      pubsub: gossipsub({
        allowPublishToZeroTopicPeers: true,
        msgIdFn,
        ignoreDuplicatePublishError: true,
        globalSignaturePolicy: StrictSign // the default, stated
      })
    }
  })
  const pubsub = node.services.pubsub
  pubsub.addEventListener('message', (evt) => {
    const msg = evt.detail
    const line = {
      from: msg.type === 'signed' ? msg.from.toString() : null,
      text: fromUtf8.decode(msg.data),
      topic: msg.topic
    }
    inbox.push(line)
    chat.push(`${(line.from ?? '?').slice(-8)}: ${line.text}`)
    refresh()
  })
  node.addEventListener('connection:open', (evt) => {
    log(`connection open: ${evt.detail.remoteAddr} (${transportOf(evt.detail.remoteAddr.toString())})`)
    refresh()
  })
  node.addEventListener('connection:close', (evt) => {
    log(`connection closed: ${evt.detail.remoteAddr}`)
    refresh()
  })
  pubsub.subscribe(CHAT_TOPIC)
  log(`started ${node.peerId}; WebTransport in this browser: ${globalThis.WebTransport != null}; WebRTC: ${globalThis.RTCPeerConnection != null}`)
  refresh()
  return node.peerId.toString()
}

/** @param {string} addr */
async function dial (addr) {
  const started = performance.now()
  const conn = await need().dial(multiaddr(addr), { signal: AbortSignal.timeout(DIAL_TIMEOUT) })
  const ms = performance.now() - started
  const remoteAddr = conn.remoteAddr.toString()
  log(`dialled ${addr} in ${ms.toFixed(1)} ms`)
  return { ms, transport: transportOf(remoteAddr), remoteAddr, peer: conn.remotePeer.toString() }
}

/** Round-trip time in ms (the ping service's, whole ms) to a peer id or a multiaddr.
 * @param {string} target */
async function pingPeer (target) {
  const to = target.startsWith('/') ? multiaddr(target) : peerIdFromString(target)
  const rtt = await need().services.ping.ping(to, { signal: AbortSignal.timeout(DIAL_TIMEOUT) })
  log(`ping ${target.slice(-8)}: ${rtt} ms`)
  return rtt
}

/** @param {string} text @returns {Promise<string[]>} the peers it was sent to */
async function publish (text) {
  const result = await need().services.pubsub.publish(CHAT_TOPIC, utf8.encode(text))
  chat.push(`me: ${text}`)
  refresh()
  return result.recipients.map(String)
}

async function stop () {
  if (node == null) return
  const stopping = node
  node = null
  await stopping.stop()
  log('stopped')
  refresh()
}

/** @type {any} */ (window).ucPeer = {
  start,
  dial,
  ping: pingPeer,
  publish,
  /** @returns {{from: string | null, text: string}[]} */
  messages: () => inbox.filter((m) => m.topic === CHAT_TOPIC).map(({ from, text }) => ({ from, text })),
  /** @param {string} [topic] */
  peers: (topic = CHAT_TOPIC) => node == null ? [] : node.services.pubsub.getSubscribers(topic).map(String),
  connections,
  /** Close every connection to a peer (from the browser's side).
   * @param {string} peer */
  hangUp: async (peer) => { await need().hangUp(peerIdFromString(peer)); refresh() },
  /** Which WebRTC-Direct flow the next dials use: 1 (munging) or 2 (specs PR 715).
   * @param {number} version */
  setWebRTCDirectVersion: (version) => {
    if (version !== 1 && version !== 2) throw new Error(`no WebRTC-Direct version ${version}`)
    webrtcDirectVersion = version
    log(`webrtc-direct dials use v${version}`)
  },
  stop
}
log('page loaded')
