"""A model card with a bad field is one ModelError naming the card and the field, never a
traceback: at start (exit 2, one line) and on reload (refused; see test_reload.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_helpers import CLIPS, REPO, run  # noqa: E402

from aerd.adaptstate import new_adapter  # noqa: E402
from aerd.errors import ModelError  # noqa: E402
from aerd.model import load_model  # noqa: E402

BASE = json.loads((REPO / "models" / "default.json").read_text())
BASE["onnx"] = str(REPO / "models" / BASE["onnx"])
FEATURES, VAD, ADAPT = BASE["features"], BASE["features"]["vad"], BASE["adaptation"]

BAD = [
    ({"min_audio_s": "abc"}, "min_audio_s"),
    ({"min_audio_s": 99.0}, "min_audio_s"),
    ({"adaptation": [1, 2]}, "'adaptation' must be a table"),
    ({"window_s": 1e7}, "window_s"),
    ({"features": {**FEATURES, "fmin": "x"}}, "features.fmin: must be a number"),
    ({"features": {**FEATURES, "f0_max": float("nan")}}, "features.f0_max: must be a number"),
    ({"features": {**FEATURES, "fmin": 10 ** 400}}, "features.fmin: must be a number"),   # was an OverflowError
    ({"features": {**FEATURES, "vad": {**VAD, "min_rise_db": 10 ** 400}}}, "features.vad.min_rise_db"),
    ({"features": {**FEATURES, "vad": {**VAD, "min_rise_db": -3}}}, "features.vad.min_rise_db"),
    ({"features": {**FEATURES, "remove_dc": 1}}, "features.remove_dc"),
    ({"features": {**FEATURES, "vad": {**VAD, "floor_db": "x"}}}, "features.vad.floor_db"),
    ({"features": {**FEATURES, "n_chroma": "x"}}, "features.n_chroma"),
    ({"features": {**FEATURES, "center": "no"}}, "features.center"),
    ({"adaptation": []}, "'adaptation' must be a table"),
    # the name makes the adaptation state's file name: a path or a NUL lost it or crashed a save
    ({"name": "emotion/v2"}, "field 'name' must be"),
    ({"name": "a\u0000b"}, "field 'name' must be"),
    ({"name": ".."}, "field 'name' must be"),
    ({"name": ""}, "field 'name' must be"),
    # a traceback, not one line: a division by zero or an integer beyond float64
    ({"features": {**FEATURES, "f0_min": 0}}, "features.f0_min"),
    ({"features": {**FEATURES, "f0_max": 0}}, "features.f0_max"),
    ({"window_s": 10 ** 400}, "window_s"),
    ({"hop_s": 10 ** 400}, "hop_s"),
    ({"features": {**FEATURES, "sample_rate": 10 ** 400}}, "features.sample_rate"),
    ({"features": {**FEATURES, "hop_length": 2 ** 63}}, "features.hop_length"),
    # accepted, and every feature vector came out NaN or meaningless
    ({"features": {**FEATURES, "vad": {**VAD, "max_flatness": -1}}}, "features.vad.max_flatness"),
    ({"features": {**FEATURES, "vad": {**VAD, "range_db": -5}}}, "features.vad.range_db"),
    ({"features": {**FEATURES, "vad": {**VAD, "floor_db": 20}}}, "features.vad.floor_db"),
    ({"features": {**FEATURES, "voicing": 1.5}}, "features.voicing"),
    ({"features": {**FEATURES, "top_db": -1}}, "features.top_db"),
    ({"features": {**FEATURES, "f0_min": 500.0}}, "features.f0_min"),   # above f0_max
    ({"features": {**FEATURES, "n_chroma": 10 ** 30}}, "features.n_chroma"),
    # it said "sha256 does not match the model card (file changed or corrupt)"
    ({"onnx_sha256": 5}, "field 'onnx_sha256'"),
]


def card_file(tmp_path, changes, name="bad"):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({**BASE, **changes}))
    return path


@pytest.mark.parametrize("changes, needle", BAD, ids=[n for _, n in BAD])
def test_bad_field_is_a_model_error_naming_it(tmp_path, changes, needle):
    path = card_file(tmp_path, changes)
    with pytest.raises(ModelError) as e:
        load_model(path)
    assert str(path) in str(e.value) and needle in str(e.value)


BAD_ADAPT = [{"ref_std": [1.0, 2.0, 3.0]}, {"std_bounds": [1.0]}, {"warmup_windows": float("inf")},
             # accepted: every adapted window came out as the same vector (-clip everywhere)
             {"clip": -1.0}, {"clip": 0},
             # accepted and truncated or read as 1
             {"warmup_windows": 2.5}, {"warmup_windows": True}, {"max_count": 2000.5},
             # a deviation of 0 divides by zero
             {"min_std": 0.0, "ref_std": [0.0] * len(ADAPT["ref_std"])},
             {"ref_std": [-1.0] * len(ADAPT["ref_std"])}, {"prior_count": True}]


@pytest.mark.parametrize("changes", BAD_ADAPT, ids=[",".join(c) for c in BAD_ADAPT])
def test_bad_adaptation_table_is_a_model_error(tmp_path, changes):
    path = card_file(tmp_path, {"adaptation": {**ADAPT, **changes}})
    model = load_model(path, adapt=True)
    with pytest.raises(ModelError, match="bad 'adaptation' table"):
        new_adapter(model.card)


OPTIONAL_ADAPT = ("warmup_windows", "max_count", "min_std", "clip", "prior_count")


@pytest.mark.parametrize("key", OPTIONAL_ADAPT)
def test_an_adaptation_table_without_an_optional_parameter_takes_its_default(tmp_path, key):
    """FeatureNormalizer.from_card has a default for each of these; the range check refused a
    card that left one out, with "'>' not supported between instances of 'NoneType' and
    'int'" (naming no key)."""
    path = card_file(tmp_path, {"adaptation": {k: v for k, v in ADAPT.items() if k != key}})
    adapter = new_adapter(load_model(path, adapt=True).card)
    defaults = {"warmup_windows": ("warmup", 30), "max_count": ("max_count", 2000),
                "min_std": ("min_std", 1e-4), "clip": ("clip", 10.0),
                "prior_count": ("prior_count", 0.0)}
    attr, value = defaults[key]
    assert getattr(adapter, attr) == value


