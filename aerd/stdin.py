"""The stdin source: raw s16le PCM, and a WAV header at its start.

`arecord` writes a WAV header unless given ``-t raw`` (so does ``sox ... -t wav -``), and
every byte of it used to be read as samples: harmless when the stream is 16-bit PCM at
``--rate`` and ``--channels``, but another rate, channel count or sample format was read as
noise at the wrong speed without a word (a 4 s clip of 44.1 kHz stereo: 22.6 s of audio and
34 emotion events). A header that matches the settings is skipped; any other ends the input
with one line saying what the stream is and what to give.
"""

from __future__ import annotations

import logging
import os
import select
import struct
import time
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from .errors import AudioError
from .sources import Resampler, _short, to_mono, warn_narrowband

log = logging.getLogger(__name__)

MAX_HEADER = 65536
"""Most bytes read before the samples of a WAV stream (its chunks before ``data``)."""

STREAMING_SIZE = 0x7FFF0000
"""A ``data`` chunk size from here up (arecord writes 0x7ffff000, ffmpeg 0xffffffff), or 0,
is a writer's placeholder for a stream of unknown length: the samples go on to the end."""


@dataclass(frozen=True)
class WavFormat:
    tag: int   # 1 PCM, 3 IEEE float (WAVE_FORMAT_EXTENSIBLE: its sub-format)
    channels: int
    rate: int
    bits: int

    def __str__(self) -> str:
        kind = {1: "PCM", 3: "float"}.get(self.tag, f"format {self.tag:#x}")
        return f"{self.rate} Hz, {self.channels} channel(s), {self.bits}-bit {kind}"


def parse(data: bytes) -> tuple[int, WavFormat | None, int | None] | None:
    """None if ``data`` does not start with a WAV header (raw PCM); ``(0, None, None)`` if more
    bytes are needed to tell; ``(n, format, size)`` if its samples start at byte ``n``, with
    ``size`` bytes of them (None: to the end of the stream, :data:`STREAMING_SIZE`).
    AudioError for a WAV header without a usable format chunk."""
    if len(data) < 12:
        return (0, None, None) if data[:4] == b"RIFF"[: len(data[:4])] else None
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if cid == b"data":
            if fmt is None:
                raise AudioError("stdin: a WAV stream without a format chunk before its samples")
            return pos + 8, fmt, (size if 0 < size < STREAMING_SIZE else None)
        end = pos + 8 + size + (size & 1)
        if end > MAX_HEADER:
            pos = end
            break
        if end > len(data):
            return 0, None, None
        if cid == b"fmt ":
            if size < 16:
                raise AudioError(f"stdin: a WAV stream with a {size}-byte format chunk")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, pos + 8)
            if tag == 0xFFFE and size >= 26:   # WAVE_FORMAT_EXTENSIBLE: the sub-format's tag
                tag = struct.unpack_from("<H", data, pos + 8 + 24)[0]
            fmt = WavFormat(tag, channels, rate, bits)
        pos = end
    if pos + 8 > MAX_HEADER:
        raise AudioError(f"stdin: a WAV stream whose samples do not start within {MAX_HEADER} bytes")
    return 0, None, None


class HeaderCheck:
    """Fed the first bytes of stdin: holds them until it knows whether they start with a WAV
    header, then hands back what is PCM (all of it, or what follows a header that matches)."""

    def __init__(self, rate: int, channels: int):
        self.rate, self.channels = rate, channels
        self._held = b""
        self.data_bytes: int | None = None
        """After a header: its ``data`` chunk's size (None: the samples go on to the end)."""

    def feed(self, data: bytes) -> bytes | None:
        """The PCM bytes (none yet after a header that came alone), or None while more are
        needed; ``data`` ``b""``: the input ended, what is held is PCM. AudioError for a header
        of another format, naming it and the fix, or for an input that ends inside one."""
        if not data:
            if len(self._held) >= 12 and parse(self._held) is not None:   # RIFF....WAVE
                raise AudioError(f"stdin: the input ended inside its WAV header "
                                 f"({len(self._held)} bytes)")
            return self._held
        held = self._held = self._held + data
        found = parse(held)
        if found is None:
            return held
        n, fmt, self.data_bytes = found
        if fmt is None:
            return None
        if (fmt.tag, fmt.bits) != (1, 16):
            raise AudioError(f"stdin: the input is a WAV stream of {fmt}; --input - reads "
                             "16-bit PCM (arecord -f S16_LE, sox ... -b 16 -e signed)")
        if (fmt.rate, fmt.channels) != (self.rate, self.channels):
            raise AudioError(f"stdin: the input is a WAV stream of {fmt}, not {self.rate} Hz, "
                             f"{self.channels} channel(s): give --rate {fmt.rate} --channels "
                             f"{fmt.channels} (or [input] rate, channels)")
        log.info("stdin: skipped a WAV header (%s)", fmt)
        return held[n:]


