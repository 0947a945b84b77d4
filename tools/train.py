"""Train aerd's emotion models on RAVDESS speech and export ONNX bundles to models/.

Bundles: ``seed180`` (the seed prototype's recipe: seed180 features of each whole clip,
StandardScaler + MLP(300)) and ``default`` (rich features on daemon-like 3 s / 0.5 s windows
plus whole clips, room-like augmentation and speed perturbation (speaker perturbation), and a
second graph for per-device adaptation).

Features come only from aerd.features / aerd.stream (tools/dataset.py), never librosa.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from aerd.cliparser import WHOLE_FROM_1  # noqa: E402
from aerd.featurespec import FeatureSpec  # noqa: E402
from tools import dataset as ds  # noqa: E402
from tools import augment  # noqa: E402
from tools import evalkit as ek  # noqa: E402
from tools.mixes import mix_list  # noqa: E402
from tools.onnx_mlp import compact_mlp, quantize_int8  # noqa: E402

WINDOW_S, HOP_S, MIN_AUDIO_S = 3.0, 0.5, 1.0
DEFAULT_AUG = 1
# speaker perturbation: one speed-perturbed copy per factor (tools/augment.py: speed)
DEFAULT_SPEEDS = (0.9, 1.1)
DEFAULT_WARPS = augment.DEFAULT_WARPS
MODELS = REPO / "models"

SEED_MLP = dict(hidden_layer_sizes=(300,), alpha=0.01, batch_size=256, learning_rate="adaptive",
                max_iter=500)
# the default model's MLP; width and alpha (report.GRID8: 128/256/512 x 0.3/1/3/10) chosen
# together by inner leave-actors-out CV on actors 1-20 (tools/select_hparams.py --hidden
# 128,256,512 --alphas 0.3,1,3,10 --final; the evaluation chooses them per outer fold the
# same way, --fold-alpha / --fold-hidden)
DEFAULT_MLP = dict(hidden_layer_sizes=(256,), alpha=3.0, batch_size=256, learning_rate_init=1e-3,
                   max_iter=200)


def mlp_settings(hidden: int, alpha: float) -> dict[str, Any]:
    """DEFAULT_MLP with one hidden layer of ``hidden`` units and L2 penalty ``alpha``."""
    return {**DEFAULT_MLP, "hidden_layer_sizes": (hidden,), "alpha": alpha}


def make_pipeline(mlp: dict[str, Any], seed: int = 0) -> Pipeline:
    return Pipeline([("scaler", StandardScaler()),
                     ("clf", MLPClassifier(random_state=seed, **mlp))])


def fit(pipe: Pipeline, X: np.ndarray, y: np.ndarray) -> Pipeline:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe.fit(X, y)
    return pipe


def export_onnx(pipe: Pipeline, n_features: int, fold_scaler: bool = True) -> bytes:
    """ONNX bytes: float32 input ``features`` [None, n], output ``probabilities`` (n, labels).

    The skl2onnx graph, compacted for single-row runs (tools/onnx_mlp.py: scaler folded into
    the first layer, label branch dropped)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    clf = pipe.steps[-1][1]
    onx = convert_sklearn(pipe, initial_types=[("features", FloatTensorType([None, n_features]))],
                          options={id(clf): {"zipmap": False}}, target_opset=17)
    return compact_mlp(onx, fold_scaler=fold_scaler).SerializeToString()


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


def adaptation_table(onnx_name: str, ablob: bytes, adapt: dict[str, Any],
                     rstd: np.ndarray) -> dict[str, Any]:
    """A card's ``adaptation``: the adaptation graph's file and the normaliser's parameters."""
    return {
        "onnx": onnx_name, "onnx_sha256": sha256(ablob),
        "method": "per-device running mean/variance normaliser (aerd.adapt.FeatureNormalizer) "
                  "of speech windows (speech >= 0.2), shrunk toward the population statistics "
                  "(prior_mean, ref_std) with weight prior_count windows; before warm-up use "
                  "the cold graph",
        **{k: v for k, v in adapt.items() if k != "prior_mean"},
        "ref_std": [round(float(v), 6) for v in rstd],
        "prior_mean": [round(float(v), 6) for v in adapt.get("prior_mean", [])]}


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
    card["adaptation"] = {}  # none: the seed recipe has no per-device adaptation graph
    return write_bundle("seed180", export_onnx(pipe, spec.n_features), card, MODELS)


