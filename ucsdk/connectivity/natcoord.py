"""NAT coordination: AutoNAT's verdict → relay reservations → DCUtR upgrades.

- When AutoNAT says this node is *private*, it holds reservations on up to
  ``max_relay_reservations`` connected relays (peers whose identify lists the relay hop
  protocol), so that others can reach it at its circuit addresses.
- When a peer reaches us over a relay, we are DCUtR's inbound side and drive the upgrade
  to a direct connection once identify has told both sides their addresses.
- Hole-punch outcomes are kept (``node.hole_punches()``) and counted for the metrics.

The services themselves (``autonat``, ``relay_client``, ``relay_server``, ``dcutr``) are
made and started by the manager; this part only reacts to what they and the connection
tracker report.

Example (no services attached: nothing to coordinate yet):
    >>> from ucsdk.connectivity.natcoord import NatCoordinator
    >>> from ucsdk.connectivity.recorder import Recorder
    >>> nat = NatCoordinator(Recorder(10, 5), auto_reserve=True)
    >>> nat.nat_status, nat.success_rate(), nat.connected_relays()
    ('unknown', 0.0, [])
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import trio
from libp2p.abc import INetConn
from libp2p.peer.id import ID

from ucsdk._service import Service
from ucsdk.connectivity.connections import OpenConnection
from ucsdk.connectivity.recorder import Recorder
from ucsdk.nat.autonat import AUTONAT_PROTOCOL
from ucsdk.nat.autonat_v2 import DIAL_REQUEST_PROTOCOL
from ucsdk.nat.dcutr import HolePunchResult
from ucsdk.nat.relay import HOP_PROTOCOL, parse_circuit
from ucsdk.peers import PeerRecord

logger = logging.getLogger("UniversalConnectivity")

MAX_RELAYS_SEEN = 64
RELAY_SEEN_MAX_AGE = 600.0
"""Seconds a relay is remembered after it was last seen connected."""
RELAY_PRUNE_INTERVAL = 30.0
RESERVE_ATTEMPT_TIMEOUT = 20.0
"""Seconds one automatic reservation may take (connecting, negotiating, the relay's reply)."""
RESERVE_RETRY_FIRST = 2.0
RESERVE_RETRY_MAX = 60.0
"""An automatic reservation that failed is tried again after 2 s, doubling up to 60 s,
while this node is private and holds fewer reservations than it may."""
MAX_HOLE_PUNCHES_KEPT = 1000
IDENTIFY_WAIT = 3.0
STALE_DIRECT_WAIT = 2.0
"""How long a direct connection we still hold may take to go away once the peer has come
back through a relay (it evidently has no direct connection to us any more)."""


class NatCoordinator(Service):
    """Reacts to AutoNAT, identify and relayed connections; owns the hole-punch record."""

    def __init__(self, recorder: Recorder, *, auto_reserve: bool) -> None:
        super().__init__()
        self._recorder = recorder
        self.auto_reserve = auto_reserve
        self.autonat: Any = None
        self.autonat_v2: Any = None
        self.relay_client: Any = None
        self.dcutr: Any = None
        self.is_connected: Callable[[str], bool] = lambda peer: False
        self.is_identified: Callable[[str], bool] = lambda peer: False
        self.has_direct: Callable[[str], bool] = lambda peer: False
        self.nat_status = "unknown"
        self._relays_seen: OrderedDict[str, float] = OrderedDict()
        """Relays by when they were last seen connected (``time.monotonic()``)."""
        self._hole_punches: deque[HolePunchResult] = deque(maxlen=MAX_HOLE_PUNCHES_KEPT)
        self.dcutr_attempts = 0
        self.dcutr_successes = 0
        self._reserving = False
        self._retry_delay = RESERVE_RETRY_FIRST
        self._retry_planned = False

    async def _run(self, nursery: trio.Nursery) -> None:
        self._reserving = False
        self._retry_planned = False
        self._retry_delay = RESERVE_RETRY_FIRST
        self.schedule_reservations()
        while True:
            await trio.sleep(RELAY_PRUNE_INTERVAL)
            self.prune_relays()

    # ---------------------------------------------------------------- listeners
    def on_identified(self, peer_id: ID, record: PeerRecord) -> None:
        """Identify told us a peer's protocols: AutoNAT servers and relays matter here."""
        if self.autonat is not None and str(AUTONAT_PROTOCOL) in record.protocols:
            self.autonat.poke()
        if self.autonat_v2 is not None and str(DIAL_REQUEST_PROTOCOL) in record.protocols:
            self.autonat_v2.poke()
        if str(HOP_PROTOCOL) in record.protocols and self._note_relay(record.peer_id):
            self.schedule_reservations()

    def _note_relay(self, peer: str) -> bool:
        """Remember a relay, within ``MAX_RELAYS_SEEN``; False if there was no room.

        Identities are free: a flood of "relays" must not push out the ones we use. When
        the set is full, one not connected (the longest known) makes room; if every one is
        connected, the newcomer is not kept (and counted).
        """
        now = time.monotonic()
        self.prune_relays(now)
        if peer not in self._relays_seen and len(self._relays_seen) >= MAX_RELAYS_SEEN:
            gone = next((r for r in self._relays_seen if not self.is_connected(r)), None)
            if gone is None:
                self._recorder.count_invalid("relays_seen_full", peer)
                return False
            del self._relays_seen[gone]
        self._relays_seen[peer] = now
        self._relays_seen.move_to_end(peer)
        return True

    def prune_relays(self, now: float | None = None) -> None:
        """Forget relays not connected for ``RELAY_SEEN_MAX_AGE`` seconds."""
        now = time.monotonic() if now is None else now
        for relay, seen in list(self._relays_seen.items()):
            if self.is_connected(relay):
                self._relays_seen[relay] = now
            elif now - seen > RELAY_SEEN_MAX_AGE:
                del self._relays_seen[relay]

    def on_connection(self, conn: INetConn, known: OpenConnection) -> None:
        """A relayed inbound connection: we are DCUtR's ``B`` and drive the upgrade."""
        if not (known.relayed and known.direction == "inbound"):
            return
        if self.dcutr is None:
            return
        relay_id = None
        if known.remote_addr and "/p2p-circuit" in known.remote_addr:
            with contextlib.suppress(Exception):
                relay_id = parse_circuit(known.remote_addr)[1]
        self.spawn(self._upgrade_relayed, conn.muxed_conn.peer_id, relay_id)

    def on_nat_status(self, before: str, after: str, confidence: int) -> None:
        self.nat_status = after
        if after == "private":
            self.schedule_reservations()
        latest = list(self.autonat.reports)[-6:] if self.autonat is not None else []
        said = "; ".join(
            f"{r.server[-6:]} {r.status_name} ({r.server_group})" for r in latest if r.counted
        )
        self._recorder.record(
            "nat_status", None, f"{before} -> {after} (confidence {confidence}): {said}"
        )

    def on_autonat_report(self, report: Any) -> None:
        """One AutoNAT answer: who said what from which IP group, and how it was counted."""
        where = f" from {report.server_ip}" if report.server_ip else ""
        self._recorder.record(
            "autonat_report", report.server, f"{report.status_name}{where}: {report.vote}"
        )

    def on_autonat_v2_check(self, check: Any) -> None:
        """One AutoNAT v2 check: which server judged which address, and how."""
        verdict = {True: "reachable", False: "not reachable", None: "no verdict"}
        self._recorder.record(
            "autonat_v2_check",
            check.server,
            f"{check.addr or check.asked}: {verdict[check.reachable]} "
            f"({check.response}, dial {check.dial}"
            + (f", {check.dial_data} B of dial data" if check.dial_data else "")
            + ")",
        )

    def on_hole_punch(self, result: HolePunchResult) -> None:
        self.dcutr_attempts += 1
        self.dcutr_successes += int(result.success)
        self._hole_punches.append(result)
        took = f" in {result.time_to_direct_ms:.0f} ms" if result.time_to_direct_ms else ""
        self._recorder.record(
            "hole_punch",
            result.peer_id,
            f"{result.outcome}{took} as {result.role}, {result.attempts} attempt(s): "
            f"{result.reason}",
        )

    def relay_event(self, kind: str, peer: str | None, detail: str) -> None:
        self._recorder.record(f"relay_{kind}", peer, detail)

    # -------------------------------------------------------------------- queries
    def connected_relays(self) -> list[str]:
        """Relays (peers speaking the hop protocol) we are connected to, newest first."""
        return [r for r in reversed(self._relays_seen) if self.is_connected(r)]

    def hole_punches(self) -> list[HolePunchResult]:
        return list(self._hole_punches)

    def success_rate(self) -> float:
        return self.dcutr_successes / self.dcutr_attempts if self.dcutr_attempts else 0.0

    # ---------------------------------------------------------------------- work
    def schedule_reservations(self) -> None:
        """When private, hold reservations on connected relays (in the background)."""
        if (
            self.relay_client is None
            or not self.auto_reserve
            or self.nat_status != "private"
            or self._reserving
        ):
            return
        self._reserving = self.spawn(self._reserve_on_relays)

    async def _reserve_on_relays(self) -> None:
        failed = False
        try:
            client = self.relay_client
            if client is None:
                return
            for relay in self.connected_relays():
                if len(client.reservations) >= client.max_reservations:
                    break
                if relay in client.reservations:
                    continue
                try:
                    with trio.fail_after(RESERVE_ATTEMPT_TIMEOUT):
                        await client.make_reservation(relay)
                except Exception as exc:  # the relay's failure, or a bug: shown either way
                    failed = True
                    reason = (
                        "no answer in time"
                        if isinstance(exc, trio.TooSlowError)
                        else getattr(exc, "reason", None) or repr(exc)
                    )
                    self._recorder.record(
                        "relay_reservation_failed",
                        relay,
                        f"{reason}; trying again in {self._retry_delay:.0f} s",
                    )
        finally:
            self._reserving = False
        if failed:
            self._plan_retry()
        else:
            self._retry_delay = RESERVE_RETRY_FIRST

    def _plan_retry(self) -> None:
        if self._retry_planned:
            return
        delay = self._retry_delay
        self._retry_delay = min(RESERVE_RETRY_MAX, delay * 2)
        self._retry_planned = self.spawn(self._retry_after, delay)

    async def _retry_after(self, delay: float) -> None:
        await trio.sleep(delay)
        self._retry_planned = False
        self.schedule_reservations()

    async def _upgrade_relayed(self, pid: ID, relay_id: str | None) -> None:
        if self.dcutr is None:
            return
        with trio.move_on_after(IDENTIFY_WAIT):
            while not self.is_identified(pid.to_base58()):
                await trio.sleep(0.05)
        # A close takes a moment to arrive: a peer that just closed its direct connection
        # and came back through the relay would otherwise find us "already direct".
        with trio.move_on_after(STALE_DIRECT_WAIT):
            while self.has_direct(pid.to_base58()):
                await trio.sleep(0.05)
        try:
            await self.dcutr.attempt_hole_punch(pid, relay_id)
        except Exception as exc:
            logger.debug("DCUtR upgrade of %s failed: %s", pid, exc)
