"""`aerd classify`: whole files through the very same windows, features and model as the daemon.

A file's result is the mean of the probabilities of its windows with speech (all of its
windows if none has enough speech).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .errors import AudioError
from .model import Model
from .sources import FileSource
from .stream import StreamExtractor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileResult:
    file: str
    label: str
    confidence: float
    probs: dict[str, float]
    windows: int
    speech_windows: int

    def to_dict(self) -> dict:
        return {"file": self.file, "label": self.label, "confidence": self.confidence,
                "probs": self.probs, "windows": self.windows, "speech_windows": self.speech_windows}


def classify_file(path: str, model: Model, min_speech: float, adapter=None) -> FileResult:
    """Classify one file; raises AudioError naming it if it is missing, not audio, empty or too short."""
    card = model.card
    spec = card.features
    src = FileSource(path, spec.sample_rate, fast=True, block_s=1.0)
    try:
        if src.duration < card.min_audio_s:
            raise AudioError(f"{path}: too short ({src.duration:.2f} s; need at least "
                             f"{card.min_audio_s:.2f} s)")
        ext = StreamExtractor(spec, card.window_s, card.hop_s, card.min_audio_s)
        windows = []
        while not src.ended:
            block = src.read()
            if block is not None:
                windows += ext.push(block)
        windows += ext.flush()
    finally:
        src.close()
    if not windows:
        raise AudioError(f"{path}: too short after decoding")
    speech = [w for w in windows if w.speech >= min_speech]
    rows = []
    for w in speech or windows:
        x, adapted = w.features, False
        if adapter is not None and w.speech >= min_speech:
            adapter.update(x)
            if adapter.ready:
                x, adapted = adapter.transform(x), True
        rows.append(model.predict(x, adapted=adapted)[0])
    probs = np.mean(rows, axis=0)
    best = int(np.argmax(probs))
    return FileResult(path, card.labels[best], round(float(probs[best]), 4),
                      {lab: round(float(p), 4) for lab, p in zip(card.labels, probs)},
                      len(windows), len(speech))
