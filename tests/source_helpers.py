"""Helpers of the source tests (tests/test_sources.py, tests/test_stdin_source.py)."""

from __future__ import annotations

import time

import numpy as np

RATE = 16000


def tone(rate, seconds, freq=1000.0, channels=1, amp=0.5):
    t = np.arange(int(round(rate * seconds))) / rate
    x = amp * np.sin(2 * np.pi * freq * t)
    if channels == 1:
        return x.astype(np.float32)
    return np.stack([x] * channels, axis=1).astype(np.float32)


def read_all(src, timeout=1.0):
    out, t_end = [], time.monotonic() + 10
    while not src.ended and time.monotonic() < t_end:
        block = src.read(timeout)
        if block is not None:
            assert block.dtype == np.float32 and block.ndim == 1
            out.append(block)
    assert src.ended
    assert src.read(0.01) is None          # nothing after the end
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def peak_hz(x, rate):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * rate / len(x)
