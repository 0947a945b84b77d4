"""Room-like augmentation reflecting a device in a real room.

A :class:`Room` is one device's acoustic setting, fixed for all clips it hears: additive
noise (white, pink or brown) at SNR 5-30 dB against the speech level, gain +-12 dB and, with
probability 0.7, a small synthetic reverberation (exponentially decaying Gaussian-noise
impulse response, RT60 0.2-0.6 s). Training uses one room per (actor, copy), so an
augmented copy of an actor is a plausible "device" for adaptation training too.

:func:`speed` is speaker perturbation: resampling by a factor near 1 shifts pitch and
formants (and tempo), so a speed-perturbed copy of an actor is a plausible new speaker;
:data:`DEFAULT_WARPS` moves the formants alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VERSION = 3
SR = 16000
DEFAULT_WARPS = ((1.0, 0.85), (1.0, 0.92), (1.0, 1.08), (1.0, 1.15),
                 (0.9, 0.92), (0.9, 1.08), (1.1, 0.92), (1.1, 1.08))
"""Vocal tract length perturbation (Jaitly and Hinton, 2013), the training recipe's: one copy
per (speed, warp), the clip at that speed (:func:`speed`; 1: as it is) analysed with mel filters
warped by that factor (``aerd.filterbanks.vtlp_warp``). The formants move apart from pitch and
tempo, which the speed copies move together."""


@dataclass(frozen=True)
class Room:
    ir: np.ndarray | None
    snr_db: float
    noise_kind: int
    gain_db: float


def make_room(rng: np.random.Generator) -> Room:
    ir = None
    if rng.random() < 0.7:
        rt60 = float(rng.uniform(0.2, 0.6))
        n = int(rt60 * SR)
        t = np.arange(n) / SR
        ir = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # -60 dB at rt60
        ir[: int(0.002 * SR)] = 0.0
        ir[0] = 1.0 / max(0.3, float(rng.uniform(0.3, 1.0)))  # direct-to-reverberant ratio
        ir /= np.sqrt(np.sum(ir**2))
    return Room(ir, float(rng.uniform(5.0, 30.0)), int(rng.integers(3)),
                float(rng.uniform(-12.0, 12.0)))


def noise(n: int, kind: int, rng: np.random.Generator) -> np.ndarray:
    """White (0), pink (1) or brown (2) noise, unit RMS."""
    w = rng.standard_normal(n)
    if kind:
        spec = np.fft.rfft(w)
        spec /= np.maximum(np.arange(len(spec)), 1.0) ** (0.5 * kind)
        w = np.fft.irfft(spec, n)
    return w / (np.sqrt(np.mean(w**2)) + 1e-12)


def apply_room(y: np.ndarray, room: Room, rng: np.random.Generator) -> np.ndarray:
    out = y.astype(np.float64)
    if room.ir is not None:
        n = len(out) + len(room.ir)
        out = np.fft.irfft(np.fft.rfft(out, n) * np.fft.rfft(room.ir, n), n)[: len(y)]
    # SNR against the speech power (mean power of the loudest half of 10 ms frames)
    fr = out[: len(out) // 160 * 160].reshape(-1, 160)
    p = np.sort(np.mean(fr**2, axis=1))[len(fr) // 2 :].mean()
    out = out + noise(len(out), room.noise_kind, rng) * np.sqrt(p / 10 ** (room.snr_db / 10))
    out *= 10 ** (room.gain_db / 20)
    peak = np.max(np.abs(out))
    if peak > 0.99:
        out *= 0.99 / peak
    return out.astype(np.float32)


def speed(y: np.ndarray, factor: float) -> np.ndarray:
    """Speed perturbation (a new "speaker"): ``y`` played ``factor`` times faster, resampled
    with soxr (HQ) back to 16 kHz. Pitch and formants scale by ``factor`` (a vocal-tract-
    length change of 1/factor) and the tempo with them, as in Ko et al. (2015), "Audio
    augmentation for speech recognition"."""
    import soxr

    if factor == 1.0:
        return y
    return soxr.resample(y, int(round(SR * factor)), SR).astype(np.float32)


def augment(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random room-like copy of ``y`` (float32 mono 16 kHz) in a fresh random room."""
    return apply_room(y, make_room(rng), rng)
