"""The stdin source: raw s16le PCM, or 16-bit PCM WAV streams (:mod:`aerd.wavstream`)."""

from __future__ import annotations

import logging
import os
import select
import time
from typing import BinaryIO

import numpy as np

from .errors import AudioError
from .sources import Resampler, _short, to_mono, warn_narrowband
from .trouble import Spell
from .wavstream import WavSplitter

log = logging.getLogger(__name__)

class StdinSource:
    """Raw signed 16-bit little-endian PCM, interleaved ``channels``, at ``in_rate`` (after a
    WAV header saying so, if there is one: :class:`aerd.wavstream.WavSplitter`).

    A producer that delivers nothing for ``stall_s`` seconds (stdin still open) puts the
    source in state ``stalled`` until data comes again. A producer that keeps stalling (one
    that sends in bursts) is logged for the first LOUD_STALLS stalls, then at debug level
    until it has delivered for ``healthy_s`` without one: not two lines per burst for ever."""

    LOUD_STALLS = 3
    """Stalls in a row logged as a warning (and their end as info); later ones are debug lines."""

    def __init__(self, stream: BinaryIO, in_rate: int, rate: int, channels: int = 1,
                 block_s: float = 0.05, stall_s: float = 5.0, healthy_s: float = 30.0):
        self.name = "stdin"
        self._stream = stream
        self.channels = channels
        self._frame_bytes = 2 * channels
        self._block_bytes = max(1, int(round(block_s * in_rate))) * self._frame_bytes
        self._resample = Resampler(in_rate, rate)
        warn_narrowband("stdin", in_rate, rate)
        self._carry = b""
        self._wav = WavSplitter(in_rate, channels)
        try:
            self._fd: int | None = stream.fileno()
        except (OSError, AttributeError, ValueError):
            self._fd = None
        self.ended = False
        self.state, self.detail = "ok", "stdin"
        self.overflows = 0
        self.bad_frames = 0
        self.error: str | None = None   # why the input ended early (a read error), if it did
        self._stall_s = stall_s
        self._spell = Spell(log, "stdin: the producer keeps stalling; further stalls are debug "
                            "lines until it delivers steadily (status events go on)",
                            "stdin: steady again after %d stalls", self.LOUD_STALLS, healthy_s)
        self._last_data = time.monotonic()

    def read(self, timeout: float = 1.0) -> np.ndarray | None:
        if self.ended:
            return None
        if self._fd is not None:
            ready, _, _ = select.select([self._fd], [], [], timeout)
            if not ready:
                self._check_stall()
                return None
        try:
            data = (os.read(self._fd, self._block_bytes) if self._fd is not None
                    else self._stream.read(self._block_bytes))
        except OSError as e:   # (a reset connection, EIO): the input ends here, as a damaged file
            self.ended = True
            self.error = f"read error ({_short(e)})"
            self.state, self.detail = "ended", self.error
            return self._resample(np.zeros(0, np.float32), last=True)
        eof = not data
        if not eof:
            self._arrived()   # (header and trailer bytes too: the producer is not stuck)
        try:
            data = self._wav.end() if eof else self._wav.feed(data)
        except AudioError as e:   # another format: the input ends, as at a read error
            data, eof, self.error = b"", True, str(e).removeprefix("stdin: ")
        if not data and not eof:   # a header, or the chunks after the samples
            return np.zeros(0, np.float32)
        if not data:
            self.ended = True
            self.state, self.detail = "ended", self.error or "end of input"
            if self._carry:
                self.bad_frames += 1
                log.warning("stdin: %d trailing bytes are not a whole s16le frame; dropped", len(self._carry))
            return self._resample(np.zeros(0, np.float32), last=True)
        data = self._carry + data
        whole = len(data) - len(data) % self._frame_bytes
        self._carry = data[whole:]
        pcm = np.frombuffer(data[:whole], dtype="<i2").astype(np.float32) / 32768.0
        return self._resample(to_mono(pcm.reshape(-1, self.channels)))

    def _arrived(self) -> None:
        """Bytes came: a stall ends (logged as :meth:`_check_stall` says)."""
        now = time.monotonic()
        if self.state == "stalled":
            self.state, self.detail = "ok", "stdin"
            self._spell.recovered("stdin: data again after %.1f s", now - self._last_data)
        else:
            self._spell.working()
        self._last_data = now

    def _check_stall(self) -> None:
        if self.state == "ok" and time.monotonic() - self._last_data >= self._stall_s:
            self.state, self.detail = "stalled", f"no data on stdin for {self._stall_s:g} s"
            self._spell.trouble("stdin: %s (the producer is stuck or silent; stdin is still "
                                "open)", self.detail)

    def close(self) -> None:
        pass
