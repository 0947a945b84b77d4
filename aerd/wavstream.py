"""WAV framing of a byte stream (stdin): which bytes are 16-bit PCM samples.

`arecord` writes a WAV header unless given ``-t raw`` (so does ``sox ... -t wav -``), and
every byte of it used to be read as samples: harmless when the stream is 16-bit PCM at
``--rate`` and ``--channels``, but another rate, channel count or sample format was read as
noise at the wrong speed without a word (a 4 s clip of 44.1 kHz stereo: 22.6 s of audio and
34 emotion events). A header that matches the settings is skipped; any other ends the input
with one line saying what the stream is and what to give. A header's ``data`` size bounds
its samples: chunks after them (a LIST of tags) are skipped, and a next WAV stream after
them (``cat a.wav b.wav``) is read like the first.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass

from .errors import AudioError

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


class Trailer:
    """The bytes after a WAV stream's samples: chunks, skipped by their sizes, until a next
    stream's ``RIFF`` (``cat a.wav b.wav``)."""

    def __init__(self) -> None:
        self._held = b""
        self._skip = 0   # bytes of the current chunk still to come
        self.skipped = 0

    def feed(self, data: bytes) -> bytes | None:
        """The bytes from a next stream's ``RIFF`` on, or None if ``data`` held none."""
        buf, pos = self._held + data, 0
        while True:
            n = min(self._skip, len(buf) - pos)
            pos, self._skip, self.skipped = pos + n, self._skip - n, self.skipped + n
            if self._skip or len(buf) - pos < 8:
                self._held = buf[pos:]
                return None
            if buf[pos : pos + 4] == b"RIFF":
                self._held = b""
                return buf[pos:]
            size = int.from_bytes(buf[pos + 4 : pos + 8], "little")
            self._skip = 8 + size + (size & 1)

    def close(self) -> int:
        """The bytes it skipped, with those it held (the input ended inside a chunk header)."""
        return self.skipped + len(self._held)


class WavSplitter:
    """Fed a byte stream's reads, hands back the bytes that are samples: raw PCM as it is;
    of a WAV stream (checked by :class:`HeaderCheck`) the ``data`` chunk's samples, and those
    of the WAV streams after it."""

    def __init__(self, rate: int, channels: int):
        self.rate, self.channels = rate, channels
        self._header: HeaderCheck | None = HeaderCheck(rate, channels)
        self._trailer: Trailer | None = None
        self._left: int | None = None   # sample bytes the current data chunk has left
        self._error: AudioError | None = None   # met after samples it handed back first

    def feed(self, data: bytes) -> bytes:
        """The samples among ``data`` (b"" while a header is still coming). AudioError for a
        header of another format (see :meth:`HeaderCheck.feed`)."""
        if self._error is not None:
            raise self._error
        out: list[bytes] = []
        while data:
            if self._header is not None:
                try:
                    pcm = self._header.feed(data)
                except AudioError as e:   # (a next stream's: the samples before it first)
                    if not out:
                        raise
                    self._error = e
                    break
                if pcm is None:
                    break
                self._left, self._header, data = self._header.data_bytes, None, pcm
            elif self._trailer is not None:
                nxt = self._trailer.feed(data)
                if nxt is None:
                    break
                self._end_trailer()
                self._header, data = HeaderCheck(self.rate, self.channels), nxt
            elif self._left is None:
                out.append(data)
                break
            else:
                out.append(data[: self._left])
                self._left -= len(out[-1])
                data = data[len(out[-1]) :]
                if not self._left:
                    self._trailer = Trailer()
        return b"".join(out)

    def end(self) -> bytes:
        """The input ended: bytes held back that are samples (a raw stream's first bytes that
        might have begun a header). AudioError for an input that ends inside a header."""
        if self._error is not None:
            raise self._error
        header, self._header = self._header, None
        if self._trailer is not None:
            self._end_trailer()
        return header.feed(b"") if header is not None else b""

    def _end_trailer(self) -> None:
        n, self._trailer = self._trailer.close(), None
        if n:
            log.info("stdin: skipped %d bytes of WAV chunks after the samples (not audio)", n)
