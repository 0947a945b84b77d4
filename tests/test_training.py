"""Training tools: ONNX export parity, shipped bundles, and (with the data set) real clips."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aerd.windowstats import extract_window  # noqa: E402
from aerd.featurespec import FeatureSpec  # noqa: E402
from aerd.model import ModelCard, load_model  # noqa: E402
from tools import dataset as ds  # noqa: E402
from tools import train as tr  # noqa: E402

MODELS = ROOT / "models"
DATA_OK = (ROOT / ".." / "shared" / "data" / "ravdess-16k").is_dir()


def _real_windows(data_dir: Path, spec: FeatureSpec | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rich stream-window features of the clips in tests/data (default spec unless given),
    with their emotion index."""
    X, y = [], []
    for p in sorted(data_dir.glob("03-01-*.flac")):
        f, _s, _t = ds.stream_windows(ds.load_audio(p), spec or FeatureSpec(), 1.0, 0.25)
        X.append(f)
        y += [int(p.name.split("-")[2]) - 1] * len(f)
    return np.concatenate(X), np.array(y)


def test_onnx_matches_sklearn_on_real_features(data_dir):
    X, y = _real_windows(data_dir)
    assert len(set(y.tolist())) >= 2 and len(X) >= 20
    pipe = tr.fit(tr.make_pipeline(dict(hidden_layer_sizes=(16,), alpha=0.01, max_iter=60)), X, y)
    from tools.evalkit import onnx_predictor

    p_onnx = onnx_predictor(tr.export_onnx(pipe, X.shape[1]))(X)
    p_skl = pipe.predict_proba(X)
    assert p_onnx.shape == p_skl.shape == (len(X), len(pipe.classes_))
    assert np.max(np.abs(p_onnx - p_skl)) <= 1e-4


def test_export_writes_a_loadable_bundle(tmp_path, data_dir):
    X, y = _real_windows(data_dir)
    pipe = tr.fit(tr.make_pipeline(dict(hidden_layer_sizes=(8,), max_iter=20)), X, y)
    spec = FeatureSpec()
    labels = [ds.EMOTIONS[int(k)] for k in pipe.classes_]
    card = {**tr.card_base(spec, labels), "training": {}, "metrics": {}, "adaptation": {}}
    path = tr.write_bundle("tiny", tr.export_onnx(pipe, spec.n_features), card, tmp_path)
    m = load_model(path)
    assert m.card.labels == tuple(labels)
    np.testing.assert_allclose(m.predict(X), pipe.predict_proba(X), atol=1e-4)


@pytest.mark.parametrize("name", ["default", "default-int8", "seed180"])
def test_shipped_bundle_card_is_consistent(name):
    path = MODELS / f"{name}.json"
    raw = json.loads(path.read_text())
    card = ModelCard.load(path)
    m = load_model(path)
    assert m.id.startswith(f"{name}@")
    assert raw["format"] == "aerd-model" and raw["name"] == name
    assert raw["onnx"] == f"{name}.onnx"
    assert raw["n_features"] == card.features.n_features
    assert (raw["window_s"], raw["hop_s"]) == (3.0, 0.5)
    assert set(raw["labels"]) == set(ds.EMOTIONS)
    assert raw["features"]["set"] == ("seed180" if name == "seed180" else "rich")
    assert raw["training"]["license"] == "CC BY-NC-SA 4.0"
    assert "e0196391" in raw["training"]["citation"]
    assert max(raw["training"]["actors"]) <= 20
    assert isinstance(raw["metrics"], dict)
    assert (MODELS / raw["onnx"]).stat().st_size <= 1_000_000
    p = m.predict(np.zeros((3, card.features.n_features), np.float32))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)


