"""RingBuffer: FIFO across wrap-around, counted drops, timeouts, and a threaded producer."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from aerd.ringbuffer import RingBuffer


def test_fifo_across_wraparound():
    rb = RingBuffer(10)
    nxt, expect = 0, 0
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(0, 8))
        if n <= rb.capacity - len(rb):
            assert rb.write(np.arange(nxt, nxt + n, dtype=np.float32)) == n
            nxt += n
        m = int(rng.integers(1, 8))
        if len(rb):
            out = rb.read(m, timeout=0)
            assert out.dtype == np.float32
            np.testing.assert_array_equal(out, np.arange(expect, expect + len(out)))
            assert len(out) == min(m, nxt - expect)
            expect += len(out)
    assert nxt > 100 and rb.overflows == 0 and rb.dropped_samples == 0


def test_overflow_drops_and_counts_without_blocking():
    rb = RingBuffer(8)
    assert rb.write(np.arange(5, dtype=np.float32)) == 5
    t = time.monotonic()
    assert rb.write(np.arange(5, 10, dtype=np.float32)) == 3      # 2 dropped
    assert rb.write(np.ones(4, np.float32)) == 0                  # full: all dropped
    assert time.monotonic() - t < 0.5
    assert (rb.overflows, rb.dropped_samples, len(rb)) == (2, 6, 8)
    np.testing.assert_array_equal(rb.read(100, timeout=0), np.arange(8))   # oldest kept
    assert rb.write(np.arange(20, dtype=np.float32)) == 8
    assert (rb.overflows, rb.dropped_samples) == (3, 18)
    np.testing.assert_array_equal(rb.read(3), [0, 1, 2])


def test_read_timeout_returns_none():
    rb = RingBuffer(4)
    t = time.monotonic()
    assert rb.read(4, timeout=0.05) is None
    assert 0.04 <= time.monotonic() - t < 1.0
    rb.write(np.ones(2, np.float32))
    rb.read(4, timeout=0)
    assert rb.read(4, timeout=0.01) is None      # drained again: no stale readiness


def test_read_wakes_when_data_arrives():
    rb = RingBuffer(4)
    threading.Timer(0.05, rb.write, args=(np.array([1.0, 2.0], np.float32),)).start()
    out = rb.read(4, timeout=5)
    np.testing.assert_array_equal(out, [1.0, 2.0])


def test_bad_capacity():
    with pytest.raises(ValueError):
        RingBuffer(0)


def test_threaded_producer_consumer_loses_nothing():
    total, cap = 200_000, 5_000
    rb = RingBuffer(cap)
    data = np.arange(total, dtype=np.float32)

    def produce():
        rng = np.random.default_rng(1)
        pos = 0
        while pos < total:
            n = int(rng.integers(1, 700))
            while len(rb) > cap - 700:          # capacity suffices: never outrun the consumer
                time.sleep(0.0002)
            rb.write(data[pos : pos + n])
            pos += n
            if rng.random() < 0.05:
                time.sleep(0.0005)

    th = threading.Thread(target=produce, daemon=True)
    th.start()
    got = []
    deadline = time.monotonic() + 20
    n = 0
    while n < total and time.monotonic() < deadline:
        out = rb.read(997, timeout=0.5)
        if out is not None:
            got.append(out)
            n += len(out)
    th.join(5)
    assert not th.is_alive()
    assert rb.overflows == 0 and rb.dropped_samples == 0
    np.testing.assert_array_equal(np.concatenate(got), data)