def default_table(clips: list[ds.Clip], spec: FeatureSpec, n_aug: int,
                  speeds: tuple[float, ...] = DEFAULT_SPEEDS,
                  warps: tuple[tuple[float, float], ...] = DEFAULT_WARPS) -> ds.FeatureTable:
    return ds.extract_table(clips, spec, window_s=WINDOW_S, hop_s=HOP_S, n_aug=n_aug,
                            speeds=tuple(speeds), warps=tuple(warps))


def train_default(clips: list[ds.Clip], n_aug: int = DEFAULT_AUG, mlp: dict[str, Any] | None = None,
                  metrics: dict[str, Any] | None = None, seed: int = 0,
                  adapt: dict[str, Any] | None = None, speeds: tuple[float, ...] = DEFAULT_SPEEDS
                  ) -> tuple[Path, dict[str, list[float]]]:
    """The default bundle: cold graph + adaptation graph. Returns (card path, loss curves)."""
    from tools import evalkit as ek

    spec = FeatureSpec()
    mlp = mlp or DEFAULT_MLP
    adapt = dict(adapt or ek.ADAPT)
    tab = default_table(clips, spec, n_aug, speeds)
    y_clip = ek.labels_of(clips, ds.EMOTIONS)
    actors = sorted({c.actor for c in clips})
    X, y = ek.train_rows(tab, clips, y_clip, actors)
    pipe = fit(make_pipeline(mlp, seed), X, y)
    labels = [ds.EMOTIONS[int(k)] for k in pipe.classes_]
    rstd = ek.ref_std(tab, clips, actors)
    adapt = ek.with_prior(adapt, tab, clips, actors)
    Xa, ya = ek.adapt_rows(tab, clips, y_clip, actors, adapt, rstd, seed)
    apipe = fit(make_pipeline(mlp, seed), Xa, ya)
    assert list(apipe.classes_) == list(pipe.classes_)
    ablob = export_onnx(apipe, spec.n_features)
    card = card_base(spec, labels)
    card["training"] = training_info(
        clips, recipe="rich features of daemon-like stream windows "
        f"({WINDOW_S} s, hop {HOP_S} s) plus whole clips, clean, room-augmented "
        "(noise SNR 5-30 dB, gain +-12 dB, reverb RT60 0.2-0.6 s) and speed-perturbed "
        f"(speaker perturbation, factors {', '.join(str(f) for f in speeds)}) and "
        "VTLP-warped (mel filters warped, (speed, warp) "
        f"{', '.join(f'{f:g}/{w:g}' for f, w in DEFAULT_WARPS)}); StandardScaler + MLPClassifier",
        mlp=mlp, augmented_copies_per_clip=n_aug, speed_perturbation=list(speeds),
        vtlp=[list(w) for w in DEFAULT_WARPS],
        examples=int(len(y)),
        adaptation_examples=int(len(ya)))
    card["metrics"] = metrics or {}
    card["adaptation"] = adaptation_table("default.adapt.onnx", ablob, adapt, rstd)
    blob = export_onnx(pipe, spec.n_features)
    path = write_bundle("default", blob, card, MODELS, extra={"default.adapt.onnx": ablob})
    # the int8 variant: the same graphs through onnxruntime's dynamic quantisation
    qblob = quantize_int8(export_onnx(pipe, spec.n_features, fold_scaler=False))
    qablob = quantize_int8(export_onnx(apipe, spec.n_features, fold_scaler=False))
    qcard = {**card, "quantization": "int8 weights, dynamic activations (onnxruntime "
             "quantize_dynamic, QInt8) of the default model's two graphs; accuracy in "
             "metrics.lao int8_*",
             "adaptation": {**card["adaptation"], "onnx": "default-int8.adapt.onnx",
                            "onnx_sha256": sha256(qablob)}}
    write_bundle("default-int8", qblob, qcard, MODELS, extra={"default-int8.adapt.onnx": qablob})
    curves = {"cold graph": list(pipe.steps[-1][1].loss_curve_),
              "adaptation graph": list(apipe.steps[-1][1].loss_curve_)}
    return path, curves


def compact_metrics(result: dict[str, Any]) -> dict[str, Any]:
    """The figures stored in the card (mean/std, fractions)."""
    s = result["lao"]["summary"]
    return {"protocol": "leave-actors-out CV, 5 folds of 4 actors (2 male + 2 female), actors 1-20; "
                        "clip = mean of windows with speech >= 0.2; mean/std over folds",
            "lao": s, "seed_recipe_lao": result["seed_lao"]["summary"],
            "seed_protocol_random_75_25_4class": result["seed_protocol"]["summary"]}


