"""Window statistics: the rows of the frames inside one analysis window -> feature vector.

Frames count as speech when their energy is within ``vad.range_db`` of the loudest frame
of the window, above ``vad.floor_db`` dBFS, at least ``vad.min_rise_db`` above the window's
background (its 10th-percentile frame energy: a steady hum or offset is not speech, however
loud) and their mel-band flatness is below ``vad.max_flatness`` (noise is flat, voiced
speech is not). The feature sets are described in :mod:`aerd.features`.
"""

from __future__ import annotations

import numpy as np

from .features import FrameAnalyzer, max_reduce
from .featurespec import MODULATION_BANDS_HZ, MODULATION_GROUPS, FeatureSpec


def speech_mask(rows: np.ndarray, analyzer: FrameAnalyzer) -> np.ndarray:
    """Boolean speech flag per frame row of one window (see the module docstring)."""
    vad = analyzer.spec.vad
    energy = rows[:, analyzer.energy_col]
    if len(energy) == 0:
        return np.zeros(0, dtype=bool)
    if analyzer.spec.set == "seed180":
        noisy = rows[:, -1] >= vad.max_flatness
    else:   # the rich rows hold log10(flatness)
        noisy = rows[:, analyzer.energy_col + 2] >= np.log10(vad.max_flatness)
    thresh = max(vad.floor_db, float(max_reduce(energy)) - vad.range_db)
    if vad.min_rise_db > 0:
        k = (len(energy) - 1) // 10
        thresh = max(thresh, float(np.partition(energy, k)[k]) + vad.min_rise_db)
    speech = energy > thresh
    speech &= ~noisy
    return speech


def window_features(rows: np.ndarray, analyzer: FrameAnalyzer) -> tuple[np.ndarray, float]:
    """Feature vector (float32) and speech fraction of one window's frame rows."""
    spec = analyzer.spec
    speech = speech_mask(rows, analyzer)
    fraction = np.count_nonzero(speech) / len(speech) if len(speech) else 0.0
    if spec.set == "seed180":
        return _seed_features(rows, analyzer), fraction
    return _rich_features(rows, speech, analyzer), fraction


def _seed_features(rows: np.ndarray, an: FrameAnalyzer) -> np.ndarray:
    s = an.spec
    out = np.zeros(s.n_features, dtype=np.float32)
    if len(rows) == 0:
        return out
    nm, nc = s.n_mels, s.n_chroma
    w = _mean_weights(len(rows))
    mel_db = rows[:, nm : 2 * nm]
    floor = max_reduce(mel_db, axis=None) - np.float32(s.top_db)   # power_to_db's top_db clip, over the window
    # (the clip is not a formality: the bands near 8 kHz of 16 kHz audio sit at the -100 dB
    # floor, more than top_db below the loudest band, in every window of the bench's speech)
    out[: s.n_mfcc] = an.dct @ (w @ np.maximum(mel_db, floor))
    means = w @ rows   # every column's mean in one product
    out[s.n_mfcc : s.n_mfcc + nc] = means[2 * nm : 2 * nm + nc]
    out[s.n_mfcc + nc :] = means[:nm]
    return out


_WEIGHTS: dict[int, np.ndarray] = {}


def _mean_weights(n: int) -> np.ndarray:
    """A float32 vector of n values 1/n (cached per length): ``w @ rows`` = column means."""
    w = _WEIGHTS.get(n)
    if w is None:
        if len(_WEIGHTS) > 64:
            _WEIGHTS.clear()
        w = _WEIGHTS[n] = np.full(n, 1.0 / n, dtype=np.float32)
    return w