def test_the_cli_says_it_in_one_line(tmp_path):
    path = card_file(tmp_path, {"features": {**FEATURES, "fmin": "x"}})
    for cmd in (["classify", "--model", str(path), str(CLIPS[0])],
                ["run", "--model", str(path), "--input", str(CLIPS[0]), "--fast"]):
        r = run(*cmd, timeout=60)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1, r.stderr
        assert str(path) in lines[0] and "features.fmin" in lines[0]
    path = card_file(tmp_path, {"adaptation": {**ADAPT, "ref_std": [1.0]}}, "adapt")
    r = run("classify", "--adapt", "--model", str(path), str(CLIPS[0]), timeout=60)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "ref_std" in lines[0], r.stderr


def test_a_missing_model_is_named_as_given(tmp_path):
    """--model names the file or model the user gave, not the card path derived from it."""
    with pytest.raises(ModelError, match=r"^nope: no such model file, nor a shipped model "
                                         r"\(default, default-int8, seed180\)"):
        load_model("nope")
    missing = tmp_path / "missing.onnx"
    with pytest.raises(ModelError, match=f"^{missing}: no such model file"):
        load_model(missing)
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes((REPO / "models" / "seed180.onnx").read_bytes())
    with pytest.raises(ModelError, match=f"^{lonely}: its model card {tmp_path / 'lonely.json'} "
                                         "is missing"):
        load_model(lonely)
    r = run("classify", "--model", str(missing), str(CLIPS[0]))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and str(missing) in r.stderr


def test_a_bad_adaptation_table_at_start_leaves_no_socket_file(tmp_path):
    """Refused at start (exit 2, one line) after the model loaded: nothing is left behind,
    not even the ipc:// socket file (it was bound before the adaptation state was loaded)."""
    path = card_file(tmp_path, {"adaptation": {**ADAPT, "ref_std": [1.0]}}, "adapt")
    r = run("run", "--model", str(path), "--input", str(CLIPS[0]), "--fast",
            "--endpoint", f"ipc://{tmp_path}/bad.sock", "--state-dir", str(tmp_path), timeout=60)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "ref_std" in lines[0], r.stderr
    assert not (tmp_path / "bad.sock").exists()