def test_int8_variant_agrees_with_default(data_dir):
    """The int8 bundle is the default's two graphs quantised: same card, nearly the same output."""
    d, q = load_model("default", adapt=True), load_model("default-int8", adapt=True)
    X, _ = _real_windows(data_dir, d.card.features)
    assert q.card.features == d.card.features and q.card.labels == d.card.labels
    assert q.card.raw["adaptation"]["ref_std"] == d.card.raw["adaptation"]["ref_std"]
    assert "int8" in q.card.raw["quantization"]
    from aerd.adapt import FeatureNormalizer

    norm = FeatureNormalizer.from_card(d.card.adaptation, d.card.features.n_features)
    # bounds from the shipped graphs (largest probability change per window on 1375 windows
    # of 120 RAVDESS clips: cold median 0.04, 99th percentile 0.23, adapted 0.005 and 0.03;
    # the evaluation's clip accuracy moves by at most 0.3 points); quantising the raw
    # features' layer instead (20 points lost) moves them by far more
    for adapted, x, worst, typical in ((False, X, 0.2, 0.03), (True, norm.transform(X), 0.05, 0.01)):
        pd, pq = d.predict(x, adapted=adapted), q.predict(x, adapted=adapted)
        change = np.max(np.abs(pd - pq), axis=1)
        assert change.max() < worst and np.median(change) < typical, (adapted, change)
        assert (pd.argmax(axis=1) == pq.argmax(axis=1)).mean() >= 0.9


def test_default_adaptation_graph_matches_card():
    raw = json.loads((MODELS / "default.json").read_text())
    ad = raw["adaptation"]
    blob = (MODELS / ad["onnx"]).read_bytes()
    assert hashlib.sha256(blob).hexdigest() == ad["onnx_sha256"]
    assert len(blob) <= 1_000_000
    assert ad["warmup_windows"] >= 1 and len(ad["ref_std"]) == raw["n_features"]
    from aerd.adapt import FeatureNormalizer
    from tools.evalkit import onnx_predictor

    norm = FeatureNormalizer.from_card(ad, raw["n_features"])
    p = onnx_predictor(blob)(norm.transform(np.zeros((2, raw["n_features"]))))
    assert p.shape == (2, len(raw["labels"]))


