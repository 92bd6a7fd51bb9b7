"""mDNS discovery on the local network (libp2p mDNS spec), on python-zeroconf.

A node registers ``<random name>._p2p._udp.local`` with one TXT string
``dnsaddr=<multiaddr>/p2p/<peer id>`` per listen address, and browses for the same
service type. The name is random (32–63 lowercase letters and digits), never the peer id.
Zeroconf works in its own threads; what it finds re-enters the trio loop through the
loop's token. Only the node's own listen addresses are announced, and only on the
interfaces that carry them (or the ones you name).

``service_name`` is the DNS-SD service: ``"p2p"`` (the default) is the libp2p spec's
``_p2p._udp.local``, which every libp2p implementation browses; another name scopes
discovery to nodes using the same name (e.g. ``"my-app"`` gives ``_my-app._udp.local``).

Example (inside trio, with a running host)::

    mdns = MDNSService(host, service_name="p2p")
    await mdns.start()
    peers = mdns.get_discovered_peers()
    await mdns.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import socket
import string
import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID

from ucsdk import errors
from ucsdk.discovery._base import DiscoveryService, check_seconds
from ucsdk.host import expand_wildcard
from ucsdk.peers import MAX_ADDRS_PER_PEER, DiscoveredPeer

logger = logging.getLogger("UniversalConnectivity")
# How long the browser thread waits for an instance's SRV/TXT records that were not in
# the announcement. Honest responders answer within milliseconds; every unresolvable
# name holds the (single) browser thread this long, so it is kept short.
RESOLVE_TIMEOUT_MS = 1000

_ALPHABET = string.ascii_lowercase + string.digits
MAX_TXT_STRING = 255


def random_service_instance_name() -> str:
    """32–63 random lowercase letters and digits (the spec's instance name)."""
    length = 32 + secrets.randbelow(32)
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def encode_txt(strings: Sequence[str]) -> bytes:
    """DNS TXT rdata: each string prefixed with its length."""
    out = bytearray()
    for text in strings:
        raw = text.encode()
        if len(raw) > MAX_TXT_STRING:
            continue
        out.append(len(raw))
        out.extend(raw)
    return bytes(out)


def decode_txt(rdata: bytes) -> list[str]:
    """The strings of TXT rdata; raises ValueError when a length runs past the end."""
    strings: list[str] = []
    index = 0
    while index < len(rdata):
        length = rdata[index]
        end = index + 1 + length
        if end > len(rdata):
            raise ValueError("TXT string runs past the record")
        strings.append(rdata[index + 1 : end].decode("utf-8", errors="strict"))
        index = end
    return strings


def parse_dnsaddrs(strings: Sequence[str]) -> tuple[str | None, list[str]]:
    """``(peer_id, addrs)`` from ``dnsaddr=`` TXT strings; addresses without ``/p2p``."""
    peer_id: str | None = None
    addrs: list[str] = []
    for text in strings:
        if not text.startswith("dnsaddr="):
            continue
        value = text[len("dnsaddr=") :]
        maddr = multiaddr.Multiaddr(value)  # raises on garbage
        marker = value.rfind("/p2p/")
        if marker < 0:
            raise ValueError("dnsaddr without /p2p/<peer id>")
        pid = ID.from_base58(value[marker + len("/p2p/") :]).to_base58()
        if peer_id is not None and pid != peer_id:
            raise ValueError("dnsaddr entries name different peers")
        peer_id = pid
        transport = str(maddr)[: str(maddr).rfind("/p2p/")]
        if transport and transport not in addrs and len(addrs) < MAX_ADDRS_PER_PEER:
            addrs.append(transport)
    return peer_id, addrs


async def run_in_own_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking zeroconf call in a thread of its own and wait for it without
    blocking the loop (trio's worker threads linger after use; this one ends at once)."""
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

    thread = threading.Thread(target=target, name="ucsdk-zeroconf-call", daemon=True)
    thread.start()
    with trio.CancelScope(shield=True):
        await done.wait()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def close_with_one_goodbye(zeroconf: Any) -> None:
    """Close ``zeroconf``, announcing our records' end (TTL 0) once.

    ``Zeroconf.close()`` sends that goodbye three times, 125 ms apart, and waits: a quarter
    of a second of every node's stop. RFC 6762 (section 10.1) asks for one goodbye; a peer
    that misses it forgets the records when their TTL runs out, and a libp2p peer learns
    the node is gone from its closed connections anyway.
    """

    async def goodbye() -> None:
        out = zeroconf.generate_unregister_all_services()
        if out is not None:
            zeroconf.async_send(out)

    loop = getattr(zeroconf, "loop", None)
    if loop is not None and loop.is_running():
        try:
            asyncio.run_coroutine_threadsafe(goodbye(), loop).result(1.0)
        except Exception as exc:
            logger.debug("mDNS goodbye not sent: %r", exc)
    zeroconf.close()


class MDNSService(DiscoveryService):
    """Find and announce peers with multicast DNS (see the module docstring)."""

    source = "mdns"

    def __init__(
        self,
        host: IHost,
        service_name: str = "p2p",
        query_interval: float = 60.0,
        peer_ttl: float = 300.0,
        on_peer_discovered: Callable[[DiscoveredPeer], Any] | None = None,
        interfaces: Sequence[str] | None = None,
        max_peers: int = 1000,
    ) -> None:
        super().__init__(peer_ttl, on_peer_discovered, max_peers)
        if not isinstance(service_name, str) or not service_name or len(service_name) > 15:
            raise errors.InvalidInput("service_name", service_name, "1 to 15 characters")
        for ip in interfaces or ():
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise errors.InvalidInput(
                    "interface", ip, "an IP address of this machine"
                ) from None
        self.host = host
        self.service_type = f"_{service_name}._udp.local."
        self.query_interval = check_seconds("query_interval", query_interval)
        self.interfaces = list(interfaces) if interfaces else None
        self.instance_name = random_service_instance_name()
        self.local_peer_id = host.get_id().to_base58()
        self._zeroconf: Any = None
        self._browser: Any = None
        self._token: trio.lowlevel.TrioToken | None = None

    def announced_addrs(self) -> list[str]:
        """Own listen addresses on the chosen interfaces, each ending in ``/p2p/<id>``."""
        out: list[str] = []
        for addr in self.host.get_transport_addrs():
            for expanded in expand_wildcard(str(addr)):
                ip = expanded.split("/")[2]
                if self.interfaces is None or ip in self.interfaces:
                    out.append(f"{expanded}/p2p/{self.local_peer_id}")
        return out

    def _interface_ips(self) -> list[str]:
        if self.interfaces is not None:
            return self.interfaces
        ips = [a.split("/")[2] for a in self.announced_addrs() if a.startswith("/ip4/")]
        return list(dict.fromkeys(ips))

    # ---------------------------------------------------------------- life cycle
    async def _on_start(self) -> None:
        from zeroconf import ServiceInfo, Zeroconf

        self._token = trio.lowlevel.current_trio_token()
        ips = self._interface_ips()
        if not ips:
            raise errors.InvalidInput("interfaces", ips, "at least one IPv4 listen address")
        addrs = self.announced_addrs()
        ports = [int(a.split("/")[4]) for a in addrs if a.split("/")[3] in ("tcp", "udp")]
        self._zeroconf = Zeroconf(interfaces=ips)
        info = ServiceInfo(
            self.service_type,
            f"{self.instance_name}.{self.service_type}",
            addresses=[socket.inet_aton(ip) for ip in ips],
            port=ports[0] if ports else 0,
            properties=encode_txt([f"dnsaddr={a}" for a in addrs]),
            server=f"{self.instance_name}.local.",
        )
        try:
            # The instance name is 32+ random characters, so a name conflict is not a
            # real risk: skip the 1.2 s of probing (registration takes ~0.45 s then).
            await run_in_own_thread(
                partial(self._zeroconf.register_service, info, cooperating_responders=True)
            )
        except Exception:
            await run_in_own_thread(close_with_one_goodbye, self._zeroconf)
            raise

    async def _run(self, nursery: trio.Nursery) -> None:
        nursery.start_soon(self._browse_forever)

    async def _browse_forever(self) -> None:
        from zeroconf import ServiceBrowser

        while True:
            self._browser = ServiceBrowser(
                self._zeroconf, self.service_type, handlers=[self._on_service_change]
            )
            try:
                await trio.sleep(self.query_interval)
            finally:
                browser, self._browser = self._browser, None
                with trio.CancelScope(shield=True):
                    await run_in_own_thread(browser.cancel)
            self.clear_stale_peers()

    async def _on_stop(self) -> None:
        zeroconf, self._zeroconf = self._zeroconf, None
        if zeroconf is not None:
            await run_in_own_thread(close_with_one_goodbye, zeroconf)

    # ------------------------------------------------------- zeroconf's thread side
    def _on_service_change(
        self, zeroconf: Any, service_type: str, name: str, state_change: Any
    ) -> None:
        if state_change.name not in ("Added", "Updated"):
            return
        if name.startswith(f"{self.instance_name}."):
            return
        try:
            info = zeroconf.get_service_info(service_type, name, timeout=RESOLVE_TIMEOUT_MS)
        except Exception as exc:  # e.g. BadTypeInNameException: it would end the browser
            self._drop("bad_name", f"{name!r}: {type(exc).__name__}")
            return
        if info is None:
            self._drop("unresolved", name)  # no SRV/TXT for it in time
            return
        if not info.text:
            self._drop("no_dnsaddr", name)
            return
        try:
            peer_id, addrs = parse_dnsaddrs(decode_txt(info.text))
        except Exception as exc:
            self._drop("malformed", f"{name}: {exc}")
            return
        if peer_id is None:
            self._drop("no_dnsaddr", name)
            return
        if peer_id == self.local_peer_id:
            return
        self._to_loop(self._remember_if_running, peer_id, addrs)

    def _drop(self, reason: str, detail: str) -> None:
        logger.debug("mDNS: dropped a %s record (%s)", reason, detail)
        self._to_loop(self.dropped.update, [reason])

    def _to_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        token = self._token
        if token is None:
            return
        try:
            token.run_sync_soon(fn, *args)
        except trio.RunFinishedError:
            logger.debug("mDNS result after the event loop ended; ignored")

    def _remember_if_running(self, peer_id: str, addrs: list[str]) -> None:
        if self.running:
            self._remember(peer_id, addrs)
