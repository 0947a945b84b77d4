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
        self._dropped_unread = 0   # dropped since the last read_all: all right after its data

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
                self._dropped_unread += len(block) - n
            pos = self._written % self._cap
            first = min(n, self._cap - pos)
            self._buf[pos : pos + first] = block[:first]
            if n > first:
                self._buf[: n - first] = block[first:n]
            self._written += n
        if n:
            self._ready.set()
        return n

    def _wait(self, timeout: float | None) -> bool:
        if len(self) == 0:
            self._ready.clear()
            if len(self) == 0 and not self._ready.wait(timeout):
                return False
        return True

    def _take(self, max_samples: int) -> np.ndarray:   # (under the lock)
        n = min(max_samples, self._written - self._read)
        pos = self._read % self._cap
        first = min(n, self._cap - pos)
        out = np.empty(n, dtype=np.float32)
        out[:first] = self._buf[pos : pos + first]
        out[first:] = self._buf[: n - first]
        self._read += n
        return out

    def read(self, max_samples: int, timeout: float | None = None) -> np.ndarray | None:
        """Up to ``max_samples`` samples (a new array), or None if none came within ``timeout``."""
        if not self._wait(timeout):
            return None
        with self._lock:
            return self._take(max_samples)

    def read_all(self, timeout: float | None = None) -> tuple[np.ndarray, int] | None:
        """Everything held and the number of samples dropped right after it, or None if no
        sample came within ``timeout``. Samples are only dropped while the ring is full, that
        is, after all it holds: for a consumer that reads only this way, that is where its
        audio has a gap."""
        if not self._wait(timeout):
            return None
        with self._lock:
            out = self._take(self._cap)
            dropped, self._dropped_unread = self._dropped_unread, 0
        return out, dropped
