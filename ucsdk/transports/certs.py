"""Self-signed certificates for WebTransport, derived from the host key and rolled over.

Browsers accept a self-signed certificate for WebTransport only by its hash
(``serverCertificateHashes``), and only if it is valid for at most 14 days and has no RSA
key. The libp2p WebTransport spec asks a server to advertise the hash of the certificate
it uses *and* of the next one, so that an address a client cached keeps working across a
rollover, and to list recently expired ones in its Noise handshake too.

Here time is cut into periods of :data:`PERIOD` (12 days). Certificate *i* is an ECDSA
P-256 certificate valid from the start of period *i* to its end, widened by
:data:`MARGIN` (one hour) on each side for clock skew: 12 days and 2 hours, under the
14-day cap. The node serves certificate *i* during period *i* and advertises *i* and
*i + 1*; its Noise extension lists *i - 1*, *i* and *i + 1*.

Each certificate is derived from the host's private key and the period's index (the key
by HKDF-SHA256, the signature by RFC 6979 deterministic ECDSA), as go-libp2p does: a node
that restarts serves the same certificates, so addresses other peers or browsers cached
still verify. The period boundaries are shifted by an offset taken from the key, so the
nodes of a network do not all roll over at the same moment.

Example:
    >>> from ucsdk.identity import new_key_pair
    >>> certs = CertificateManager(new_key_pair().private_key.to_bytes())
    >>> len(certs.advertised_multibase())
    2
    >>> certs.current().validity_days < 14
    True
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID

PERIOD = 12 * 24 * 3600.0
"""Seconds each certificate is the one served."""
MARGIN = 3600.0
"""Seconds a certificate's validity extends before and after its period."""
MAX_VALIDITY = 14 * 24 * 3600.0
"""The longest validity a browser accepts for a certificate it checks by hash."""

_SHA2_256 = b"\x12\x20"  # multihash code and digest length
_P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)


def certhash(der: bytes) -> bytes:
    """The multihash (sha2-256) of a DER certificate, as a ``/certhash`` carries it."""
    return _SHA2_256 + hashlib.sha256(der).digest()


def certhash_multibase(multihash: bytes) -> str:
    """``multihash`` as the multibase (base64url, ``u``) text of a ``/certhash``."""
    return "u" + base64.urlsafe_b64encode(multihash).decode().rstrip("=")


def certhash_from_multibase(text: str) -> bytes:
    """The multihash a ``/certhash`` value names; ``ValueError`` if it is not one.

    >>> certhash_from_multibase(certhash_multibase(certhash(b"x"))) == certhash(b"x")
    True
    """
    if not text or text[0] not in "uUmMzfFbB":
        raise ValueError(f"not a multibase string: {text!r}")
    base, body = text[0], text[1:]
    if base in "uU":
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    elif base in "mM":
        raw = base64.b64decode(body + "=" * (-len(body) % 4))
    elif base in "fF":
        raw = bytes.fromhex(body)
    elif base in "bB":
        raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
    else:  # z: base58btc
        import base58

        raw = base58.b58decode(body)
    if len(raw) != 34 or raw[:2] != _SHA2_256:
        raise ValueError(f"not a sha2-256 multihash: {text!r}")
    return raw


