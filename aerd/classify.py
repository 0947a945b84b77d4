"""`aerd classify`: whole files through the very same windows, features and model as the daemon.

A file runs through the daemon's own :class:`Pipeline` (features, adaptation if asked,
model); its result is the mean of the probabilities of its windows with speech. A file in
which no window has enough speech gets no label (``label``, ``confidence`` and ``probs``
null), as the daemon publishes no emotion event for such windows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .errors import AudioError
from .model import Model
from .config import DecisionSettings
from .pipeline import Pipeline
from .sources import FileSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileResult:
    file: str
    label: str | None
    confidence: float | None
    probs: dict[str, float] | None
    windows: int
    speech_windows: int

    def to_dict(self) -> dict:
        return {"file": self.file, "label": self.label, "confidence": self.confidence,
                "probs": self.probs, "windows": self.windows, "speech_windows": self.speech_windows}


def classify_file(path: str, model: Model, min_speech: float, adapter=None) -> FileResult:
    """Classify one file; raises AudioError naming it if it is missing, not audio, empty, too
    short or damaged (a read error part-way)."""
    card = model.card
    pipe = Pipeline(model, DecisionSettings(min_speech=min_speech), adapter)
    src = FileSource(path, card.features.sample_rate, fast=True, block_s=1.0)
    try:
        if src.duration < card.min_audio_s:
            raise AudioError(f"{path}: too short ({src.duration:.2f} s; need at least "
                             f"{card.min_audio_s:.2f} s)")
        tally = _Tally(len(card.labels), min_speech)
        while not src.ended:
            block = src.read()
            if block is not None:
                tally.add(pipe.push(block))
        if src.error:   # a damaged file: no result from part of it
            raise AudioError(f"{path}: {src.error}")
        tally.add(pipe.flush())
    finally:
        src.close()
    if not tally.windows:
        raise AudioError(f"{path}: too short after decoding")
    if not tally.speech:
        return FileResult(path, None, None, None, tally.windows, 0)
    probs = tally.total / tally.speech
    best = int(np.argmax(probs))
    return FileResult(path, card.labels[best], round(float(probs[best]), 4),
                      {lab: round(float(p), 4) for lab, p in zip(card.labels, probs)},
                      tally.windows, tally.speech)


class _Tally:
    """A file's window counts and the sum of its speech windows' probabilities, kept as the
    windows come: the windows themselves are not kept (an hour of audio is 7200 of them)."""

    def __init__(self, n_labels: int, min_speech: float):
        self.min_speech = min_speech
        self.windows = self.speech = 0
        self.total = np.zeros(n_labels)

    def add(self, results: list) -> None:
        for r in results:
            self.windows += 1
            if r.window.speech >= self.min_speech:
                self.speech += 1
                self.total += r.probs
