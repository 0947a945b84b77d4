"""Audio sources; each hands out float32 mono blocks at the model rate. Files here.

A source is read with ``read(timeout)``: an array of samples, ``None`` if no audio came
within ``timeout`` (the daemon uses that tick for status and watchdog), and ``ended``
turns True after the last block. The microphone lives in :mod:`aerd.mic` so that
sounddevice (and PortAudio) are imported only when a microphone is used; stdin (raw PCM,
and a WAV header at its start) in :mod:`aerd.stdin`.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path

import numpy as np

from .config import AUDIO_RATES
from .errors import AudioError, lookup

log = logging.getLogger(__name__)


class Resampler:
    """Streaming resampler (soxr, high quality); a pass-through when the rates agree."""

    def __init__(self, in_rate: int, out_rate: int):
        self.in_rate, self.out_rate = int(in_rate), int(out_rate)
        self._stream = None
        if self.in_rate != self.out_rate:
            import soxr

            self._stream = soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="float32",
                                               quality="HQ")

    def __call__(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self._stream is None:
            return x
        # a band-limited resampler overshoots full-scale square edges: keep samples in [-1, 1]
        return np.clip(self._stream.resample_chunk(x, last=last), -1.0, 1.0)


def warn_narrowband(name: str, in_rate: int, rate: int) -> None:
    """One warning if audio sampled below the model's rate (8 kHz telephone audio, a Bluetooth
    headset) lacks the upper band the models were trained with: they label such speech
    confidently and wrongly (the three test clips at 8 kHz: happy, sad, happy)."""
    if in_rate < rate:
        log.warning("%s: %d Hz audio holds nothing above %g Hz, the model was trained on %d Hz "
                    "audio (up to %g Hz): expect wrong labels", name, in_rate, in_rate / 2,
                    rate, rate / 2)


def to_mono(block: np.ndarray) -> np.ndarray:
    """Average the channels of a (frames, channels) block; 1-D input is returned as is."""
    if block.ndim == 1:
        return block.astype(np.float32, copy=False)
    if block.shape[1] > 1:
        return block.mean(axis=1, dtype=np.float32)
    return block[:, 0].astype(np.float32, copy=False)


SALVAGE_S = 0.05
"""Block length (s) in which a file is re-read after a read error, up to the damage."""
FAST_BLOCK_S = 8.0
"""Block a file is read in with ``fast`` (seconds of audio), up to FAST_BLOCK_SAMPLES."""
FAST_BLOCK_SAMPLES = 131072
"""Most interleaved samples in one ``fast`` block (8.2 s of 16 kHz mono)."""
MPEG_FRAME = 1152
"""Samples per MPEG-1 Layer III frame (two MPEG-2 frames): MP3 files are read in whole ones."""


class FileSource:
    """An audio file (1..384 kHz, any channels: averaged), replayed at real-time pace unless ``fast``."""

    def __init__(self, path: str | Path, rate: int, fast: bool = False, block_s: float = 0.05):
        import soundfile as sf

        self.path = Path(path)
        self.name = str(path)
        if self.name == "":   # (Path("") is the current directory)
            raise AudioError("'': an empty file name")
        st = lookup(self.path, AudioError)
        if st is None:
            raise AudioError(f"{path}: no such file")
        if stat.S_ISDIR(st.st_mode):
            raise AudioError(f"{path}: is a directory, not an audio file")
        try:
            self._f = sf.SoundFile(os.fsencode(self.path))   # (str: a name not in UTF-8 raised)
        except FileNotFoundError:
            raise AudioError(f"{path}: no such file") from None
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            raise AudioError(f"{path}: not a readable audio file ({_short(e)})") from None
        if self._f.frames == 0:
            self._f.close()
            raise AudioError(f"{path}: audio file is empty")
        self.file_rate = self._f.samplerate
        if not AUDIO_RATES[0] <= self.file_rate <= AUDIO_RATES[1]:
            self._f.close()
            raise AudioError(f"{path}: its header says {self.file_rate} Hz; audio files are read "
                             f"at {AUDIO_RATES[0]}..{AUDIO_RATES[1]} Hz")
        self._float_file = not str(self._f.subtype).startswith(("PCM", "ULAW", "ALAW"))
        self.channels = self._f.channels
        self._resample = Resampler(self.file_rate, rate)
        warn_narrowband(self.name, self.file_rate, rate)
        # fast mode has no pace to keep: large blocks cut per-block overhead, and each stage
        # then runs over 16 windows in a row with its code and data warm (8 s blocks cost
        # about 15 % less CPU than 1 s blocks here; results do not depend on the block size)
        # (the block is capped at FAST_BLOCK_SAMPLES interleaved samples: a 48 kHz stereo file
        # in 8 s blocks would cost ~8 MB more peak RSS)
        frames = block_s * self.file_rate
        if fast:
            frames = max(frames, min(FAST_BLOCK_S * self.file_rate, FAST_BLOCK_SAMPLES / self.channels))
        self._block = self._whole(int(round(frames)))
        # 16-bit PCM (most recordings): read the integers and scale them here, which is half
        # the cost of libsndfile's float conversion and gives the same values (x / 32768)
        self._raw = (np.zeros(self._block * self.channels, np.int16)
                     if str(self._f.subtype) == "PCM_16" else None)
        self.fast = fast
        self.ended = False
        self.state, self.detail = "ok", f"file {self.path.name}"
        self.overflows = 0
        self.bad_frames = 0
        self.error: str | None = None   # why the file ended early (a read error), if it did
        self._t0: float | None = None
        self._pos = 0
        self._said: set[str] = set()   # float sample trouble already logged ("nan", "over")

    def _whole(self, frames: int) -> int:
        """``frames`` as a read size for this file. libsndfile (1.2.2) decodes MP3 differently
        when a read ends inside an MPEG frame (glitches of up to 0.66 of full scale with 0.05 s
        reads of 44.1 kHz speech; reads of whole frames agree to within 0.005), so MP3 is read
        in whole frames."""
        if self._f.format == "MP3":
            return MPEG_FRAME * max(1, frames // MPEG_FRAME)
        return max(1, frames)

    @property
    def duration(self) -> float:
        return self._f.frames / self.file_rate

    def read(self, timeout: float = 1.0) -> np.ndarray | None:
        if self.ended:
            return None
        if not self.fast:
            if self._t0 is None:
                self._t0 = time.monotonic()
            wait = self._t0 + (self._pos + self._block) / self.file_rate - time.monotonic()
            if wait > timeout:
                time.sleep(timeout)
                return None
            if wait > 0:
                time.sleep(wait)
        try:
            if self._raw is not None:   # interleaved frames straight into a preallocated buffer
                got = self._f.buffer_read_into(self._raw[: self._block * self.channels],
                                               dtype="int16")
                data = self._raw[: got * self.channels].reshape(got, self.channels)
                data = data * np.float32(1.0 / 32768.0)   # a new float32 array, exact scaling
            else:
                data = self._f.read(self._block, dtype="float32", always_2d=True)
        except (RuntimeError, OSError) as e:
            if self._salvage():   # a damaged file: re-read that block in small pieces
                return self.read(timeout)
            self.bad_frames += 1
            self.ended = True
            self.error = (f"read error after {self._pos / self.file_rate:.1f} s of "
                          f"{self.duration:.1f} s ({_short(e)})")
            self.state, self.detail = "ended", f"read error: {_short(e)}"
            return self._resample(np.zeros(0, np.float32), last=True)
        self._pos += len(data)
        if self._float_file:   # float files can hold NaN/inf or > full scale: sanitise, count
            self._sanitise(data)
        last = len(data) < self._block or self._pos >= self._f.frames
        if last:
            self.ended = True
            self.state, self.detail = "ended", "end of file"
        return self._resample(to_mono(data), last=last)

    def _sanitise(self, data: np.ndarray) -> None:
        """NaN/inf samples to 0 / full scale (a bad frame per block), the rest clipped to
        [-1, 1]; the first of each is logged (`classify`: on stderr) with its time."""
        start = self._pos - len(data)
        finite = np.isfinite(data)
        if not finite.all():
            self.bad_frames += 1
            if "nan" not in self._said:
                self._said.add("nan")
                log.warning("%s: NaN or infinite samples (the first at %.1f s) are read as 0 or "
                            "full scale", self.name, (start + np.argmin(finite.all(axis=1))) / self.file_rate)
            np.nan_to_num(data, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
        if "over" not in self._said and (over := np.abs(data) > 1.0).any():
            self._said.add("over")
            log.warning("%s: float samples beyond full scale (up to %.3g, the first at %.1f s) are "
                        "clipped to [-1, 1]", self.name, float(np.abs(data).max()),
                        (start + np.argmax(over.any(axis=1))) / self.file_rate)
        np.clip(data, -1.0, 1.0, out=data)

    def _salvage(self) -> bool:
        """After a failed read of a large block, open the file again at that block's start
        and read on in blocks of SALVAGE_S, so that everything before the damage (to within
        SALVAGE_S) is still delivered. False if the blocks are that small already (or the
        file cannot be reopened there): the file ends at the error."""
        import soundfile as sf

        small = self._whole(int(round(SALVAGE_S * self.file_rate)))
        if self._block <= small:
            return False
        try:   # a fresh handle: after some errors (a failed internal seek) the old one is stuck
            f = sf.SoundFile(os.fsencode(self.path))
            f.seek(self._pos)
        except (sf.LibsndfileError, RuntimeError, OSError):
            return False
        self._f.close()
        self._f = f
        self._block = small
        return True

    def close(self) -> None:
        self._f.close()


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[-1] if text else type(e).__name__)[:160]
