"""aerd.adapt.FeatureNormalizer: running statistics vs numpy, warm-up, bounds, persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aerd.adapt import FeatureNormalizer, normalise_stream


def data(n=500, d=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(loc=np.arange(d) * 3.0, scale=np.linspace(0.5, 5, d), size=(n, d))


def test_welford_matches_numpy_before_forgetting():
    x = data()
    norm = FeatureNormalizer(x.shape[1], warmup=1, max_count=10_000, std_bounds=(1e-3, 1e3))
    for row in x:
        norm.update(row)
    np.testing.assert_allclose(norm.mean, x.mean(axis=0), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(norm.var, x.var(axis=0), rtol=1e-9)
    z = norm.transform(x)
    np.testing.assert_allclose(z, (x - x.mean(0)) / x.std(0), rtol=1e-5, atol=1e-5)


def test_batch_update_equals_row_updates():
    x = data(50)
    a, b = FeatureNormalizer(6), FeatureNormalizer(6)
    a.update(x)
    for row in x:
        b.update(row)
    assert a.n == b.n == 50
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.var, b.var)


def test_forgetting_matches_exponential_average_and_tracks_change():
    m = 100
    x = data(1000)
    norm = FeatureNormalizer(6, max_count=m)
    norm.update(x[:m])
    np.testing.assert_allclose(norm.mean, x[:m].mean(0), rtol=1e-10)
    # afterwards: exponential average with rate 1/m
    mean, var = x[:m].mean(0), x[:m].var(0)
    for row in x[m:]:
        d = row - mean
        mean = mean + d / m
        var = (1 - 1 / m) * (var + d * d / m)
        norm.update(row)
    np.testing.assert_allclose(norm.mean, mean, rtol=1e-9)
    np.testing.assert_allclose(norm.var, var, rtol=1e-9)
    # a new room: the statistics follow within a few memories
    shifted = data(1000, seed=1) + 50.0
    norm.update(shifted)
    np.testing.assert_allclose(norm.mean, shifted[-300:].mean(0), atol=2.0)
    assert norm.n == 2000


def test_warmup():
    norm = FeatureNormalizer(3, warmup=5)
    for i in range(4):
        norm.update(np.full(3, float(i)))
        assert not norm.ready
    norm.update(np.zeros(3))
    assert norm.ready
    norm.reset()
    assert not norm.ready and norm.n == 0


def test_bounds_and_clip():
    ref = np.array([1.0, 1.0, 2.0])
    norm = FeatureNormalizer(3, warmup=1, ref_std=ref, std_bounds=(0.5, 2.0), clip=3.0)
    rng = np.random.default_rng(0)
    # dim 0 constant (var 0) -> floored at 0.5*ref; dim 1 huge -> capped at 2*ref
    x = np.column_stack([np.ones(200), rng.normal(0, 100, 200), rng.normal(0, 2, 200)])
    norm.update(x)
    s = norm.std()
    assert s[0] == pytest.approx(0.5)
    assert s[1] == pytest.approx(2.0)
    assert 1.0 <= s[2] <= 4.0
    z = norm.transform(np.array([1e6, -1e6, 0.0]))
    assert z[0] == 3.0 and z[1] == -3.0
    assert z.dtype == np.float32


def test_min_std_keeps_a_constant_feature_finite_where_ref_std_is_zero():
    """A card's ref_std may hold 0 (a feature constant over the training speakers); the
    bounds then allow a deviation of 0, and a feature the device always hears at one value
    divided 0 by 0: NaN into the model. min_std is the floor under every bound."""
    norm = FeatureNormalizer(2, warmup=1, ref_std=[0.0, 1.0], min_std=1e-3)
    norm.update(np.column_stack([np.full(50, 2.0), np.linspace(-1, 1, 50)]))
    assert norm.std()[0] == 1e-3
    z = norm.transform(np.array([[2.0, 0.0], [2.5, 0.0]]))
    assert np.isfinite(z).all() and z[0, 0] == 0.0 and z[1, 0] == norm.clip


def test_non_finite_rows_ignored_and_dim_checked():
    norm = FeatureNormalizer(2)
    norm.update(np.array([np.nan, 1.0]))
    norm.update(np.array([np.inf, 1.0]))
    assert norm.n == 0
    with pytest.raises(ValueError):
        norm.update(np.zeros(3))
    with pytest.raises(ValueError):
        norm.transform(np.zeros(3))


def test_state_round_trip_through_json():
    x = data(80)
    a = FeatureNormalizer(6, warmup=10, max_count=30)
    a.update(x[:60])
    state = json.loads(json.dumps(a.state_dict()))
    b = FeatureNormalizer(6, warmup=10, max_count=30)
    b.load_state_dict(state)
    assert b.n == a.n and b.ready
    a.update(x[60:])
    b.update(x[60:])
    np.testing.assert_array_equal(a.transform(x), b.transform(x))


def test_load_rejects_bad_state():
    norm = FeatureNormalizer(3)
    good = FeatureNormalizer(3).state_dict()
    for bad in ({}, {**good, "version": 99}, {**good, "dim": 4}, {**good, "n": -1},
                {**good, "mean": [0.0, 0.0]}, {**good, "var": [0.0, -1.0, 0.0]},
                {**good, "mean": [0.0, float("nan"), 0.0]}):
        with pytest.raises(ValueError):
            norm.load_state_dict(bad)
    assert norm.n == 0


def test_from_card_and_normalise_stream():
    card = {"warmup_windows": 3, "max_count": 50, "ref_std": [1.0, 2.0], "std_bounds": [0.1, 10],
            "min_std": 1e-3, "clip": 5.0}
    norm = FeatureNormalizer.from_card(card, 2)
    assert (norm.warmup, norm.max_count, norm.clip) == (3, 50, 5.0)
    z, ready = normalise_stream(data(10, 2), norm)
    assert ready.tolist() == [False, False] + [True] * 8
    assert z.shape == (10, 2) and np.all(np.isfinite(z))


def test_shrinkage_moves_from_population_to_device_statistics():
    prior_mean, ref = np.array([1.0, 2.0]), np.array([0.6, 4.0])
    x = data(400, 2, seed=3)
    norm = FeatureNormalizer(2, warmup=1, ref_std=ref, std_bounds=(0.01, 100.0),
                             prior_mean=prior_mean, prior_count=10.0)
    # nothing heard: population statistics
    np.testing.assert_allclose(norm.transform(prior_mean + ref), [1.0, 1.0], rtol=1e-6)
    # 10 windows heard: half way (weights 10/20)
    norm.update(x[:10])
    m, v = x[:10].mean(0), x[:10].var(0)
    mean_eff, var_eff = 0.5 * m + 0.5 * prior_mean, 0.5 * v + 0.5 * ref**2
    np.testing.assert_allclose(norm.std(), np.sqrt(var_eff), rtol=1e-9)
    np.testing.assert_allclose(norm.transform(x[0]), (x[0] - mean_eff) / np.sqrt(var_eff),
                               rtol=1e-5)
    # many windows: the device's own statistics dominate
    norm.update(x[10:])
    z = norm.transform(x)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=0.1)
    np.testing.assert_allclose(z.std(0), 1.0, atol=0.05)


def test_shrinkage_off_by_default_and_from_card():
    x = data(20, 2)
    a = FeatureNormalizer(2, warmup=1)
    b = FeatureNormalizer.from_card({"warmup_windows": 1, "prior_count": 0.0}, 2)
    a.update(x)
    b.update(x)
    np.testing.assert_array_equal(a.transform(x), b.transform(x))
    c = FeatureNormalizer.from_card({"warmup_windows": 1, "prior_count": 5,
                                     "prior_mean": [1.0, 2.0], "ref_std": [1.0, 1.0]}, 2)
    assert c.prior_count == 5.0 and c.prior_mean.tolist() == [1.0, 2.0]
    with pytest.raises(ValueError):
        FeatureNormalizer(2, prior_count=3.0)  # no prior mean
    with pytest.raises(ValueError):
        FeatureNormalizer(2, prior_count=-1.0, prior_mean=[0.0, 0.0])
    with pytest.raises(ValueError):
        FeatureNormalizer(2, prior_count=1.0, prior_mean=[0.0])


def test_min_speech_0_does_not_teach_the_adaptation_silence(data_dir):
    """[decision] min_speech = 0 (an event for every window; `classify --min-speech 0`) fed
    every window to the statistics: a quiet night (here 200 s of room noise at -70 dBFS)
    replaced the device's speech statistics with those of near-constant features of windows
    without speech (400 of them), and the next speech was normalised with those. The
    statistics learn from the windows the adaptation was trained on (speech >= 0.2) whatever
    the events' threshold; the events still come for every window, adapted."""
    import soundfile as sf

    from aerd.adaptstate import new_adapter
    from aerd.config import DecisionSettings
    from aerd.model import load_model
    from aerd.pipeline import Pipeline

    model = load_model(None, adapt=True)
    speech = [sf.read(f, dtype="float32")[0] for f in sorted(data_dir.glob("*.flac"))]
    noise = (3e-4 * np.random.default_rng(0).normal(size=200 * 16000)).astype(np.float32)
    adapters, results = [], []
    for min_speech in (0.2, 0.0):
        adapter = new_adapter(model.card)
        pipe = Pipeline(model, DecisionSettings(min_speech=min_speech), adapter)
        for x in (*speech, noise):
            results.append(pipe.push(x))
        adapters.append(adapter)
    night = results[-1]   # the 0.0 pipeline's windows of noise
    assert adapters[0].ready and len(night) > 350
    # learned from exactly the windows of enough speech (not from every window, as both
    # pipelines would agree on too)
    first = [r for batch in results[: len(speech) + 1] for r in batch]
    assert adapters[0].n == sum(r.window.speech >= 0.2 for r in first) < len(first)
    assert adapters[1].n == adapters[0].n
    np.testing.assert_array_equal(adapters[1].mean, adapters[0].mean)
    np.testing.assert_array_equal(adapters[1].var, adapters[0].var)
    assert all(r.decision is not None and r.adapted for r in night)
