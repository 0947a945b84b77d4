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


@pytest.mark.parametrize("channels", [2, 4])
def test_microphone_callback_downmixes_without_allocating(channels):
    """The PortAudio callback (called here directly: no stereo-only device, nor a microphone
    array that opens only with all its channels, exists on this machine) writes the mean of
    the channels and allocates nothing per block."""
    import tracemalloc
    from types import SimpleNamespace

    from aerd.capture import Capture

    cap = Capture("multi", 16000, channels, 1.0, 800)   # its ring and downmix block, as opened
    ok = SimpleNamespace(input_overflow=False)
    block = np.random.default_rng(channels).standard_normal((800, channels)).astype(np.float32)
    cap.callback(block, 800, None, ok)
    np.testing.assert_allclose(cap.ring.read(800, timeout=0), block.mean(axis=1), rtol=1e-5,
                               atol=1e-6)
    tracemalloc.start()
    for _ in range(15):   # the ring holds 20 blocks: no reads needed (reads allocate)
        cap.callback(block, 800, None, ok)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1000, f"{peak} bytes allocated by 15 callbacks of 800 {channels}-channel frames"
    assert len(cap.ring) == 15 * 800


def test_capture_overflows_count_portaudio_s_and_the_ring_s():
    """The status events' ``overflows`` for a microphone: blocks PortAudio flagged as having
    lost input (its buffer overran before the callback ran) and blocks the ring had no room
    for, both. The callback is called directly with PortAudio's flags (sounddevice's
    CallbackFlags), as in the test above."""
    import sounddevice as sd

    from aerd.capture import Capture

    cap = Capture("mono", 16000, 1, 0.1, 800)   # a ring of 1600 samples: two blocks
    ok, lost = sd.CallbackFlags(), sd.CallbackFlags()
    lost.input_overflow = True
    block = np.ones((800, 1), np.float32)
    cap.callback(block, 800, None, ok)
    cap.callback(block, 800, None, lost)
    assert (cap.portaudio_overflows, cap.ring.overflows, cap.overflows) == (1, 0, 1)
    cap.callback(block, 800, None, ok)   # the ring is full: dropped
    assert (cap.portaudio_overflows, cap.ring.overflows, cap.overflows) == (1, 1, 2)


def test_read_all_says_how_much_was_dropped_after_what_it_returns():
    rb = RingBuffer(8)
    rb.write(np.arange(6, dtype=np.float32))
    rb.write(np.arange(6, 10, dtype=np.float32))   # 2 fit, 2 dropped
    rb.write(np.ones(3, np.float32))               # all 3 dropped
    out, dropped = rb.read_all(timeout=0)
    np.testing.assert_array_equal(out, np.arange(8))
    assert dropped == 5 and rb.overflows == 2
    rb.write(np.arange(3, dtype=np.float32))
    out, dropped = rb.read_all(timeout=0)
    assert len(out) == 3 and dropped == 0          # counted once, where it happened
    assert rb.read_all(timeout=0.01) is None


def test_a_microphone_opens_mono_if_it_can_else_stereo_else_with_all_its_channels():
    """stream_settings asks the device (here a rule standing in for hardware this machine
    has none of) in that order: mono at the model's rate, mono at its own, 2 channels, all."""
    from aerd.capture import stream_settings

    def device(rates: set[int], channels: set[int]):
        return lambda r, ch: r in rates and ch in channels

    assert stream_settings(device({16000, 48000}, {1, 2}), 16000, 48000, 2) == (16000, 1)
    assert stream_settings(device({48000}, {1, 2}), 16000, 48000, 2) == (48000, 1)
    assert stream_settings(device({48000}, {2}), 16000, 48000, 2) == (48000, 2)
    assert stream_settings(device({16000, 48000}, {4}), 16000, 48000, 4) == (16000, 4)
    assert stream_settings(device({48000}, {8}), 16000, 48000, 8) == (48000, 8)
    assert stream_settings(device(set(), set()), 16000, 44100, 6) == (44100, 6)   # PortAudio says why
    # mono at the device's own rate before stereo at the model's (resampling, not downmixing)
    assert stream_settings(lambda r, ch: (r, ch) in {(16000, 2), (48000, 1)}, 16000, 48000,
                           2) == (48000, 1)
    asked = []
    stream_settings(lambda r, ch: asked.append((r, ch)) or False, 16000, 16000, 1)
    assert asked == [(16000, 1)]   # nothing asked twice