class StdinSource:
    """Raw signed 16-bit little-endian PCM, interleaved ``channels``, at ``in_rate`` (after a
    WAV header saying so, if there is one: :class:`HeaderCheck`).

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
        self._header: HeaderCheck | None = HeaderCheck(in_rate, channels)
        self._left: int | None = None   # bytes of samples a WAV header's data chunk has left
        self._ignored = 0
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
        self._healthy_s = healthy_s
        self._stalls = 0   # stalls since data last flowed for healthy_s without one
        self._last_data = self._resumed_at = time.monotonic()

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
        if self._header is not None:   # a WAV header first?
            try:
                pcm = self._header.feed(data)
            except AudioError as e:   # another format: the input ends, as at a read error
                pcm, data, self.error = b"", b"", str(e).removeprefix("stdin: ")
            if pcm is not None:
                self._left = self._header.data_bytes
            if pcm is None or (data and not pcm):   # (still coming; or came alone, the
                if pcm is not None:                 # samples follow: not the end)
                    self._header = None
                self._last_data = time.monotonic()
                return np.zeros(0, np.float32)
            data, self._header = pcm, None
        if self._left is not None and len(data) > self._left:   # chunks after the samples
            self._after_data(len(data) - self._left)
            data = data[: self._left]
            if not data:   # (not the end: the input is read on to its end, unused)
                self._last_data = time.monotonic()
                return np.zeros(0, np.float32)
        if self._left is not None:
            self._left -= len(data)
        if not data:
            self.ended = True
            self.state, self.detail = "ended", self.error or "end of input"
            if self._carry:
                self.bad_frames += 1
                log.warning("stdin: %d trailing bytes are not a whole s16le frame; dropped", len(self._carry))
            return self._resample(np.zeros(0, np.float32), last=True)
        now = time.monotonic()
        if self.state == "stalled":
            log.log(logging.INFO if self._stalls <= self.LOUD_STALLS else logging.DEBUG,
                    "stdin: data again after %.1f s", now - self._last_data)
            self.state, self.detail = "ok", "stdin"
            self._resumed_at = now
        elif self._stalls and now - self._resumed_at >= self._healthy_s:
            if self._stalls > self.LOUD_STALLS:   # the quiet lines said nothing of it
                log.info("stdin: steady again after %d stalls", self._stalls)
            self._stalls = 0
        self._last_data = now
        data = self._carry + data
        whole = len(data) - len(data) % self._frame_bytes
        self._carry = data[whole:]
        pcm = np.frombuffer(data[:whole], dtype="<i2").astype(np.float32) / 32768.0
        return self._resample(to_mono(pcm.reshape(-1, self.channels)))

    def _after_data(self, n: int) -> None:
        """``n`` bytes after the WAV data chunk's samples (a LIST chunk of tags, say): read
        as samples they were a burst of noise at the end."""
        if not self._ignored:
            log.info("stdin: bytes after the WAV data chunk's samples (other chunks) are not "
                     "audio; ignored")
        self._ignored += n

    def _check_stall(self) -> None:
        if self.state == "ok" and time.monotonic() - self._last_data >= self._stall_s:
            self.state, self.detail = "stalled", f"no data on stdin for {self._stall_s:g} s"
            self._stalls += 1
            log.log(logging.WARNING if self._stalls <= self.LOUD_STALLS else logging.DEBUG,
                    "stdin: %s (the producer is stuck or silent; stdin is still open)",
                    self.detail)
            if self._stalls == self.LOUD_STALLS + 1:
                log.warning("stdin: the producer keeps stalling; further stalls are debug "
                            "lines until it delivers steadily (status events go on)")

    def close(self) -> None:
        pass