def derive_key(material: bytes, info: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    """An ECDSA P-256 key derived from secret ``material`` (HKDF-SHA256 with ``info``
    first, when given): the same material gives the same key."""
    if info is not None:
        material = HKDF(algorithm=hashes.SHA256(), length=48, salt=None, info=info).derive(material)
    scalar = int.from_bytes(material, "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def self_signed(
    key: ec.EllipticCurvePrivateKey,
    material: bytes,
    not_before: dt.datetime,
    not_after: dt.datetime,
    common_name: str,
) -> x509.Certificate:
    """A self-signed certificate for ``key``, reproducible: the serial number comes from
    ``material`` and the signature is RFC 6979 deterministic ECDSA."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(hashlib.sha256(material).digest()[:16], "big") >> 1)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        # Chromium's certificate parser (QUIC's CertificateView) refuses a certificate
        # without an extensions block: "certificate unknown" (seen here).
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    )


@dataclass(frozen=True)
class Certificate:
    """One WebTransport certificate: DER bytes, PEM key, validity, multihash."""

    index: int
    der: bytes
    key_pem: bytes
    not_before: float
    not_after: float

    @property
    def multihash(self) -> bytes:
        return certhash(self.der)

    @property
    def validity_days(self) -> float:
        return (self.not_after - self.not_before) / 86400

    def x509(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.der)

    def private_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key


class CertificateManager:
    """The certificates a WebTransport listener serves and advertises.

    ``seed`` is secret key material (the host's private key bytes); ``clock`` returns
    the time (tests move it). ``period`` may be shortened for tests (at least 60 s).
    """

    def __init__(
        self,
        seed: bytes,
        *,
        clock: Callable[[], float] = time.time,
        period: float = PERIOD,
        margin: float = MARGIN,
    ) -> None:
        if period < 60 or period + 2 * margin > MAX_VALIDITY:
            raise ValueError(f"period {period} s: between 60 s and 14 days minus margins")
        self._seed = hashlib.sha256(b"ucsdk webtransport certificates\x00" + seed).digest()
        self._clock = clock
        self.period = period
        self.margin = margin
        self.offset = int.from_bytes(self._seed[:8], "big") % int(period)
        self._cache: dict[int, Certificate] = {}

    def index_at(self, when: float) -> int:
        return int((when - self.offset) // self.period)

    def certificate(self, index: int) -> Certificate:
        """Certificate ``index`` (derived once, then cached; three are kept)."""
        cert = self._cache.get(index)
        if cert is None:
            cert = self._derive(index)
            self._cache[index] = cert
            for old in sorted(self._cache)[:-3]:
                del self._cache[old]
        return cert

    def current(self) -> Certificate:
        """The certificate served now."""
        return self.certificate(self.index_at(self._clock()))

    def advertised(self) -> list[Certificate]:
        """The certificates whose hashes go in the node's addresses: now's and the next."""
        index = self.index_at(self._clock())
        return [self.certificate(index), self.certificate(index + 1)]

    def advertised_multibase(self) -> list[str]:
        return [certhash_multibase(c.multihash) for c in self.advertised()]

    def noise_certhashes(self) -> list[bytes]:
        """What the server lists in its Noise ``webtransport_certhashes`` extension: the
        previous (recently expired), current and next certificates' multihashes."""
        index = self.index_at(self._clock())
        return [self.certificate(i).multihash for i in (index - 1, index, index + 1)]

    def _derive(self, index: int) -> Certificate:
        info = b"period " + str(index).encode()
        material = HKDF(algorithm=hashes.SHA256(), length=48, salt=None, info=info).derive(
            self._seed
        )
        key = derive_key(material)
        start = self.offset + index * self.period
        not_before = start - self.margin
        not_after = start + self.period + self.margin
        cert = self_signed(
            key,
            material,
            dt.datetime.fromtimestamp(int(not_before), dt.timezone.utc),
            dt.datetime.fromtimestamp(int(not_after), dt.timezone.utc),
            "libp2p webtransport",
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return Certificate(
            index=index,
            der=cert.public_bytes(serialization.Encoding.DER),
            key_pem=key_pem,
            not_before=float(int(not_before)),
            not_after=float(int(not_after)),
        )


def check_served_certificate(
    cert: x509.Certificate, expected: list[bytes], now: float | None = None
) -> bytes:
    """What a WebTransport client checks of the certificate a server presented (as a
    browser does): its hash is one it dialled, it is valid now, for at most 14 days, and
    its key is not RSA. Returns its multihash; ``ValueError`` saying what failed."""
    der = cert.public_bytes(serialization.Encoding.DER)
    multihash = certhash(der)
    if multihash not in expected:
        raise ValueError(
            f"the server's certificate hash {certhash_multibase(multihash)} is not in "
            f"the address ({', '.join(certhash_multibase(h) for h in expected)})"
        )
    now = time.time() if now is None else now
    start = cert.not_valid_before_utc.timestamp()
    end = cert.not_valid_after_utc.timestamp()
    if not start <= now <= end:
        raise ValueError(
            f"the server's certificate is not valid now (valid {cert.not_valid_before_utc} "
            f"to {cert.not_valid_after_utc})"
        )
    if end - start > MAX_VALIDITY:
        raise ValueError(
            f"the server's certificate is valid for {(end - start) / 86400:.1f} days "
            "(at most 14 allowed for a certificate checked by hash)"
        )
    if not isinstance(cert.public_key(), ec.EllipticCurvePublicKey):
        raise ValueError("the server's certificate key is not ECDSA")
    return multihash
