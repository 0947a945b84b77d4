"""A bounded single-producer/single-consumer ring of float32 samples.

The producer (the PortAudio callback) only copies into preallocated memory and counts
what did not fit; it never allocates and never waits for the consumer.
"""

from __future__ import annotations

import threading

import numpy as np


class RingBuffer:
    """Fixed capacity; ``write`` drops what does not fit (counted in ``dropped_samples``)."""

    def __init__(self, capacity: int):
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self._buf = np.zeros(capacity, dtype=np.float32)
        self._cap = capacity
        self._read = 0      # total samples ever read
        self._written = 0   # total samples ever written
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.overflows = 0
        self.dropped_samples = 0

    @property
    def capacity(self) -> int:
        return self._cap

    def __len__(self) -> int:
        return self._written - self._read

    def write(self, block: np.ndarray) -> int:
        """Copy as much of ``block`` (1-D float32) as fits; returns samples written."""
        with self._lock:
            free = self._cap - (self._written - self._read)
            n = min(len(block), free)
            if n < len(block):
                self.overflows += 1
                self.dropped_samples += len(block) - n
            pos = self._written % self._cap
            first = min(n, self._cap - pos)
            self._buf[pos : pos + first] = block[:first]
            if n > first:
                self._buf[: n - first] = block[first:n]
            self._written += n
        if n:
            self._ready.set()
        return n

    def read(self, max_samples: int, timeout: float | None = None) -> np.ndarray | None:
        """Up to ``max_samples`` samples (a new array), or None if none came within ``timeout``."""
        if len(self) == 0:
            self._ready.clear()
            if len(self) == 0 and not self._ready.wait(timeout):
                return None
        with self._lock:
            n = min(max_samples, self._written - self._read)
            pos = self._read % self._cap
            first = min(n, self._cap - pos)
            out = np.empty(n, dtype=np.float32)
            out[:first] = self._buf[pos : pos + first]
            out[first:] = self._buf[: n - first]
            self._read += n
        return out