def main(argv: list[str] | None = None) -> int:
    global MODELS
    ap = argparse.ArgumentParser(
        description="Train aerd's emotion models on RAVDESS speech (actors 01-20) and write "
                    "ONNX bundles (<name>.onnx + <name>.json card) to models/.")
    ds.add_data_option(ap)
    ap.add_argument("--models", default=str(MODELS), type=ek.output_dir, help="output directory (default: models/)")
    ap.add_argument("--only", choices=("seed180", "default", "all"), default="all",
                    help="which bundle(s) to train (default: all)")
    ap.add_argument("--aug", type=ek.COUNT0, default=DEFAULT_AUG,
                    help="augmented (noise/gain/reverb) copies per clip for the default model")
    ap.add_argument("--evaluate", action="store_true",
                    help="run the leave-actors-out evaluation (tools/evaluate.py) and store the "
                         "figures in the cards, figures and models/MODEL_CARD.md (slow)")
    ap.add_argument("--seed", type=ek.SEED, default=0, help="random seed (default: 0)")
    ap.add_argument("--alpha", type=ek.ALPHA, default=DEFAULT_MLP["alpha"],
                    help="MLP L2 penalty of the default model (default: %(default)s)")
    ap.add_argument("--hidden", type=WHOLE_FROM_1, default=DEFAULT_MLP["hidden_layer_sizes"][0],
                    help="hidden-layer width of the default model (default: %(default)s)")
    ap.add_argument("--fold-hidden", default=None, type=ek.widths(len(ek.FOLDS)),
                    help="comma-separated width per outer fold for --evaluate (nested choice)")
    ap.add_argument("--fold-alpha", default=None, type=ek.alphas(len(ek.FOLDS)),
                    help="comma-separated alpha per outer fold for --evaluate (nested choice "
                         "by tools/select_hparams.py); default: --alpha for every fold")
    ap.add_argument("--fold-alpha4", default=None, type=ek.alphas(len(ek.FOLDS)),
                    help="like --fold-alpha, for the seed's 4 classes (select_hparams.py --classes 4)")
    ap.add_argument("--fold-hidden4", default=None, type=ek.widths(len(ek.FOLDS)),
                    help="like --fold-hidden, for the seed's 4 classes")
    ap.add_argument("--fold-mix4", default=None, type=mix_list(len(ek.FOLDS)),
                    help="comma-separated 4-class model mix per outer fold for --evaluate "
                         "(nested choice by select_hparams.py --classes 4 --mix4; e.g. "
                         "4x3+8x3: mean of 3 seeds of the 4-class model and of 3 seeds of the "
                         "8-class model restricted to the 4 classes); default: 4 (alone)")
    args = ap.parse_args(argv)
    MODELS = Path(args.models)
    mlp = mlp_settings(args.hidden, args.alpha)
    clips = ds.clips_or_none(args.data, "train.py", folds=args.evaluate)
    if clips is None:
        return 2
    t0 = time.time()
    metrics: dict[str, Any] = {}
    if args.evaluate:
        from tools import evaluate as ev

        cfg = ev.Config(mlp=dict(mlp), n_aug=args.aug, seed=args.seed,
                        fold_alpha=args.fold_alpha, fold_hidden=args.fold_hidden,
                        fold_alpha4=args.fold_alpha4, fold_hidden4=args.fold_hidden4,
                        fold_mix4=args.fold_mix4)
        result = ev.run_all(clips, cfg, MODELS)
        ev.print_summary(result)
        (ds.CACHE_DIR / "evaluation.json").write_text(json.dumps(result, indent=1))
        metrics = compact_metrics(result)
    if args.only in ("seed180", "all"):
        p = train_seed(clips, metrics=metrics.get("seed_recipe_lao") and {
            "seed_recipe_lao": metrics["seed_recipe_lao"],
            "seed_protocol_random_75_25_4class": metrics["seed_protocol_random_75_25_4class"]},
            seed=args.seed)
        print(f"wrote {p} ({time.time() - t0:.0f} s)")
    if args.only in ("default", "all"):
        p, curves = train_default(clips, n_aug=args.aug, mlp=mlp, metrics=metrics,
                                  seed=args.seed)
        from tools.report import plot_loss

        plot_loss(curves, MODELS / "loss.png")
        print(f"wrote {p} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(ds.tool_main("train.py", main))