def test_train_cli_missing_data_exits_2(capsys):
    assert tr.main(["--data", "/nonexistent/ravdess"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not found" in err[0]


@pytest.mark.dataset
@pytest.mark.skipif(not DATA_OK, reason="RAVDESS data ../shared/data/ravdess-16k is absent")
def test_default_model_classifies_real_clips():
    clips = ds.list_clips()
    m = load_model(None)
    c = m.card
    rng = np.random.default_rng(0)
    pick = [clips[i] for i in rng.choice(len(clips), 16, replace=False)]
    hits = 0
    for clip in pick:
        f, sp, _ = ds.stream_windows(ds.load_audio(clip.path), c.features, c.window_s, c.hop_s,
                                     c.min_audio_s)
        assert len(f) >= 1
        from tools.evalkit import decide

        probs = decide(m.predict(f), sp)
        hits += c.labels[int(np.argmax(probs))] == clip.emotion
    # training clips: the model must fit them far above chance (1/8)
    assert hits >= 10


@pytest.mark.dataset
@pytest.mark.skipif(not DATA_OK, reason="RAVDESS data ../shared/data/ravdess-16k is absent")
def test_seed_model_whole_clip_features():
    clips = ds.list_clips()[:8]
    m = load_model("seed180")
    X = np.stack([extract_window(ds.load_audio(c.path), m.card.features)[0] for c in clips])
    assert m.predict(X).shape == (8, 8)


def test_speed_perturbation_scales_pitch_and_length():
    from tools import augment

    sr = augment.SR
    t = np.arange(sr) / sr
    y = (0.5 * np.sin(2 * np.pi * 200.0 * t)).astype(np.float32)
    assert augment.speed(y, 1.0) is y
    for f in (0.9, 1.1):
        z = augment.speed(y, f)
        assert z.dtype == np.float32
        assert abs(len(z) - len(y) / f) <= 2
        spec = np.abs(np.fft.rfft(z * np.hanning(len(z))))
        peak = np.argmax(spec) * sr / len(z)
        assert abs(peak - 200.0 * f) < 2.0


def test_targets_lines_report_the_daemons_events_against_the_clips():
    from tools.report import targets_lines

    def s(v):
        return {"mean": v, "std": 0.0}
    lines = targets_lines({"lao": {"summary": {"cold8_acc": s(0.558), "adapt8_acc": s(0.64),
                                               "onnx_clip8_acc": s(0.558),
                                               "daemon8_cold_acc": s(0.568),
                                               "daemon8_adapted_acc": s(0.60)}},
                           "seed_protocol": {"summary": {}}})
    assert lines[0].startswith("Targets reached: 8 classes, cold 55.8 (target 55); the daemon's "
                               "events on a continuous stream vs clips one by one, 8 classes, "
                               "adaptation off: 1.0 points higher")
    assert lines[1] == ("Targets not reached: 8 classes, adapted 64.0 (target 65); the daemon's "
                        "events on a continuous stream vs clips one by one, 8 classes, "
                        "adaptation on: 4.0 points lower (target at most 3 lower).")

def test_feature_cache_misses_when_a_clip_or_the_augmentation_code_changes(tmp_path, data_dir,
                                                                            monkeypatch):
    """The cache key holds what decides the rows: a clip replaced under the same name, or an
    edit of tools/augment.py (without a VERSION bump), must not serve the old features."""
    import shutil

    from tools import augment

    monkeypatch.setattr(ds, "CACHE_DIR", tmp_path / "cache")
    src = sorted(data_dir.glob("03-01-*.flac"))
    clip = tmp_path / "data" / "Actor_01" / "03-01-05-02-01-01-01.flac"
    clip.parent.mkdir(parents=True)
    shutil.copy(src[0], clip)
    spec = FeatureSpec()
    first = ds.extract_table(ds.list_clips(tmp_path / "data"), spec, verbose=False)
    shutil.copy(src[1], clip)   # another recording under the same name
    second = ds.extract_table(ds.list_clips(tmp_path / "data"), spec, verbose=False)
    assert not np.array_equal(first.X, second.X)
    np.testing.assert_array_equal(
        second.X[0], extract_window(ds.load_audio(src[1]), spec)[0])

    clips = ds.list_clips(tmp_path / "data")
    ds.extract_table(clips, spec, n_aug=1, verbose=False)
    edited = tmp_path / "augment.py"
    edited.write_text(Path(augment.__file__).read_text() + "\n# edited\n")
    monkeypatch.setattr(augment, "__file__", str(edited))
    calls = []
    real_load = ds.load_audio
    monkeypatch.setattr(ds, "load_audio", lambda p: calls.append(p) or real_load(p))
    ds.extract_table(clips, spec, n_aug=1, verbose=False)
    assert calls, "features of the old augmentation code were served from the cache"


def test_vtlp_copies_follow_the_speed_copies_and_move_only_spectral_columns(tmp_path, data_dir,
                                                                           monkeypatch):
    """A (speed, warp) copy: the clip at that speed through mel filters warped by VTLP. Its
    rows come after the speed copies; the clean rows are the same as without it, and the
    warp moves the mel-based columns, not the pitch (computed from the spectrum itself)."""
    import shutil

    monkeypatch.setattr(ds, "CACHE_DIR", tmp_path / "cache")
    clip = tmp_path / "data" / "Actor_01" / "03-01-05-02-01-01-01.flac"
    clip.parent.mkdir(parents=True)
    shutil.copy(sorted(data_dir.glob("03-01-*.flac"))[0], clip)
    clips, spec = ds.list_clips(tmp_path / "data"), FeatureSpec()
    plain = ds.extract_table(clips, spec, window_s=3.0, speeds=(0.9,), verbose=False)
    both = ds.extract_table(clips, spec, window_s=3.0, speeds=(0.9,),
                            warps=((1.0, 1.1), (0.9, 1.1)), verbose=False)
    np.testing.assert_array_equal(both.rows(both.aug <= 1).X, plain.X)
    assert sorted(set(both.aug.tolist())) == [0, 1, 2, 3]
    clean, warped, fast_warped = (both.rows(both.aug == a).X for a in (0, 2, 3))
    assert warped.shape == clean.shape
    o = spec.n_features - 14 - spec.n_clarity - spec.n_modulation   # windowstats' layout
    pitch, mel = [o + 6, o + 7], list(range(spec.n_mels))   # pitch mean, deviation; log-mel means
    assert clean[:, o + 6].min() > 0   # voiced
    np.testing.assert_allclose(warped[:, pitch], clean[:, pitch], rtol=1e-5, atol=1e-5)
    assert np.abs(warped[:, mel] - clean[:, mel]).max() > 0.1
    assert not np.allclose(fast_warped[0], warped[0])   # the 0.9 speed under the same warp


@pytest.mark.parametrize("over,says,never", [
    ({}, "512 units, L2 alpha 3", "per outer fold"),
    ({"fold_hidden": [256, 256, 512, 512, 256], "fold_alpha": [1, 3, 1, 3, 3]},
     "chosen: 256/1, 256/3, 512/1, 512/3, 256/3", "512 units, L2 alpha 3"),
    ({"fold_alpha": [1, 3, 1, 3, 3]}, "chosen: 512/1, 512/3, 512/1, 512/3, 512/3",
     "512 units, L2 alpha 3"),
    ({"fold_hidden": [256, 256, 512, 512, 256]}, "chosen: 256/3, 256/3, 512/3, 512/3, 256/3",
     "512 units, L2 alpha 3"),
    ({"fold_hidden": [256, 256, 512, 512, 256], "fold_alpha": [1, 3, 1, 3, 3],
      "fold_alpha4": [3, 3, 3, 3, 3]}, "chosen: 256/3, 256/3, 512/3, 512/3, 256/3)", "512/3, 512/3, 512/3"),
], ids=["fixed", "both", "alpha-only", "hidden-only", "alpha4-only"])
def test_model_card_recipe_names_the_settings_each_fold_used(over, says, never):
    """The card's recipe line says which width/alpha the evaluation's folds were trained with
    (evaluate.lao: --fold-hidden/--fold-alpha each on their own, the 4-class models taking
    the 8-class fold width/alpha unless given their own)."""
    from tools.evaluate import Config
    from tools.report import markdown

    cfg = Config(mlp=tr.mlp_settings(512, 3.0), **over)
    text = markdown({"summary": {}}, {"summary": {}}, {"summary": {}}, cfg)
    recipe = next(line for line in text.splitlines() if line.startswith("Recipe:"))
    assert says in recipe and never not in recipe, recipe


def test_a_clip_too_short_for_any_window_is_named(tmp_path, data_dir, monkeypatch):
    """Clips are scored by their stream windows; a clip shorter than the first window had
    none, its score was the mean of nothing (NaN) and it counted as "neutral"."""
    import soundfile as sf

    monkeypatch.setattr(ds, "CACHE_DIR", tmp_path / "cache")
    y, sr = sf.read(sorted(data_dir.glob("03-01-*.flac"))[0], dtype="float32")
    clip = tmp_path / "data" / "Actor_01" / "03-01-05-02-01-01-01.flac"
    clip.parent.mkdir(parents=True)
    sf.write(clip, y[: sr // 2], sr)
    clips = ds.list_clips(tmp_path / "data")
    ds.extract_table(clips, FeatureSpec(), verbose=False)   # whole-clip vectors: fine
    with pytest.raises(ds.DataError, match=r"03-01-05-02-01-01-01.flac: 0.50 s of audio gives "
                                           r"no 3 s analysis window"):
        ds.extract_table(clips, FeatureSpec(), window_s=3.0, verbose=False)


def test_feature_cache_misses_when_a_feature_module_changes(tmp_path, data_dir, monkeypatch):
    """Every module whose code decides the feature values is in the cache key: an edit of
    aerd/featurespec.py (it holds the modulation features' band edges and groups) must not
    serve the old features."""
    import shutil

    monkeypatch.setattr(ds, "CACHE_DIR", tmp_path / "cache")
    clip = tmp_path / "data" / "Actor_01" / "03-01-05-02-01-01-01.flac"
    clip.parent.mkdir(parents=True)
    shutil.copy(sorted(data_dir.glob("03-01-*.flac"))[0], clip)
    repo = tmp_path / "repo"
    shutil.copytree(ds.REPO / "aerd", repo / "aerd",
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(ds, "REPO", repo)
    clips = ds.list_clips(tmp_path / "data")
    spec = FeatureSpec()
    ds.extract_table(clips, spec, verbose=False)
    calls = []
    real_load = ds.load_audio
    monkeypatch.setattr(ds, "load_audio", lambda p: calls.append(p) or real_load(p))
    ds.extract_table(clips, spec, verbose=False)
    assert not calls, "the unchanged code missed the cache"
    for module in ("featurespec.py", "windowstats.py", "features.py", "filterbanks.py"):
        with open(repo / "aerd" / module, "a") as f:
            f.write("\n# edited\n")
        calls.clear()
        ds.extract_table(clips, spec, verbose=False)
        assert calls, f"features of the old {module} were served from the cache"
