"""Train aerd's emotion models on RAVDESS speech and export ONNX bundles to models/.

Bundles: ``seed180`` (the seed prototype's recipe: seed180 features of each whole clip,
StandardScaler + MLP(300)) and ``default`` (rich features on daemon-like 3 s / 0.5 s windows
plus whole clips, room-like augmentation, and a second graph for per-device adaptation).

Features come only from aerd.features / aerd.stream (tools/dataset.py), never librosa.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from aerd.featurespec import FeatureSpec  # noqa: E402
from tools import dataset as ds  # noqa: E402

WINDOW_S, HOP_S, MIN_AUDIO_S = 3.0, 0.5, 1.0
MODELS = REPO / "models"

SEED_MLP = dict(hidden_layer_sizes=(300,), alpha=0.01, batch_size=256, learning_rate="adaptive",
                max_iter=500)
# the default model's MLP (chosen by leave-actors-out search, see tools/evaluate.py)
DEFAULT_MLP = dict(hidden_layer_sizes=(256,), alpha=0.01, batch_size=256, learning_rate_init=1e-3,
                   max_iter=200, early_stopping=False)


def make_pipeline(mlp: dict[str, Any], seed: int = 0) -> Pipeline:
    return Pipeline([("scaler", StandardScaler()),
                     ("clf", MLPClassifier(random_state=seed, **mlp))])


def fit(pipe: Pipeline, X: np.ndarray, y: np.ndarray) -> Pipeline:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe.fit(X, y)
    return pipe


def export_onnx(pipe: Pipeline, n_features: int) -> bytes:
    """ONNX bytes: float32 input ``features`` [None, n], output ``probabilities`` (n, labels)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    clf = pipe.steps[-1][1]
    onx = convert_sklearn(pipe, initial_types=[("features", FloatTensorType([None, n_features]))],
                          options={id(clf): {"zipmap": False}}, target_opset=17)
    return onx.SerializeToString()


def sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def write_bundle(name: str, blob: bytes, card: dict[str, Any], out_dir: Path = MODELS,
                 extra: dict[str, bytes] | None = None) -> Path:
    """Write ``<name>.onnx`` (+ extra graphs) and ``<name>.json``; returns the card path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for fname, b in (extra or {}).items():
        (out_dir / fname).write_bytes(b)
    (out_dir / f"{name}.onnx").write_bytes(blob)
    card = {"format": "aerd-model", "name": name, **card, "onnx": f"{name}.onnx",
            "onnx_sha256": sha256(blob)}
    path = out_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def training_info(clips: list[ds.Clip], **more: Any) -> dict[str, Any]:
    return {"dataset": ds.DATASET_NAME, "actors": sorted({c.actor for c in clips}),
            "n_clips": len(clips), "license": ds.LICENSE, "citation": ds.CITATION,
            "license_notice": "Model trained on RAVDESS; the model is distributed under "
                              "CC BY-NC-SA 4.0 (non-commercial, share-alike, attribution).",
            **more}


def card_base(spec: FeatureSpec, labels: list[str]) -> dict[str, Any]:
    return {"labels": labels, "features": spec.to_dict(), "n_features": spec.n_features,
            "window_s": WINDOW_S, "hop_s": HOP_S, "min_audio_s": MIN_AUDIO_S}


def train_seed(clips: list[ds.Clip], metrics: dict[str, Any] | None = None,
               seed: int = 0) -> Path:
    """The seed recipe: seed180 features of each whole clip, all 8 emotions."""
    spec = FeatureSpec.seed180()
    tab = ds.extract_table(clips, spec)
    y = np.array([ds.EMOTIONS.index(clips[i].emotion) for i in tab.clip])
    pipe = fit(make_pipeline(SEED_MLP, seed), tab.X, y)
    labels = [ds.EMOTIONS[int(k)] for k in pipe.classes_]
    card = card_base(spec, labels)
    card["training"] = training_info(clips, recipe="seed prototype: whole-clip seed180 features, "
                                     "StandardScaler + MLPClassifier", mlp=SEED_MLP,
                                     examples=int(len(y)))
    card["metrics"] = metrics or {}
    return write_bundle("seed180", export_onnx(pipe, spec.n_features), card)


def default_table(clips: list[ds.Clip], spec: FeatureSpec, n_aug: int) -> ds.FeatureTable:
    return ds.extract_table(clips, spec, window_s=WINDOW_S, hop_s=HOP_S, n_aug=n_aug)


def train_default(clips: list[ds.Clip], n_aug: int = 0, mlp: dict[str, Any] | None = None,
                  metrics: dict[str, Any] | None = None, seed: int = 0,
                  adaptation: tuple[bytes, dict[str, Any]] | None = None) -> Path:
    spec = FeatureSpec()
    mlp = mlp or DEFAULT_MLP
    tab = default_table(clips, spec, n_aug)
    y = np.array([ds.EMOTIONS.index(clips[i].emotion) for i in tab.clip])
    pipe = fit(make_pipeline(mlp, seed), tab.X, y)
    labels = [ds.EMOTIONS[int(k)] for k in pipe.classes_]
    card = card_base(spec, labels)
    card["training"] = training_info(
        clips, recipe="rich features of daemon-like stream windows "
        f"({WINDOW_S} s, hop {HOP_S} s) plus whole clips; StandardScaler + MLPClassifier",
        mlp=mlp, augmented_copies_per_clip=n_aug, examples=int(len(y)))
    card["metrics"] = metrics or {}
    extra = None
    if adaptation is not None:
        blob, params = adaptation
        card["adaptation"] = {"onnx": "default.adapt.onnx", "onnx_sha256": sha256(blob), **params}
        extra = {"default.adapt.onnx": blob}
    return write_bundle("default", export_onnx(pipe, spec.n_features), card, extra=extra)


def main(argv: list[str] | None = None) -> int:
    global MODELS
    ap = argparse.ArgumentParser(
        description="Train aerd's emotion models on RAVDESS speech (actors 01-20) and write "
                    "ONNX bundles (<name>.onnx + <name>.json card) to models/.")
    ap.add_argument("--data", default=str(ds.DEFAULT_DATA),
                    help="RAVDESS 16 kHz directory with Actor_XX/ folders "
                         "(default: ../shared/data/ravdess-16k relative to the repo)")
    ap.add_argument("--models", default=str(MODELS), help="output directory (default: models/)")
    ap.add_argument("--only", choices=("seed180", "default", "all"), default="all",
                    help="which bundle(s) to train (default: all)")
    ap.add_argument("--aug", type=int, default=0,
                    help="augmented (noise/gain/reverb) copies per clip for the default model")
    ap.add_argument("--evaluate", action="store_true",
                    help="run the leave-actors-out evaluation (tools/evaluate.py) and store the "
                         "figures in the cards, figures and models/MODEL_CARD.md (slow)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = ap.parse_args(argv)
    MODELS = Path(args.models)
    try:
        clips = ds.list_clips(args.data)
    except ds.DataMissing as e:
        print(f"train.py: {e} (use --data DIR)", file=sys.stderr)
        return 2
    t0 = time.time()
    if args.only in ("seed180", "all"):
        p = train_seed(clips, seed=args.seed)
        print(f"wrote {p} ({time.time() - t0:.0f} s)")
    if args.only in ("default", "all"):
        p = train_default(clips, n_aug=args.aug, seed=args.seed)
        print(f"wrote {p} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