def _rich_features(rows: np.ndarray, speech: np.ndarray, an: FrameAnalyzer) -> np.ndarray:
    """Rich statistics of one window's frame rows (float32 throughout).

    Means and deviations over the speech frames are matrix-vector products with a weight
    vector (1/n on the speech frames, 0 elsewhere): far cheaper than boolean indexing and
    ``mean``/``std`` calls, and every window, batch or stream, takes the same arithmetic.

    Layout: log-mel means (levelled) and deviations, MFCC 1.. means and deviations,
    deviations of the frame-to-frame differences of log-mel bands and of MFCCs (consecutive
    speech frames), then energy deviation and mean absolute energy difference, centroid and
    flatness mean/deviation, pitch mean/deviation, pitch slope (semitones/s, least squares
    over voiced frames), mean absolute pitch step between consecutive voiced frames, voicing
    onsets per second of speech, speech onsets per second, voiced and speech fractions, then
    voicing clarity mean and deviation (if the spec has them), then the modulation features
    (if the spec has them; :func:`_modulation`)."""
    s = an.spec
    out = np.zeros(s.n_features, dtype=np.float32)
    n = len(speech)
    n_sp = int(np.count_nonzero(speech))
    if n_sp < 3:
        out[s.n_features - 1 - s.n_clarity - s.n_modulation] = n_sp / n if n else 0.0   # speech fraction
        return out
    nm, nc = s.n_mels, s.n_mfcc
    k = nm + nc  # energy column; then centroid, flatness, pitch, voicing clarity
    hop_s = s.hop_length / s.sample_rate
    w = speech.astype(np.float32)
    w *= np.float32(1.0 / n_sp)
    mu = w @ rows
    # deviation as sqrt(E[x^2] - E[x]^2) (element-wise products of whole contiguous arrays
    # are cheap; broadcasting a centring is not)
    sd = np.sqrt(np.maximum(w @ np.multiply(rows, rows) - mu * mu, np.float32(0.0)))
    lm = mu[:nm]
    out[:nm] = lm - np.float32(np.add.reduce(lm) / nm)
    o = nm
    out[o : o + nm] = sd[:nm]
    o += nm
    out[o : o + nc - 1] = mu[nm + 1 : k]
    o += nc - 1
    out[o : o + nc - 1] = sd[nm + 1 : k]
    o += nc - 1
    # frame-to-frame differences of log-mel, MFCCs and energy between consecutive speech frames
    pairs = speech[1:] & speech[:-1]
    n_p = int(np.count_nonzero(pairs))
    d_e = 0.0
    if n_p:
        wp = pairs.astype(np.float32)
        wp *= np.float32(1.0 / n_p)
        d = rows[1:] - rows[:-1]  # whole rows: one contiguous subtraction
        d_e = float(wp @ np.abs(d[:, k]))
        # differences have a mean near zero: sqrt(E[d^2] - E[d]^2) loses nothing
        m1 = wp @ d[:, :k]
        out[o : o + k] = np.sqrt(np.maximum(wp @ np.multiply(d, d, out=d)[:, :k] - m1 * m1,
                                            np.float32(0.0)))
    o += k
    f0 = rows[:, k + 3]
    voiced = f0 > 0
    voiced &= speech
    n_v = int(np.count_nonzero(voiced))
    f0_mean = f0_std = slope = step = 0.0
    n_vp = 0
    if n_v:
        wv = voiced.astype(np.float64)
        wv *= 1.0 / n_v
        # voiced-frame moments in one product (float64: no cancellation in the differences)
        m = an.moment_rows(n)
        m[0] = f0
        np.multiply(m[0], m[0], out=m[1])
        np.multiply(m[0], m[2], out=m[3])
        e_f, e_ff, e_t, e_tf, e_tt = (m @ wv).tolist()
        f0_mean = e_f
        f0_std = float(np.sqrt(max(e_ff - e_f * e_f, 0.0)))
        if n_v >= 3:
            slope = (e_tf - e_t * e_f) / max(e_tt - e_t * e_t, 1e-6)
        vp = voiced[1:] & voiced[:-1]
        n_vp = int(np.count_nonzero(vp))
        if n_vp:
            step = float(vp.astype(np.float32) @ np.abs(f0[1:] - f0[:-1])) / n_vp
    # onsets (frames i >= 1 that start a run) = flagged frames after the first - pairs
    v_on = (n_v - int(voiced[0]) - n_vp) / (n_sp * hop_s)
    s_on = (n_sp - int(speech[0]) - n_p) / (n * hop_s)
    out[o : o + 14] = (sd[k], d_e, mu[k + 1], sd[k + 1], mu[k + 2], sd[k + 2], f0_mean, f0_std,
                       slope, step, v_on, s_on, n_v / n_sp, n_sp / n)
    if s.n_clarity:
        out[o + 14 : o + 16] = (mu[k + 4], sd[k + 4])
    if s.n_modulation:
        out[s.n_features - s.n_modulation:] = _modulation(rows[:, :nm], speech, mu[:nm], hop_s)
    return out


