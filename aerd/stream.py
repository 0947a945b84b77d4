"""Incremental windowing: audio chunks in, one feature vector per window hop out.

Frames lie on one grid over the whole stream; a window ``k`` covers samples
``[k*hop, k*hop + window)`` and exactly the frames inside it. Only frames not analysed yet
(one window hop's worth) are analysed when a window's last sample has arrived, and their rows
go to a ring of frame rows; the window's statistics are then taken over its rows in the ring.
A chunk that completes several windows first analyses all their new frames (one FFT pass
over several hops), then takes each window's statistics: each stage runs several times in a
row with its code and tables warm. The matrix products of the analysis run in one batch per
window hop, cut at window ends, never at chunk ends, so the output is bit-identical whatever
size the audio chunks arrive in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .features import FrameAnalyzer
from .windowstats import extract_window, window_features
from .featurespec import FeatureSpec

PENDING = 16
"""Most windows analysed ahead of their statistics within one chunk (ring rows to spare)."""


@dataclass(frozen=True)
class Window:
    """One analysed window: its place in the stream and its features."""

    index: int
    start: float
    """Stream time of the first sample, seconds."""
    end: float
    """Stream time just after the last sample, seconds."""
    features: np.ndarray
    speech: float
    """Fraction of the window's frames that are speech."""


