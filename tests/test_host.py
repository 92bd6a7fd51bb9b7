"""The hardened host: py-libp2p's insecure defaults are closed (each trap is a test)."""

from __future__ import annotations

import logging
import time

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.security.secio import transport as secio

import ucsdk
from ucsdk import ConnectivityConfig
from ucsdk.host import build_host
from ucsdk.identity import new_key_pair


def _dial_with_raw_host(target: str, security: str) -> bool:
    """Dial ``target`` from a plain py-libp2p host offering only ``security``."""
    key_pair = create_new_key_pair()
    if security == "plaintext":
        options = {PLAINTEXT_PROTOCOL_ID: InsecureTransport(key_pair)}
    elif security == "secio":
        options = {secio.ID: secio.Transport(key_pair)}
    else:
        options = {
            NOISE_PROTOCOL_ID: NoiseTransport(
                key_pair, noise_privkey=new_x25519_key_pair().private_key
            )
        }
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    host = new_host(key_pair=key_pair, sec_opt=options, listen_addrs=listen)  # type: ignore[arg-type]

    async def main() -> bool:
        try:
            async with host.run(listen):
                with trio.move_on_after(5):
                    try:
                        await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(target)))
                        return True
                    except Exception:
                        return False
                return False
        finally:
            await host.close()

    return trio.run(main)


@pytest.mark.parametrize("security", ["plaintext", "secio"])
def test_insecure_dialers_are_refused(security: str) -> None:
    with ucsdk.Node.development() as node:
        assert _dial_with_raw_host(node.addrs[0], security) is False
        assert node.metrics().total_connections_established == 0


def test_noise_dialer_is_accepted() -> None:
    # The positive control: the same raw host with Noise gets in.
    with ucsdk.Node.development() as node:
        assert _dial_with_raw_host(node.addrs[0], "noise") is True
        deadline = time.monotonic() + 5
        while node.metrics().total_connections_established == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert node.metrics().total_connections_established == 1


def test_only_noise_and_yamux_first_are_offered() -> None:
    host = build_host(ConnectivityConfig.preset("development"), new_key_pair())
    upgrader = host.get_network().upgrader  # type: ignore[attr-defined]
    assert [str(p) for p in upgrader.security_multistream.transports] == ["/noise"]
    assert next(str(p) for p in upgrader.muxer_multistream.transports) == "/yamux/1.0.0"


def test_first_connect_has_no_happy_eyeballs_delay() -> None:
    # py-libp2p's default waits 250 ms on every first connect; ours must not.
    host = build_host(ConnectivityConfig.preset("development"), new_key_pair())
    assert host.get_network().connection_config.max_connections_per_peer == 1  # type: ignore[attr-defined]
    durations = []
    with ucsdk.Node.development() as a:
        for _ in range(3):
            with ucsdk.Node.development() as b:
                started = time.perf_counter()
                a.connect(b.addrs[0])
                durations.append(time.perf_counter() - started)
    assert sorted(durations)[1] < 0.25


def test_libp2p_logging_propagates(caplog: pytest.LogCaptureFixture) -> None:
    with ucsdk.Node.development():
        pass
    assert logging.getLogger("libp2p").propagate is True
    caplog.set_level(logging.DEBUG)
    logging.getLogger("libp2p.example").warning("reaches the root logger")
    assert "reaches the root logger" in caplog.text


def test_seed_logger_name_is_used(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="UniversalConnectivity")
    with ucsdk.Node.development() as a, ucsdk.Node.development() as b:
        a.connect(b.addrs[0])
    assert any(r.name == "UniversalConnectivity" for r in caplog.records)
