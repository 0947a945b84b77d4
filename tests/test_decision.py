"""Decider: speech gate, smoothing over recent speech windows, hysteresis, reset after silence."""

from __future__ import annotations

import numpy as np
import pytest

from aerd.config import DecisionSettings
from aerd.decision import Decider, round3, round4

LABELS = ("angry", "happy", "sad")


def decider(**kw):
    base = dict(min_speech=0.5, smoothing=3, hysteresis=0.1, reset_after=3)
    base.update(kw)
    return Decider(LABELS, DecisionSettings(**base))


def test_speech_gate():
    d = decider()
    assert d.update(0.49, [1, 0, 0]) is None
    assert d.update(0.0, [1, 0, 0]) is None
    out = d.update(0.5, [0, 1, 0])          # at the threshold counts as speech
    assert out.label == "happy"
    # gated windows did not enter the smoothing
    assert out.probs == {"angry": 0.0, "happy": 1.0, "sad": 0.0}


def test_smoothing_is_mean_of_last_n():
    d = decider(smoothing=3, hysteresis=0.0)
    seq = [[0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.9, 0.05, 0.05]]
    for i, p in enumerate(seq):
        out = d.update(1.0, np.array(p))
        exp = np.mean(seq[max(0, i - 2) : i + 1], axis=0)
        assert [out.probs[k] for k in LABELS] == pytest.approx(list(exp), abs=1e-4)
        assert out.label == LABELS[int(np.argmax(exp))]
        assert out.confidence == pytest.approx(exp.max())


def test_hysteresis_keeps_label_until_lead_reaches_margin():
    d = decider(smoothing=1, hysteresis=0.2)
    assert d.update(1, [0.5, 0.3, 0.2]).label == "angry"
    out = d.update(1, [0.36, 0.5, 0.14])      # happy leads by 0.14 < 0.2
    assert out.label == "angry" and out.confidence == pytest.approx(0.36)
    out = d.update(1, [0.31, 0.5, 0.19])      # lead 0.19
    assert out.label == "angry"
    out = d.update(1, [0.25, 0.5, 0.25])      # lead 0.25 >= 0.2
    assert out.label == "happy" and out.confidence == pytest.approx(0.5)
    assert d.update(1, [0.45, 0.4, 0.15]).label == "happy"   # now the old label must lead
    assert d.update(1, [0.7, 0.2, 0.1]).label == "angry"


def test_a_lead_of_exactly_the_margin_switches():
    """"must beat the current one by this much": a lead equal to the margin is enough (values
    exact in binary, so the sum is no rounding matter)."""
    d = decider(smoothing=1, hysteresis=0.25)
    assert d.update(1, [0.5, 0.25, 0.25]).label == "angry"
    assert d.update(1, [0.25, 0.4375, 0.3125]).label == "angry"   # lead 0.1875 < 0.25
    assert d.update(1, [0.25, 0.5, 0.25]).label == "happy"        # lead 0.25 == 0.25


def test_no_hysteresis_follows_argmax():
    d = decider(smoothing=1, hysteresis=0.0)
    for p in ([0.2, 0.5, 0.3], [0.34, 0.33, 0.33], [0.1, 0.1, 0.8]):
        assert d.update(1, p).label == LABELS[int(np.argmax(p))]


def test_reset_after_silent_windows():
    d = decider(smoothing=3, hysteresis=0.5, reset_after=3)
    d.update(1, [1, 0, 0])
    d.update(0, [0, 0, 0])
    d.update(0, [0, 0, 0])                    # 2 silent < 3: state kept
    out = d.update(1, [0, 1, 0])
    assert out.label == "angry" and out.probs["angry"] == pytest.approx(0.5)
    for _ in range(3):                        # 3 consecutive silent windows: forget
        assert d.update(0.1, [0, 0, 0]) is None
    out = d.update(1, [0, 0, 1])
    assert out.label == "sad" and out.probs == {"angry": 0.0, "happy": 0.0, "sad": 1.0}


def test_speech_interrupts_silence_count():
    d = decider(smoothing=5, hysteresis=0.0, reset_after=2)
    d.update(1, [1, 0, 0])
    d.update(0, [0, 0, 0])
    d.update(1, [1, 0, 0])                    # resets the silence count
    d.update(0, [0, 0, 0])                    # only one silent window since
    out = d.update(1, [0, 0, 1])
    assert out.probs["angry"] == pytest.approx(2 / 3, abs=1e-4)


def test_wire_rounding_matches_round_and_passes_non_finite_through():
    rng = np.random.default_rng(0)
    xs = np.concatenate([rng.random(2000), rng.random(2000) * 1e9, [0.0, 1.0, 0.12345, 2.5e-5]])
    # equal to round() except at exact decimal ties (none among these draws but a handful)
    assert np.mean([round4(x) == round(x, 4) for x in xs]) > 0.999
    assert np.mean([round3(x) == round(x, 3) for x in xs]) > 0.999
    assert round4(0.12345678) == 0.1235 and round3(1764161234.5678) == 1764161234.568
    assert np.isnan(round4(float("nan"))) and round3(float("inf")) == float("inf")
    d = Decider(("a", "b"), DecisionSettings(smoothing=1)).update(1.0, np.array([np.nan, 1.0]))
    assert d is not None and np.isnan(d.probs["a"])   # a bad model output is reported, not raised