_MOD_CACHE: dict[tuple[int, int, float], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _modulation_tables(n: int, nm: int, hop_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For windows of ``n`` frames, cached: the group-mean matrix (nm x groups); the real and
    imaginary rows of the DFT at the frequencies the bands hold, times a Hann window
    (2k x n: a product, cheaper than an rFFT of every bin); the band-mean matrix (bands x k,
    1/n for the power's scale; a band with no bin in a short window: the -6 of log10(1e-6))."""
    key = (n, nm, hop_s)
    t = _MOD_CACHE.get(key)
    if t is None:
        if len(_MOD_CACHE) > 64:
            _MOD_CACHE.clear()
        size = nm // MODULATION_GROUPS
        groups = np.zeros((nm, MODULATION_GROUPS), np.float32)
        for j in range(MODULATION_GROUPS):
            groups[j * size : (j + 1) * size, j] = 1.0 / size
        f = np.fft.rfftfreq(n, d=hop_s)
        keep = np.flatnonzero((f >= MODULATION_BANDS_HZ[0][0]) & (f < MODULATION_BANDS_HZ[-1][1]))
        angle = 2 * np.pi * np.outer(keep, np.arange(n)) / n
        dft = (np.vstack([np.cos(angle), -np.sin(angle)]) * np.hanning(n)).astype(np.float32)
        bands = np.zeros((len(MODULATION_BANDS_HZ), len(keep)), np.float32)
        for j, (lo, hi) in enumerate(MODULATION_BANDS_HZ):
            inside = (f[keep] >= lo) & (f[keep] < hi)
            bands[j, inside] = 1.0 / (n * max(1, np.count_nonzero(inside)))
        t = _MOD_CACHE[key] = (groups, dft, bands)
    return t


def _modulation(log_mel: np.ndarray, speech: np.ndarray, mean: np.ndarray,
                hop_s: float) -> np.ndarray:
    """Log10 power of the speech frames' log-mel envelope fluctuations: modulation bands x
    band groups, flattened band by band (see FeatureSpec.modulation). ``mean``: the speech
    frames' log-mel means. The frames that are not speech are held at that mean, so pauses
    and what fills them add nothing; a Hann window over the analysis window, the power at
    each DFT frequency, its mean over each band's frequencies."""
    n, nm = log_mel.shape
    groups, dft, bands = _modulation_tables(n, nm, hop_s)
    env = log_mel @ groups
    env -= mean @ groups
    env *= speech[:, None]
    y = dft @ env
    y *= y
    k = len(dft) // 2
    return np.log10(bands @ (y[:k] + y[k:]) + np.float32(1e-6)).ravel()


def extract_window(samples: np.ndarray, spec: FeatureSpec,
                   analyzer: FrameAnalyzer | None = None) -> tuple[np.ndarray, float]:
    """Batch path: the feature vector and speech fraction of one window of samples."""
    an = analyzer or FrameAnalyzer(spec)
    frames = an.frames(samples)
    rows = an.analyze(frames) if len(frames) else np.empty((0, an.width), np.float32)
    return window_features(rows, an)
