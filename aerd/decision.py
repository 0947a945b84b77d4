"""Decision stage: speech gate, probability smoothing and label hysteresis.

Plain object, no I/O: ``update(speech_fraction, probs)`` -> a :class:`Decision` or None.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from .config import DecisionSettings


def _rounded(x: float, scale: float) -> float:
    """``x`` to 1/``scale`` steps for the wire (the nearest float to the same decimal as
    ``round`` gives, ties aside), several times cheaper than ``round``; NaN and infinities
    pass through unchanged, as with ``round``."""
    try:
        return math.floor(x * scale + 0.5) / scale
    except (ValueError, OverflowError):
        return x


def round4(x: float) -> float:
    """``x`` to 4 decimals (probabilities, confidence)."""
    return _rounded(x, 10000.0)


def round3(x: float) -> float:
    """``x`` to 3 decimals (times in seconds, speech fraction)."""
    return _rounded(x, 1000.0)


@dataclass(frozen=True)
class Decision:
    label: str
    confidence: float
    probs: dict[str, float]


class Decider:
    """Skips windows without enough speech, averages the last ``smoothing`` speech windows'
    probabilities and only switches label when the new one leads by ``hysteresis``."""

    def __init__(self, labels: tuple[str, ...], settings: DecisionSettings):
        self.labels = labels
        self.s = settings
        self._recent: deque[np.ndarray] = deque(maxlen=settings.smoothing)
        self._label: int | None = None
        self._silent = 0

    def reset(self) -> None:
        self._recent.clear()
        self._label = None
        self._silent = 0

    def update(self, speech: float, probs: np.ndarray) -> Decision | None:
        if speech < self.s.min_speech:
            self._silent += 1
            if self._silent >= self.s.reset_after:
                self.reset()
            return None
        self._silent = 0
        # a few short vectors: plain Python floats are cheaper than numpy arrays here
        self._recent.append(np.asarray(probs, dtype=np.float64).tolist())
        n = len(self._recent)
        avg = [sum(col) / n for col in zip(*self._recent)]
        best = max(range(len(avg)), key=avg.__getitem__)
        if self._label is None or avg[best] >= avg[self._label] + self.s.hysteresis:
            self._label = best
        return Decision(self.labels[self._label], avg[self._label],
                        {lab: round4(p) for lab, p in zip(self.labels, avg)})
