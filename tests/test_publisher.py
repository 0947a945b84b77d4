"""The Publisher on real ZeroMQ sockets: what a subscriber that does not read is sent
(sndhwm bounds it), and the subscription count that --wait-subscriber waits on."""

from __future__ import annotations

import time

import zmq

from aerd.config import PublishSettings
from aerd.events import StatusEvent
from aerd.publisher import Publisher


def test_a_subscriber_that_does_not_read_loses_what_its_sndhwm_queue_cannot_hold(tmp_path):
    """--sndhwm bounds the queue per subscriber: one that does not read gets about that many
    of the events sent meanwhile, the rest are dropped for it, and it sees them
    as gaps in seq. The send never fails nor waits (README: ``dropped`` stays 0 on a PUB
    socket, which drops without saying). Events of 60 KB, so that the kernel's socket
    buffers hold only a few: with the default sndhwm of 1000 all 200 arrived."""
    ep = f"ipc://{tmp_path}/pub.sock"
    ctx = zmq.Context()
    pub = Publisher(PublishSettings(endpoint=ep, sndhwm=4, linger_ms=0), ctx=ctx)
    sub = ctx.socket(zmq.SUB)
    sub.rcvhwm = 1
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    try:
        sub.connect(ep)
        assert pub.wait_for_subscriber(5.0)
        n, big = 200, "d" * 60000   # (under the protocol's 64 KiB)
        t = time.monotonic()
        assert all(pub.send(StatusEvent(seq=i, ts=0.0, device_id=big)) for i in range(n))
        assert time.monotonic() - t < 5.0 and (pub.sent, pub.dropped) == (n, 0)
        got = []
        while sub.poll(500):
            got.append(StatusEvent.from_frames(sub.recv_multipart()).seq)
        assert got[:4] == [0, 1, 2, 3] and got == sorted(got)
        assert 4 <= len(got) <= 40, got
    finally:
        sub.close(linger=0)
        pub.close()
        ctx.term()


def test_a_subscriber_that_leaves_is_no_longer_counted(tmp_path):
    """--wait-subscriber (a file read as soon as someone listens): a subscriber that came and
    went before the wait is no one to wait for."""
    ep = f"ipc://{tmp_path}/pub.sock"
    ctx = zmq.Context()
    pub = Publisher(PublishSettings(endpoint=ep), ctx=ctx)
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"emotion")
    try:
        sub.connect(ep)
        assert pub.wait_for_subscriber(5.0) and pub.subscribers == 1
        sub.close(linger=0)
        deadline = time.monotonic() + 5.0
        while pub.poll_subscriptions() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pub.subscribers == 0
        assert not pub.wait_for_subscriber(0.3)
    finally:
        sub.close(linger=0)
        pub.close()
        ctx.term()
