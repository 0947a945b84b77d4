"""The one feature implementation, shared by training (tools/) and the daemon: frame analysis.

Audio is cut into frames on a fixed grid (``hop_length`` samples apart, ``n_fft`` long,
a Hann window of ``win_length`` centred in each). :class:`FrameAnalyzer` turns a batch of
frames into one row of per-frame values each; :func:`aerd.windowstats.window_features` turns
the rows of the frames inside one analysis window into the model's feature vector. The batch
path (:func:`aerd.windowstats.extract_window`) and the incremental path (:mod:`aerd.stream`)
both use these two pieces, so they cannot drift apart.

Feature sets:

``seed180``  the seed prototype's features: means over the window of MFCC-40 (from a dB
             mel spectrogram clipped at ``top_db`` below its maximum), chroma-12 (from the
             magnitude spectrum, tuning 0, each frame max-normalised) and mel-128 power.
             Equal to librosa's ``mfcc``, ``chroma_stft`` and ``melspectrogram`` on the
             same window and framing.
``rich``     statistics over the speech frames of the window only: band-levelled log-mel
             means and standard deviations, MFCC 1.. means and deviations, deviations of
             log-mel and MFCC deltas, energy dynamics, spectral centroid and flatness, pitch
             (from the normalised autocorrelation) mean/deviation/slope/step, voicing and
             speech onset rates, voiced and speech fractions, voicing clarity (the
             autocorrelation peak) mean/deviation (``voicing_clarity``), and the rhythm:
             the log modulation power of the speech frames' log-mel envelope, 8 band
             groups x 4 bands from 0.5 to 16 Hz (``modulation``).
             No absolute loudness feature: level-invariant for speech well above the mel
             bands' noise floor (``spectral_floor_db``, white noise at -75 dBFS).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .featurespec import FeatureSpec
from .filterbanks import BandedProduct, chroma_filterbank, dct_matrix, hann_window, mel_filterbank

_LN10_10 = np.log(10.0) / 10.0
_TINY32 = np.finfo(np.float32).tiny
max_reduce = np.maximum.reduce
"""``max_reduce(a, axis)``: ndarray.max() goes through a Python wrapper, ~1 us more a call."""
CHUNK = 64
"""Frames per batch of the matrix products (and at least as many per FFT batch)."""
FFT_BYTES = 1 << 20
"""Float64 frames per FFT batch, in bytes (the size of the preallocated work buffers)."""
_THREE = np.arange(3)


class FrameAnalyzer:
    """Per-frame analysis: ``analyze(frames)`` -> one row of per-frame values per frame.

    Holds the window, filterbanks and DCT for one :class:`FeatureSpec`; no I/O, no state
    between calls, so rows do not depend on how frames are batched.
    """

    def __init__(self, spec: FeatureSpec, mel_warp: float = 1.0):
        self.spec = spec
        self.mel_warp = mel_warp   # VTLP (filterbanks.mel_filterbank): training copies; daemon 1
        s = spec
        self._buffers: dict[str, np.ndarray] = {}
        self._moments: dict[int, np.ndarray] = {}
        self._mel_floor: np.ndarray | None = None   # rich set: power per mel band added
        self.window = hann_window(s.win_length, s.n_fft).astype(np.float32)
        nz = np.nonzero(self.window)[0]
        self._span = (int(nz[0]), int(nz[-1]) + 1)
        # frames per FFT batch: about 1 MB of float64 frames (and as much of spectrum)
        self._fe_rows = max(CHUNK, FFT_BYTES // (8 * s.n_fft))
        self.mel = BandedProduct(mel_fb := mel_filterbank(s.sample_rate, s.n_fft, s.n_mels, s.fmin, s.fmax, mel_warp))
        n_bins = s.n_fft // 2 + 1
        # one-sided Parseval weights: sum(w_k |X_k|^2) / n_fft == sum(frame_windowed^2)
        parseval = np.full(n_bins, 2.0)
        parseval[0] = 1.0
        if s.n_fft % 2 == 0:
            parseval[-1] = 1.0
        self._energy_w = (parseval / s.n_fft / np.sum(self.window.astype(np.float64) ** 2)).astype(np.float32)
        if s.set == "seed180":
            self.chroma_t = np.ascontiguousarray(
                chroma_filterbank(s.sample_rate, s.n_fft, s.n_chroma, 0.0).T.astype(np.float32))
            self.dct = dct_matrix(s.n_mfcc, s.n_mels)
            self._flat_mat = np.zeros((2 * s.n_mels, 2), np.float32)
            self._flat_mat[: s.n_mels, 0] = self._flat_mat[s.n_mels :, 1] = 1.0 / s.n_mels
            # rows: mel power, mel dB, chroma, energy dB, flatness
            self.width = 2 * s.n_mels + s.n_chroma + 2
        else:
            self.dct_t = np.ascontiguousarray(dct_matrix(s.n_mfcc, s.n_mels).T.astype(np.float32))
            freqs_khz = np.fft.rfftfreq(s.n_fft, 1.0 / s.sample_rate) / 1000.0
            self._centroid_mat = np.ascontiguousarray(
                np.stack([freqs_khz, np.ones_like(freqs_khz)], axis=1).astype(np.float32))
            # Pitch from the autocorrelation of the 0..4 kHz band at an 8 kHz lag grid: the even
            # extension of the low band of the power spectrum, transformed forward (numpy's
            # forward rfft is several times faster than its irfft).
            self.acf_bins = s.n_fft // (2 * max(1, s.sample_rate // 8000)) + 1
            self.acf_rate = s.sample_rate * (self.acf_bins - 1) * 2 / s.n_fft
            self.lag_lo = int(np.floor(self.acf_rate / s.f0_max))
            self.lag_hi = int(np.ceil(self.acf_rate / s.f0_min))
            w = self.window.astype(np.float64)
            pw = np.abs(np.fft.rfft(w)) ** 2
            # ACF at lag 0 and at the pitch lags only, as one product with a cosine matrix:
            # the real DFT of the even extension of the low band of the power spectrum.
            b = self.acf_bins
            lags = np.concatenate([[0], np.arange(self.lag_lo - 1, self.lag_hi + 2)])
            weight = np.full(b, 2.0)
            weight[0] = weight[-1] = 1.0
            cos = weight[:, None] * np.cos(2 * np.pi * np.outer(np.arange(b), lags) / (2 * (b - 1)))
            # the window's own normalised ACF is divided out in the matrix (column by column)
            rw = pw[:b] @ cos
            cos[:, 1:] /= rw[1:] / rw[0]
            self._acf_mat = cos.astype(np.float32)
            self._semis0 = 12.0 * np.log2(self.acf_rate / 55.0)
            # the noise floor per mel band: white noise of mean square 10^(L/10) has an
            # expected power of that times sum(window^2) in every bin
            if s.spectral_floor_db is not None:
                per_bin = 10.0 ** (s.spectral_floor_db / 10.0) * np.sum(w ** 2)
                self._mel_floor = (per_bin * mel_fb.sum(axis=1)).astype(np.float32)
            self.width = s.n_mels + s.n_mfcc + 5

    # -- columns -------------------------------------------------------------------------
    @property
    def energy_col(self) -> int:
        """Column holding frame energy in dBFS (both sets)."""
        return self.width - 2 if self.spec.set == "seed180" else self.spec.n_mels + self.spec.n_mfcc

    def frames(self, samples: np.ndarray) -> np.ndarray:
        """All frames of ``samples`` on the grid (a strided view; centre-padded if the spec says)."""
        s = self.spec
        x = np.ascontiguousarray(samples, dtype=np.float32)
        if s.center:
            x = np.pad(x, s.n_fft // 2)
        return self.grid(x)

    def grid(self, x: np.ndarray) -> np.ndarray:
        """Frames of a contiguous float32 signal, as a strided view (the stream's buffer)."""
        s = self.spec
        if len(x) < s.n_fft:
            return np.empty((0, s.n_fft), dtype=np.float32)
        n = 1 + (len(x) - s.n_fft) // s.hop_length
        return as_strided(x, shape=(n, s.n_fft), strides=(x.strides[0] * s.hop_length, x.strides[0]),
                          writeable=False)

    def _scratch(self, name: str, shape: tuple[int, int], dtype: type) -> np.ndarray:
        """A preallocated work buffer (frames x bins arrays are ~0.5 MB: allocating them per
        hop costs more in page faults than the FFT itself)."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape[1] != shape[1] or buf.shape[0] < shape[0]:
            buf = self._buffers[name] = np.zeros((max(shape[0], CHUNK), shape[1]), dtype=dtype)
        return buf[: shape[0]]

    def moment_rows(self, n: int) -> np.ndarray:
        """A (5, n) float64 work array of this analyzer, kept per length: rows f0, f0^2, t,
        t*f0, t^2, of which the caller fills f0, f0^2 and t*f0 (t = 0, hop, 2 hop, ... s)."""
        m = self._moments.get(n)
        if m is None:
            if len(self._moments) > 8:
                self._moments.clear()
            m = self._moments[n] = np.zeros((5, n))
            m[2] = np.arange(n) * (self.spec.hop_length / self.spec.sample_rate)
            m[4] = m[2] * m[2]
        return m

    def analyze(self, frames: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Per-frame rows (float32) for a (n, n_fft) batch of frames, written into ``out``
        (a C-contiguous (n, width) float32 array) if given."""
        if out is None:
            out = np.empty((len(frames), self.width), dtype=np.float32)
        self.analyze_groups(frames, [len(frames)], [out])
        return out

    def analyze_groups(self, frames: np.ndarray, sizes: list[int], outs: list[np.ndarray]) -> None:
        """Rows for consecutive groups of frames: group i is the next ``sizes[i]`` frames, its
        rows go to ``outs[i]``. Every group gets exactly the rows ``analyze`` gives it alone:
        its matrix products run in the same batches (CHUNK frames from the group's start;
        BLAS results can depend on the batch size), while the window, FFT and power spectrum,
        whose rows do not depend on batching, run over several groups at once."""
        pieces = []   # (first frame, frames, rows out)
        off = 0
        for size, out in zip(sizes, outs):
            for i in range(0, size, CHUNK):
                m = min(CHUNK, size - i)
                pieces.append((off + i, m, out[i : i + m]))
            off += size
        j = 0
        while j < len(pieces):
            start = pieces[j][0]
            k = j + 1
            while k < len(pieces) and pieces[k][0] + pieces[k][1] - start <= self._fe_rows:
                k += 1
            end = pieces[k - 1][0] + pieces[k - 1][1]
            power = self._power(frames[start:end])
            for first, m, out in pieces[j:k]:
                self._rows_from_power(power[first - start : first - start + m], out)
            j = k

    def _power(self, frames: np.ndarray) -> np.ndarray:
        """Power spectrum (float32) of a batch of frames (work buffer of this analyzer)."""
        spec, n = self.spec, len(frames)
        nb = spec.n_fft // 2 + 1
        # numpy's float64 FFT is ~2-4x faster than its float32 one; products run in float32.
        # Only the window's non-zero span is multiplied; the rest of the buffer stays zero.
        lo, hi = self._span
        windowed = self._scratch("w", (n, spec.n_fft), np.float64)
        # float32 samples x float32 window, widened to float64 for the FFT in the same pass
        np.multiply(frames[:, lo:hi], self.window[lo:hi], out=windowed[:, lo:hi])
        if spec.remove_dc:   # (x - mean x) * w, the mean over the window's span
            mean = np.add.reduce(frames[:, lo:hi], axis=1, dtype=np.float64) / (hi - lo)
            windowed[:, lo:hi] -= mean[:, None] * self.window[lo:hi]
        spectrum = np.fft.rfft(windowed, axis=1, out=self._scratch("X", (n, nb), np.complex128))
        pairs = spectrum.view(np.float64)
        np.square(pairs, out=pairs)
        # re^2 + im^2 in float64, stored as float32 in the same pass
        return np.add(pairs[:, 0::2], pairs[:, 1::2], out=self._scratch("p32", (n, nb), np.float32),
                      casting="same_kind")

    def _rows_from_power(self, power: np.ndarray, out: np.ndarray) -> None:
        spec, n = self.spec, len(power)
        nb = spec.n_fft // 2 + 1
        nm = spec.n_mels
        seed = spec.set == "seed180"
        # seed rows: mel power, then mel dB; rich rows: mel dB first (written in place)
        mel = self.mel(power, out=out[:, :nm] if seed else None)
        energy_db = power @ self._energy_w
        energy_db += np.float32(1e-12)
        np.log10(energy_db, out=energy_db)
        if self._mel_floor is not None:
            mel += self._mel_floor
        mel_c = np.maximum(mel, np.float32(1e-10), out=mel)
        log_mel = np.log(mel_c, out=out[:, nm : 2 * nm] if seed else out[:, :nm])
        if seed:
            # mel power and its natural log lie side by side in the row: one product gives
            # both per-frame means of the flatness, exp(mean log) / mean
            means = out[:, : 2 * nm] @ self._flat_mat
            np.exp(means[:, 1], out=out[:, -1])
            out[:, -1] /= means[:, 0]
            np.multiply(energy_db, np.float32(10.0), out=out[:, -2])
            log_mel *= np.float32(1.0 / _LN10_10)   # now dB
            nc = spec.n_chroma
            mag = np.sqrt(power, out=self._scratch("m32", (n, nb), np.float32))
            chroma = np.matmul(mag, self.chroma_t, out=out[:, 2 * nm : 2 * nm + nc])
            peak = max_reduce(chroma, axis=1, keepdims=True)
            # each frame's chroma over its peak (librosa's max-norm; all-zero frames stay zero)
            np.divide(chroma, peak, out=chroma, where=peak > _TINY32)
            return
        energy_db *= np.float32(10.0)
        flat = np.exp(np.add.reduce(log_mel, axis=1) / nm) / (np.add.reduce(mel_c, axis=1) / nm)
        mag = np.sqrt(power, out=self._scratch("m32", (n, nb), np.float32))
        log_mel *= np.float32(1.0 / _LN10_10)   # now dB
        nc = spec.n_mfcc
        np.matmul(log_mel, self.dct_t, out=out[:, nm : nm + nc])
        out[:, nm + nc] = energy_db
        moments = mag @ self._centroid_mat   # sum f |X|, sum |X|
        out[:, nm + nc + 1] = moments[:, 0] / np.maximum(moments[:, 1], np.float32(1e-10))
        out[:, nm + nc + 2] = np.log10(np.maximum(flat, 1e-10))
        # Pitch only where the frame can be speech (frame-local half of the speech test:
        # above the absolute floor, not noise-flat); it is only ever used on speech frames.
        vad = spec.vad
        maybe = (energy_db > vad.floor_db) & (flat < vad.max_flatness)
        # pitch and voicing clarity (0 where the frame cannot be speech)
        pc = out[:, nm + nc + 3 : nm + nc + 5]
        if maybe.all():
            self._pitch(power, pc)
        else:
            pc[:] = 0.0
            if maybe.any():
                pc[maybe] = self._pitch(power[maybe], np.empty((int(maybe.sum()), 2), np.float32))
        if not spec.voicing_clarity:
            pc[:, 1] = 0.0

    def _pitch(self, power: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Into ``out`` (n, 2): semitones above 55 Hz of the normalised-autocorrelation pitch
        (0 where unvoiced) and the voicing clarity (the autocorrelation's peak over the pitch
        lags relative to lag 0, at most 1).

        The ACF is divided by the window's own ACF (in the matrix) but not by each frame's
        lag-0 energy: every test below is invariant to a positive per-row scale, so the
        energy only scales the voicing threshold and the flat-top guard."""
        acf = power[:, : self.acf_bins] @ self._acf_mat
        e0 = np.maximum(acf[:, 0], np.float32(1e-20))
        seg = acf[:, 1:]
        inner = seg[:, 1:-1]
        peak = inner.max(axis=1)
        voiced = peak > np.float32(self.spec.voicing) * e0
        # the shortest lag whose local maximum nearly reaches the best one (no sub-octaves)
        local = inner >= seg[:, :-2]
        local &= inner > seg[:, 2:]
        local &= inner >= (np.float32(0.85) * peak)[:, None]
        k = np.argmax(local, axis=1)
        miss = voiced & ~local.any(axis=1)   # no such local maximum: the best lag
        if miss.any():
            k[miss] = np.argmax(inner[miss], axis=1)
        # parabolic interpolation around lag k + 1 of seg (= column k + 2 of acf)
        width = acf.shape[1]
        at = (np.arange(0, len(acf) * width, width) + k + 1)[:, None] + _THREE
        a, b, c = acf.ravel()[at].T
        denom = a - 2 * b + c
        denom[np.abs(denom) <= np.float32(1e-12) * e0] = np.inf   # flat top: no shift
        shift = np.multiply(a - c, np.float32(0.5)) / denom
        np.minimum(np.maximum(shift, -0.5, out=shift), 0.5, out=shift)
        semis = self._semis0 - 12.0 * np.log2(self.lag_lo + k + shift)
        semis[~voiced] = 0.0
        out[:, 0] = semis
        np.minimum(np.divide(peak, e0, out=peak), np.float32(1.0), out=out[:, 1])
        return out
