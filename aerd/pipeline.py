"""Features -> (adaptation) -> model -> decision, for one stream. No I/O of its own."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .adapt import MIN_SPEECH
from .config import DecisionSettings
from .decision import Decider, Decision
from .model import Model
from .stream import StreamExtractor, Window


@dataclass(frozen=True)
class Result:
    window: Window
    probs: np.ndarray
    decision: Decision | None
    adapted: bool


class Pipeline:
    """``push(samples)`` -> one :class:`Result` per completed window."""

    def __init__(self, model: Model, decision: DecisionSettings, adapter=None):
        self.model = model
        self.extractor = self._new_stream()
        self.decider = Decider(model.card.labels, decision)
        self.min_speech = decision.min_speech
        self.adapter = adapter
        self.windows = 0
        self.speech_windows = 0
        self.bad_windows = 0

    def _new_stream(self) -> StreamExtractor:
        card = self.model.card
        return StreamExtractor(card.features, card.window_s, card.hop_s, card.min_audio_s)

    @property
    def stream_s(self) -> float:
        """Seconds of audio the current window stream has taken in (its stream time)."""
        return self.extractor.samples_in / self.model.card.features.sample_rate

    def restart_stream(self) -> None:
        """Start a fresh window stream and decision (the input broke off: a lost microphone,
        or audio its ring dropped), so that no window joins audio from both sides of the gap
        and no label is held over it; the device's adaptation goes on. Flush the old stream
        first to score its tail."""
        self.extractor = self._new_stream()
        self.decider.reset()

    def _results(self, windows: list[Window]) -> list[Result]:
        out = []
        for w in windows:
            self.windows += 1
            adapted = False
            x = w.features
            if not np.isfinite(x).all():   # never feed NaN to the model or the adapter
                self.bad_windows += 1
                continue
            if self.adapter is not None and w.speech >= MIN_SPEECH:
                self.adapter.update(x)   # (as in training, whatever [decision] min_speech is)
            if w.speech >= self.min_speech:
                self.speech_windows += 1
                if self.adapter is not None and self.adapter.ready:
                    x = self.adapter.transform(x)
                    adapted = True
            probs = self.model.predict(x, adapted=adapted)[0]
            out.append(Result(w, probs, self.decider.update(w.speech, probs), adapted))
        return out

    def continue_stream(self, old: "Pipeline") -> None:
        """Take over ``old``'s window stream (the audio it holds, its window count and
        stream time) if both models cut and describe the audio alike, so that a reload
        drops no window; otherwise keep this pipeline's own, fresh stream."""
        a, b = old.model.card, self.model.card
        if (a.features, a.window_s, a.hop_s, a.min_audio_s) == \
                (b.features, b.window_s, b.hop_s, b.min_audio_s):
            self.extractor = old.extractor

    def push(self, samples: np.ndarray) -> list[Result]:
        return self._results(self.extractor.push(samples))

    def flush(self) -> list[Result]:
        return self._results(self.extractor.flush())
