"""The parts a :class:`ucsdk.UniversalConnectivityManager` is composed of.

Each part owns one job and its state and is small enough to read in one sitting:

- :mod:`.recorder` — events, counters, metrics history, user callbacks;
- :mod:`.supervisor` — the health of every background service (``node.services()``);
- :mod:`.peertable` — the bounded table of peers heard of, by any mechanism;
- :mod:`.connections` — open connections: tracking, duplicates, descriptions;
- :mod:`.addressbook` — listen, observed and circuit addresses; the one place that decides
  what this node advertises (``node.addresses()``);
- :mod:`.identify` — identify of every new connection, and answering identify per peer;
- :mod:`.dialer` — the ranked, parallel dial strategy with relay fallback
  (``node.dial_attempts()``), auto-dial and bootstrap connections;
- :mod:`.natcoord` — AutoNAT status → relay reservations → DCUtR upgrades.

The parts talk through callbacks the manager wires, never through the manager itself, and
none of them imports :mod:`ucsdk.manager`.
"""
