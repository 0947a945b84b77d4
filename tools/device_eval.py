"""What a device hears, and what the daemon itself says: device-level checks of the evaluation
(used by tools/evaluate.py on each outer fold's models).

* Clip orders for the per-device adaptation (:func:`tools.evalkit.adapt_eval`): besides the
  default random order, :func:`emotion_blocks` (each held-out actor's clips grouped by
  emotion, the blocks in random order: a device whose speaker stays in one mood for a while)
  and :func:`only` (a device that only ever hears some emotions, e.g. calm low-arousal speech).
  The running normaliser learns the speaker's average over what the device has heard; the
  random order over RAVDESS's even mix of emotions is the friendliest case.
* :func:`daemon_stream`: the daemon's own output. Per held-out actor (one device), its clips
  in random order joined by 1.5 s of -75 dBFS white noise, written as 16-bit PCM and replayed
  through the daemon's FileSource and Pipeline (features, adaptation when on, model, and the
  Decider with the shipped decision settings: each window's own probabilities, hysteresis)
  on a bundle of the fold's two graphs. An emotion event belongs to the clip holding at least
  half of its 3 s window; a clip's decision is the argmax of the mean of its events'
  (smoothed) probabilities, and a clip without any event counts as wrong.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import soundfile as sf

from tools import dataset as ds
from tools.evalkit import build_stream, in_clip

Order = Callable[[np.ndarray, np.random.Generator], np.ndarray]
LOW_AROUSAL = ("neutral", "calm", "sad")


def emotion_blocks(clips: list[ds.Clip]) -> Order:
    """A device hears its clips grouped by emotion (blocks and clips within them shuffled)."""
    emo = np.array([c.emotion for c in clips])

    def order(ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        names = rng.permutation(sorted(set(emo[ids].tolist())))
        return np.concatenate([rng.permutation(ids[emo[ids] == e]) for e in names])

    return order


def only(emotions: tuple[str, ...], clips: list[ds.Clip]) -> Order:
    """A device that only ever hears these emotions (its other clips never reach it)."""
    emo = np.array([c.emotion for c in clips])

    def order(ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rng.permutation(ids[np.isin(emo[ids], emotions)])

    return order


def daemon_stream(cold_blob: bytes, adapt_blob: bytes, labels: list[str], params: dict[str, Any],
                  rstd: np.ndarray, actors: list[int], clips: list[ds.Clip], y_clip: np.ndarray,
                  seed: int, adapt: bool, decision: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(true, predicted) class per clip of ``actors`` from the daemon's events (see above);
    ``adapt`` as the daemon's default (on) or ``--no-adapt``; ``decision``: DecisionSettings
    (default: the shipped ones)."""
    from aerd.adaptstate import new_adapter
    from aerd.config import DecisionSettings
    from aerd.featurespec import FeatureSpec
    from aerd.model import load_model
    from aerd.pipeline import Pipeline
    from aerd.sources import FileSource
    from tools import train as tr

    spec = FeatureSpec()
    actor = np.array([c.actor for c in clips])
    yt, yp = [], []
    with tempfile.TemporaryDirectory(prefix="aerd-eval-") as tmp:
        card = tr.card_base(spec, labels)
        card["adaptation"] = tr.adaptation_table("fold.adapt.onnx", adapt_blob, params, rstd)
        path = tr.write_bundle("fold", cold_blob, card, Path(tmp),
                               extra={"fold.adapt.onnx": adapt_blob})
        model = load_model(path, adapt=adapt)
        for a in actors:
            audio, spans = build_stream(np.flatnonzero(actor == a), clips, seed * 1000 + a)
            wav = Path(tmp) / f"actor{a}.wav"
            sf.write(wav, audio, ds.SR, subtype="PCM_16")
            pipe = Pipeline(model, decision or DecisionSettings(),
                            new_adapter(model.card) if adapt else None)
            src = FileSource(wav, spec.sample_rate, fast=True)
            results = []
            try:
                while not src.ended:
                    block = src.read()
                    if block is not None:
                        results += pipe.push(block)
                results += pipe.flush()
            finally:
                src.close()
            events = [(r.window.start, r.window.end, [r.decision.probs[k] for k in labels])
                      for r in results if r.decision is not None]
            st = np.array([e[0] for e in events])
            en = np.array([e[1] for e in events])
            probs = np.array([e[2] for e in events])
            for ci, a0, a1 in spans:
                if y_clip[ci] < 0:
                    continue
                mine = in_clip(st, en, a0, a1, tr.WINDOW_S)
                yt.append(y_clip[ci])
                yp.append(int(np.argmax(probs[mine].mean(axis=0))) if mine.any() else -1)
    return np.array(yt), np.array(yp)