class StreamExtractor:
    """Feeds on audio chunks of any size (float32, mono, at the spec's rate)."""

    def __init__(self, spec: FeatureSpec, window_s: float, hop_s: float,
                 min_audio_s: float = 1.0, tail_s: float = 0.25, mel_warp: float = 1.0):
        self.spec = spec
        self.analyzer = FrameAnalyzer(spec, mel_warp)   # (mel_warp: training copies only)
        sr = spec.sample_rate
        self.win = int(round(window_s * sr))
        self.hop = int(round(hop_s * sr))
        self.min_samples = int(round(min_audio_s * sr))
        self.tail = int(round(tail_s * sr))
        if self.win < spec.n_fft or self.hop <= 0:
            raise ValueError("window shorter than one frame or hop not positive")
        # Incremental frames need a grid shared by all windows; otherwise recompute each window.
        self.incremental = (not spec.center) and self.hop % spec.hop_length == 0
        self.n_frames = 1 + (self.win - spec.n_fft) // spec.hop_length
        # room for PENDING hops of samples not analysed yet (see _take_pending)
        cap = max(self.win, spec.n_fft) + PENDING * self.hop + spec.hop_length
        self._buf = np.zeros(cap if self.incremental else self.win + self.hop, dtype=np.float32)
        # every frame the buffer can hold, as one strided view made once (frames start on the
        # grid and the buffer always starts on a frame boundary)
        self._grid = self.analyzer.grid(self._buf)
        self._buf_start = 0      # absolute sample index of _buf[0]
        self._fill = 0           # valid samples in _buf
        self._next_frame = 0     # first frame index not analysed yet
        # frame rows, oldest first; the last analysed window is always the contiguous view
        # _ring[_end - n_frames : _end]. New rows are analysed straight into the ring; only
        # when it is full are that window's rows moved to its front (every ~PENDING hops).
        per_hop = min(max(1, self.hop // spec.hop_length), self.n_frames)
        self._ring = np.zeros((2 * self.n_frames + PENDING * per_hop, self.analyzer.width),
                              dtype=np.float32)
        self._end = self.n_frames
        # windows whose last sample has arrived but whose frames are not analysed yet
        self._pending: list[int] = []
        self._done: list[Window] = []
        self._k = 0              # next window index
        self.samples_in = 0
        self._flushed = False

    def _window_end(self, k: int) -> int:
        return k * self.hop + self.win

    def push(self, chunk: np.ndarray) -> list[Window]:
        """Add samples; returns the windows completed by them (often none)."""
        x = np.asarray(chunk, dtype=np.float32).reshape(-1)
        pos = 0
        while pos < len(x):
            need = self._window_end(self._k) - (self._buf_start + self._fill)
            take = min(need, len(x) - pos)
            self._buf[self._fill : self._fill + take] = x[pos : pos + take]
            self._fill += take
            pos += take
            self.samples_in += take
            if take == need:
                self._emit()
        self._take_pending()
        out, self._done = self._done, []
        return out

    def flush(self) -> list[Window]:
        """At end of stream. A stream shorter than one window yields one (shorter) window if it
        holds at least ``min_audio_s``; otherwise, if at least ``tail_s`` of audio came after the
        last window, one more window ending at the stream's end scores that tail."""
        sr = self.spec.sample_rate
        if self._flushed:
            return []
        self._flushed = True
        if self._k == 0:
            if self.samples_in < max(self.min_samples, self.spec.n_fft):
                return []
            feats, speech = extract_window(self._buf[: self._fill], self.spec, self.analyzer)
            self._k = 1
            return [Window(0, 0.0, self._fill / sr, feats, speech)]
        total = self._buf_start + self._fill
        last = (total - self.spec.n_fft) // self.spec.hop_length
        if not self.incremental or total - self._window_end(self._k - 1) < self.tail or last < self._next_frame:
            return []
        self._append_frames([last])
        feats, speech = window_features(self._rows(), self.analyzer)
        k = self._k
        self._k += 1
        return [Window(k, (total - self.win) / sr, total / sr, feats, speech)]

    def _append_frames(self, lasts: list[int]) -> list[int]:
        """Analyse frames ``_next_frame..lasts[-1]`` into the row ring, as one group per entry
        of ``lasts`` (a window's new frames end at its last frame); returns the ring end after
        each group. A group keeps only its last ``n_frames`` frames (the others lie in a gap
        between windows that are further apart than they are long)."""
        fh, nf, ring = self.spec.hop_length, self.n_frames, self._ring
        groups = []   # (first frame, count) per window
        nxt = self._next_frame
        for last in lasts:
            first = max(nxt, last + 1 - nf)
            groups.append((first, last + 1 - first))
            nxt = last + 1
        total = sum(n for _, n in groups)
        if self._end + total > len(ring):   # keep the last window's rows, at the front
            ring[:nf] = ring[self._end - nf : self._end]
            self._end = nf
        ends = []
        base = self._buf_start // fh   # the grid's first frame
        i = 0
        while i < len(groups):   # runs of groups whose frames follow each other
            j = i + 1
            while j < len(groups) and groups[j][0] == groups[j - 1][0] + groups[j - 1][1]:
                j += 1
            run = groups[i:j]
            outs = []
            for _, n in run:
                outs.append(ring[self._end : self._end + n])
                self._end += n
                ends.append(self._end)
            first = run[0][0] - base
            self.analyzer.analyze_groups(self._grid[first : first + sum(n for _, n in run)],
                                         [n for _, n in run], outs)
            i = j
        self._next_frame = nxt
        return ends

    def _rows(self, end: int | None = None) -> np.ndarray:
        """The frame rows of the window ending at ring row ``end`` (default: the last
        analysed window), a view of the ring."""
        end = self._end if end is None else end
        return self._ring[end - self.n_frames : end]

    def _take_pending(self) -> None:
        """Analyse the pending windows' frames, then take their statistics, in order."""
        if not self._pending:
            return
        sr, fh = self.spec.sample_rate, self.spec.hop_length
        ends = self._append_frames([(self._window_end(k) - self.spec.n_fft) // fh
                                    for k in self._pending])
        for k, end_row in zip(self._pending, ends):
            feats, speech = window_features(self._rows(end_row), self.analyzer)
            end = self._window_end(k)
            self._done.append(Window(k, (end - self.win) / sr, end / sr, feats, speech))
        self._pending.clear()
        self._drop_to(self._next_frame * fh)

    def _drop_to(self, keep_from: int) -> None:
        """Forget the samples before ``keep_from`` (absolute index)."""
        drop = keep_from - self._buf_start
        if drop > 0:
            rest = self._fill - drop
            self._buf[:rest] = self._buf[drop : self._fill]
            self._fill = rest
            self._buf_start = keep_from

    def _emit(self) -> None:
        k = self._k
        self._k += 1
        if self.incremental:
            self._pending.append(k)
            if len(self._pending) >= PENDING:   # the sample buffer holds this many hops
                self._take_pending()
            return
        sr, end = self.spec.sample_rate, self._window_end(k)
        start = end - self.win
        off = start - self._buf_start
        feats, speech = extract_window(self._buf[off : off + self.win], self.spec, self.analyzer)
        self._done.append(Window(k, start / sr, end / sr, feats, speech))
        self._drop_to(start + self.hop)
