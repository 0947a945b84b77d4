"""Analysis windows and filterbanks in plain numpy (no librosa at run time).

Each function reproduces the librosa function named in its docstring, with the same
defaults; tests/test_filterbanks.py checks them against librosa itself.
"""

from __future__ import annotations

import numpy as np


def hann_window(win_length: int, n_fft: int) -> np.ndarray:
    """Periodic Hann window of ``win_length`` centred in ``n_fft`` samples (librosa.stft's)."""
    n = np.arange(win_length)
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)
    out = np.zeros(n_fft)
    left = (n_fft - win_length) // 2
    out[left : left + win_length] = w
    return out


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    log_t = f >= min_log_hz
    mels = np.where(log_t, min_log_mel + np.log(np.maximum(f, 1e-12) / min_log_hz) / logstep, mels)
    return mels


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    freqs = f_sp * m
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), freqs)


def vtlp_warp(freqs: np.ndarray, alpha: float, nyquist: float) -> np.ndarray:
    """Vocal tract length perturbation's frequency warp (Jaitly and Hinton, 2013): ``alpha *
    f`` up to a boundary (80 % of Nyquist, lowered for ``alpha`` > 1), then the straight line
    that takes Nyquist to itself."""
    b = 0.8 * nyquist * min(alpha, 1.0) / alpha
    return np.where(freqs <= b, alpha * freqs,
                    alpha * b + (nyquist - alpha * b) * (freqs - b) / (nyquist - b))


def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None, warp: float = 1.0) -> np.ndarray:
    """Slaney-normalised triangular mel filters, shape (n_mels, 1 + n_fft // 2).

    Same as ``librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)``.
    ``warp`` != 1 lays the filters over the FFT bins' frequencies warped by :func:`vtlp_warp`:
    the bands a voice with a vocal tract ``warp`` times shorter would fill (training copies
    only; the daemon always uses 1).
    """
    fmax = sr / 2.0 if fmax is None else float(fmax)
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    if warp != 1.0:
        fftfreqs = vtlp_warp(fftfreqs, warp, sr / 2.0)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights


def chroma_filterbank(sr: int, n_fft: int, n_chroma: int = 12, tuning: float = 0.0) -> np.ndarray:
    """Chroma filters, shape (n_chroma, 1 + n_fft // 2).

    Same as ``librosa.filters.chroma(sr=sr, n_fft=n_fft, n_chroma=n_chroma, tuning=tuning)``
    with its defaults (ctroct=5, octwidth=2, norm=2, base_c=True).
    """
    ctroct, octwidth = 5.0, 2.0
    frequencies = np.linspace(0, sr, n_fft, endpoint=False)[1:]
    a440 = 440.0 * 2.0 ** (tuning / n_chroma)
    frqbins = n_chroma * np.log2(frequencies / (a440 / 16))
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))
    binwidthbins = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1]))
    d = np.subtract.outer(frqbins, np.arange(0, n_chroma, dtype="d")).T
    n_chroma2 = np.round(float(n_chroma) / 2)
    d = np.remainder(d + n_chroma2 + 10 * n_chroma, n_chroma) - n_chroma2
    wts = np.exp(-0.5 * (2 * d / np.tile(binwidthbins, (n_chroma, 1))) ** 2)
    wts /= np.maximum(np.sqrt(np.sum(wts**2, axis=0, keepdims=True)), np.finfo(float).tiny)
    wts *= np.tile(np.exp(-0.5 * (((frqbins / n_chroma - ctroct) / octwidth) ** 2)), (n_chroma, 1))
    wts = np.roll(wts, -3 * (n_chroma // 12), axis=0)
    return np.ascontiguousarray(wts[:, : 1 + n_fft // 2])


def dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Orthonormal DCT-II as a (n_out, n_in) matrix: ``scipy.fft.dct(x, norm='ortho')[:n_out]``."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    m = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    m[0] /= np.sqrt(2.0)
    return m


class BandedProduct:
    """``x @ weights.T`` for a filterbank whose filters each cover a short run of bins.

    Filters are taken in groups of ``group``; each group multiplies only the bins its
    filters cover, so a 128-band mel bank costs about a fifth of the dense product.
    """

    def __init__(self, weights: np.ndarray, group: int = 16, dtype: type = np.float32):
        weights = np.asarray(weights)
        self.n_out, self.n_in = weights.shape
        self.blocks: list[tuple[int, int, int, int, np.ndarray]] = []
        for g0 in range(0, self.n_out, group):
            g1 = min(g0 + group, self.n_out)
            cols = np.nonzero(np.any(weights[g0:g1] != 0, axis=0))[0]
            lo, hi = (int(cols[0]), int(cols[-1]) + 1) if len(cols) else (0, 0)
            self.blocks.append((g0, g1, lo, hi, np.ascontiguousarray(weights[g0:g1, lo:hi].T, dtype=dtype)))

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            out = np.empty((len(x), self.n_out), dtype=x.dtype)
        for g0, g1, lo, hi, w in self.blocks:
            if hi > lo:
                np.matmul(x[:, lo:hi], w, out=out[:, g0:g1])
            else:
                out[:, g0:g1] = 0
        return out
