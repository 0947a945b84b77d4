"""A peer that announces a huge ZeroMQ frame is cut off at once by every socket aerd binds
(daemon PUB, relay frontend and backend), before a byte of it is buffered: libzmq otherwise
allocates the announced size and keeps what arrives, even before CURVE authentication."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import pytest
import zmq

from aerd.config import PublishSettings
from aerd.publisher import Publisher
from aerd.relay import Relay, RelayConfig
from aerd.security import CurveServer, keygen


def _cut_off(endpoint: str, mechanism: bytes) -> bool:
    """Speak a ZMTP 3.0 greeting to ``endpoint`` (tcp://127.0.0.1:PORT), then announce a
    200 MB command frame and send 64 KiB of it: True if the server hangs up within 2 s."""
    port = int(endpoint.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=2.0) as s:
        s.sendall(b"\xff" + b"\0" * 8 + b"\x7f" + bytes([3, 0]) + mechanism.ljust(20, b"\0")
                  + b"\0" * 32)
        got = b""
        while len(got) < 64:
            more = s.recv(64 - len(got))
            assert more, "the server closed during the greeting"
            got += more
        s.sendall(bytes([0x06]) + struct.pack(">Q", 200_000_000))
        deadline = time.monotonic() + 2.0
        try:
            s.sendall(b"\0" * 65536)
            while time.monotonic() < deadline:
                if not s.recv(4096):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
    return False


@pytest.fixture()
def server(tmp_path: Path) -> CurveServer:
    public, secret = keygen(tmp_path / "keys", "server")
    clients = tmp_path / "clients"
    clients.mkdir()
    (clients / "a.key").write_bytes(keygen(tmp_path / "a", "a")[0].read_bytes())
    return CurveServer(secret, clients)


@pytest.mark.parametrize("curve", [False, True], ids=["plain-loopback", "curve-clients"])
def test_the_daemon_cuts_off_a_peer_announcing_a_huge_frame(server, curve):
    kw = dict(curve_secret=str(server.secret_key_file),
              curve_clients=str(server.authorized_dir)) if curve else {}
    pub = Publisher(PublishSettings(endpoint="tcp://127.0.0.1:*", linger_ms=0, **kw))
    try:
        assert _cut_off(pub.sock.last_endpoint.decode(), b"CURVE" if curve else b"NULL")
    finally:
        pub.close()


def test_the_relay_cuts_off_a_peer_announcing_a_huge_frame(server):
    relay = Relay(RelayConfig("tcp://127.0.0.1:*", "tcp://localhost:*", server, None))
    relay.start()
    try:
        assert _cut_off(relay._front.last_endpoint.decode(), b"CURVE"), "frontend"
        assert _cut_off(relay._back.last_endpoint.decode(), b"NULL"), "backend"
    finally:
        relay.close()


def test_a_connecting_daemon_sets_no_limit(tmp_path):
    """On a connecting socket libzmq would drop the link for good after one oversized
    message: the relay it connects to is the one that limits."""
    pub = Publisher(PublishSettings(endpoint=f"ipc://{tmp_path}/relay.sock", connect=True,
                                    linger_ms=0))
    try:
        assert pub.sock.getsockopt(zmq.MAXMSGSIZE) == -1
    finally:
        pub.close()


def test_a_subscription_flood_cannot_hold_the_daemon_loop(tmp_path):
    """A subscriber sending subscriptions as fast as it can: each call of
    poll_subscriptions (once per pass of the daemon's loop) reads at most MAX_DRAIN of them,
    so the loop goes back to the audio; before, one call read until the socket was empty,
    which a fast enough peer never lets happen."""
    ep = f"ipc://{tmp_path}/flood.sock"
    ctx = zmq.Context()
    pub = Publisher(PublishSettings(endpoint=ep), ctx=ctx)
    sub = ctx.socket(zmq.XSUB)
    sub.sndhwm = 0   # (nothing dropped on the way: the publisher's side holds them back)
    try:
        sub.connect(ep)
        n = 3 * Publisher.MAX_DRAIN
        for i in range(n):   # distinct topics: XPUB passes each one up
            sub.send(b"\x01topic-%d" % i)
        deadline = time.monotonic() + 10
        while not pub.sock.poll(100, zmq.POLLIN) and time.monotonic() < deadline:
            pass
        time.sleep(0.5)   # all of them queued
        counts = [0]
        while counts[-1] < n and len(counts) < 50:
            counts.append(pub.poll_subscriptions())
            time.sleep(0.1)   # the I/O thread moves the next ones up
        steps = [b - a for a, b in zip(counts, counts[1:])]
        assert steps[0] == Publisher.MAX_DRAIN and counts[-1] == n, steps
        assert max(steps) <= Publisher.MAX_DRAIN, steps
    finally:
        sub.close(linger=0)
        pub.close()
        ctx.term()
