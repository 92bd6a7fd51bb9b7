"""Transports py-libp2p lacks or gets wrong, registered on the host by :mod:`ucsdk.host`.

* :mod:`ucsdk.transports.webtransport`: libp2p over WebTransport (HTTP/3), what browsers
  dial, with certificates from :mod:`ucsdk.transports.certs`.
"""
