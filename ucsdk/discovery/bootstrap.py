"""Resolve ``/dnsaddr/`` bootstrap addresses (the libp2p dnsaddr convention).

``/dnsaddr/<domain>/p2p/<id>`` stands for the TXT records of ``_dnsaddr.<domain>``, each
``dnsaddr=<multiaddr>``; entries may point at further ``/dnsaddr/`` names (followed up to
a depth of 4) and only those ending in the requested ``/p2p/<id>`` are kept. Failures are
quick (a few seconds at most) and say why: no resolver, no such name, timeout.

Example:
    >>> from ucsdk.discovery.bootstrap import dnsaddr_domain
    >>> dnsaddr_domain("/dnsaddr/bootstrap.libp2p.io/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyr")
    'bootstrap.libp2p.io'
"""

from __future__ import annotations

from collections.abc import Sequence

import dns.asyncbackend
import dns.asyncresolver
import dns.exception
import dns.resolver
import multiaddr

MAX_DEPTH = 4
MAX_RECORDS = 64


class DnsaddrError(Exception):
    """A ``/dnsaddr/`` name could not be resolved; the message says why."""


def dnsaddr_domain(addr: str) -> str | None:
    parts = addr.split("/")
    if len(parts) > 2 and parts[1] == "dnsaddr":
        return parts[2]
    return None


def _resolver(nameservers: Sequence[str] | None, timeout: float) -> dns.asyncresolver.Resolver:
    if nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [ns.split(":")[0] for ns in nameservers]
        ports = {ns.split(":")[1] for ns in nameservers if ":" in ns}
        if ports:
            resolver.port = int(ports.pop())
    else:
        try:
            resolver = dns.asyncresolver.Resolver()
        except dns.resolver.NoResolverConfiguration as exc:
            raise DnsaddrError(f"no DNS resolver is configured on this machine ({exc})") from None
    resolver.lifetime = timeout
    resolver.timeout = timeout
    return resolver


async def resolve_dnsaddr(
    addr: str,
    nameservers: Sequence[str] | None = None,
    timeout: float = 3.0,
) -> list[str]:
    """The multiaddrs (each ending in ``/p2p/<id>``) a ``/dnsaddr/`` address stands for.

    ``nameservers``: ``["127.0.0.1:5353"]``-style servers to ask instead of the system's.
    Raises :class:`DnsaddrError` with the reason when nothing usable comes back.
    """
    marker = addr.rfind("/p2p/")
    want = addr[marker + len("/p2p/") :] if marker >= 0 else None
    resolver = _resolver(nameservers, timeout)
    backend = dns.asyncbackend.get_backend("trio")
    found: list[str] = []
    pending = [(addr, 0)]
    while pending:
        current, depth = pending.pop()
        domain = dnsaddr_domain(current)
        if domain is None:
            continue
        if depth >= MAX_DEPTH:
            raise DnsaddrError(f"{addr}: more than {MAX_DEPTH} nested /dnsaddr/ names")
        try:
            answer = await resolver.resolve(f"_dnsaddr.{domain}", "TXT", backend=backend)
        except dns.resolver.NXDOMAIN:
            raise DnsaddrError(f"_dnsaddr.{domain} does not exist") from None
        except dns.resolver.NoAnswer:
            raise DnsaddrError(f"_dnsaddr.{domain} has no TXT records") from None
        except dns.resolver.NoNameservers as exc:
            raise DnsaddrError(f"no DNS server answered for _dnsaddr.{domain} ({exc})") from None
        except dns.exception.Timeout:
            raise DnsaddrError(
                f"DNS lookup of _dnsaddr.{domain} timed out after {timeout:g} s "
                "(no network or no DNS server reachable)"
            ) from None
        except OSError as exc:
            raise DnsaddrError(f"DNS lookup of _dnsaddr.{domain} failed: {exc}") from None
        for record in list(answer)[:MAX_RECORDS]:
            text = b"".join(record.strings).decode("utf-8", errors="replace")
            if not text.startswith("dnsaddr="):
                continue
            value = text[len("dnsaddr=") :]
            try:
                multiaddr.Multiaddr(value)
            except Exception:
                continue
            if want is not None and not value.endswith(f"/p2p/{want}"):
                continue
            if value.startswith("/dnsaddr/"):
                pending.append((value, depth + 1))
            elif value not in found:
                found.append(value)
    if not found:
        raise DnsaddrError(f"{addr}: the TXT records name no address of this peer")
    return found
