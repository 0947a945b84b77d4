"""Pipeline (the shipped model, real clips): the counts the status events report, and
windows whose features are not finite kept from the model, the adaptation and the events."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from aerd.adaptstate import new_adapter
from aerd.config import DecisionSettings
from aerd.model import load_model
from aerd.pipeline import Pipeline

SR = 16000


@pytest.fixture(scope="module")
def model():
    return load_model(None, adapt=True)


@pytest.fixture(scope="module")
def speech(data_dir):
    """The test clips one after another, with 2 s of silence between them (~18 s)."""
    parts = []
    for f in sorted(data_dir.glob("*.flac")):
        x, sr = sf.read(f, dtype="float32", always_2d=True)
        assert sr == SR
        parts += [x.mean(axis=1), np.zeros(2 * SR, np.float32)]
    return np.concatenate(parts)


def test_windows_and_speech_windows_count_what_the_pipeline_saw(model, speech):
    """The status events' ``windows`` and ``speech_windows``: every window, and those of at
    least [decision] min_speech (the ones that may give an event)."""
    pipe = Pipeline(model, DecisionSettings(min_speech=0.5))
    results = [r for i in range(0, len(speech), 4000) for r in pipe.push(speech[i : i + 4000])]
    loud = sum(r.window.speech >= 0.5 for r in results)
    assert pipe.windows == len(results) and pipe.speech_windows == loud
    assert 0 < loud < len(results) and pipe.bad_windows == 0
    assert [r.decision is not None for r in results] == [r.window.speech >= 0.5 for r in results]


def test_windows_of_non_finite_features_are_counted_bad_and_kept_from_the_model(model, speech):
    """A microphone that delivers NaN for 10 ms (its samples are passed on as they come;
    the file sources sanitise theirs): the windows holding them have NaN features. They are
    counted in bad_windows (the status events' ``bad_frames``), and no NaN reaches the model,
    the decision or the device's statistics; the other windows go on as without it."""
    x = speech.copy()
    x[int(2.2 * SR) : int(2.2 * SR) + 160] = np.nan   # (well inside windows 0 to 4)
    adapter = new_adapter(model.card)
    pipe = Pipeline(model, DecisionSettings(), adapter)
    results = [r for i in range(0, len(x), 4000) for r in pipe.push(x[i : i + 4000])]
    hit = [k for k in range(pipe.windows) if k * 0.5 < 2.2 < k * 0.5 + 3.0]   # 3 s, 0.5 s apart
    assert pipe.bad_windows == len(hit) == 5
    assert [r.window.index for r in results] == [k for k in range(pipe.windows) if k not in hit]
    assert all(np.isfinite(r.probs).all() for r in results)
    assert all(np.isfinite(list(r.decision.probs.values())).all()
               for r in results if r.decision is not None)
    assert np.isfinite(adapter.mean).all() and adapter.n > 0
