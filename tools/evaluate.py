"""Evaluation of aerd's emotion models on RAVDESS speech (actors 01-20).

Protocols (all figures are mean +- std over folds / repeats):

* ``lao``: leave-actors-out cross-validation, 5 folds of 4 actors (actors 4k+1..4k+4: two
  male, two female), for all 8 emotions and for the seed's 4 (calm, happy, fearful,
  disgust). Accuracy and unweighted accuracy (UA, the mean of per-class recalls). A clip is
  scored as ``aerd classify`` does: mean of the probabilities of the clip's stream windows
  (3 s, hop 0.5 s, StreamExtractor) with speech fraction >= 0.2, argmax; a clip without such
  a window (1 of 1200; ``aerd classify`` gives it no label) by all its windows.
* ``seed``: the seed prototype's protocol: 4 classes, a random 75/25 split of clips
  (5 repeats), seed180 whole-clip features, StandardScaler + MLP(300). Reported for the
  seed recipe and for ours under the same split (optimistic: actors are in both halves).
  Also ours with the daemon's adaptation: every actor's rows are normalised by the per-device
  normaliser after it has heard that actor's training clips (speech windows, labels unused;
  population statistics from the training clips too), the seed's MLP trained on the
  normalised training rows; the test clips are never heard before they are classified.
* ``stream``: per fold, the held-out clips (random order) joined by 1.5 s of low-level noise
  (-75 dBFS white) into one stream run through StreamExtractor (1600-sample chunks) and the
  fold model exported to ONNX (onnxruntime). A window belongs to a clip when at least half
  the window (>= 1.5 s) lies inside the clip's span (a window can then never belong to two
  clips); the clip's decision is the mean of its windows with speech >= 0.2 (all its windows
  if none; the window overlapping it most if it has none), argmax. Compared with the same
  ONNX model on the clips one by one.
* ``device``: tools/device_eval.py: adaptation when a device hears its clips grouped by
  emotion, or only low-arousal ones (neutral, calm, sad); and the daemon's own events (its
  FileSource, Pipeline and Decider on a bundle of the fold's graphs, one stream per held-out
  actor, adaptation off and on).
* ``adapt``: per-device adaptation (aerd/adapt.py). Each held-out actor is one device
  hearing its 60 clips in a random order; the normaliser is updated with each speech window
  (speech >= 0.2) as it arrives, and that window is classified with the cold model until
  ``warmup`` windows have been seen, then with the adaptation graph on normalised
  features (running statistics shrunk toward the training population's, ``prior_count``;
  the population mean is taken from the fold's training actors only). Never transductive: only windows already heard are in the statistics. Scored
  over all 60 clips (including the cold start) and over post-warm-up clips alone.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from aerd.featurespec import FeatureSpec  # noqa: E402
from tools import augment  # noqa: E402
from tools import dataset as ds  # noqa: E402
from tools import device_eval  # noqa: E402
from tools import seed_eval  # noqa: E402
from aerd.cliparser import WHOLE_FROM_1  # noqa: E402
from tools.evalkit import (ADAPT, ALPHA, COUNT0, FOLDS, accuracy, adapt_eval,  # noqa: E402
                           adapt_rows, clip_scores, fmt, labels_of, onnx_predictor,
                           output_file, ref_std, stream_labels, summary, train_rows, widths,
                           with_prior)
from tools.mixes import mix_columns, mix_labels, mix_predictor, parse_mix  # noqa: E402
from tools.onnx_mlp import quantize_int8  # noqa: E402
from tools.report import markdown, plot_confusions  # noqa: E402


# --------------------------------------------------------------------------- protocols
@dataclass
class Config:
    mlp: dict[str, Any]
    n_aug: int = 2
    seed: int = 0
    adapt: dict[str, Any] = field(default_factory=lambda: dict(ADAPT))
    adapt_mlp: dict[str, Any] | None = None
    speeds: tuple[float, ...] = (0.9, 1.1)
    warps: tuple[tuple[float, float], ...] = augment.DEFAULT_WARPS
    """VTLP copies, (speed, warp) each (tools/augment.py)."""
    fold_alpha: list[float] | None = None
    """MLP alpha per outer fold (nested choice, tools/select_hparams.py); None: mlp's."""
    fold_hidden: list[int] | None = None
    """MLP width per outer fold (nested choice); None: mlp's."""
    fold_alpha4: list[float] | None = None
    """For the seed's 4 classes: alpha per outer fold (``select_hparams.py --classes 4``);
    None: the 8-class choice."""
    fold_hidden4: list[int] | None = None
    """For the seed's 4 classes: width per outer fold; None: the 8-class choice."""
    fold_mix4: list[str] | None = None
    """For the seed's 4 classes: the model mix per outer fold (``parse_mix``; nested choice,
    ``select_hparams.py --classes 4 --mix4 ...``); None: the 4-class model alone ("4")."""
    stream: bool = True


def lao(clips: list[ds.Clip], cfg: Config, log=print) -> dict[str, Any]:
    """Leave-actors-out CV of the default recipe (cold, adapted, 8 and 4 classes, stream)."""
    from tools import train as tr

    spec = FeatureSpec()
    tab = tr.default_table(clips, spec, cfg.n_aug, cfg.speeds, cfg.warps)
    actor = np.array([c.actor for c in clips])
    res: dict[str, Any] = {"folds": FOLDS}
    acc: dict[str, list[float]] = {}
    cms: dict[str, np.ndarray] = {}

    def add(name: str, y: np.ndarray, p: np.ndarray, n: int) -> None:
        a, u, cm = accuracy(y, p, n)
        acc.setdefault(f"{name}_acc", []).append(a)
        acc.setdefault(f"{name}_ua", []).append(u)
        cms[name] = cms.get(name, 0) + cm

    for k, test in enumerate(FOLDS):
        t0 = time.time()
        mlp = dict(cfg.mlp) if cfg.fold_alpha is None else {**cfg.mlp, "alpha": cfg.fold_alpha[k]}
        if cfg.fold_hidden is not None:
            mlp["hidden_layer_sizes"] = (cfg.fold_hidden[k],)
        train = [a for a in range(1, 21) if a not in test and a in set(actor)]
        test_ids = np.flatnonzero(np.isin(actor, test))
        mlp4 = dict(mlp)
        if cfg.fold_alpha4 is not None:
            mlp4["alpha"] = cfg.fold_alpha4[k]
        if cfg.fold_hidden4 is not None:
            mlp4["hidden_layer_sizes"] = (cfg.fold_hidden4[k],)
        rstd = ref_std(tab, clips, train)
        params = with_prior(cfg.adapt, tab, clips, train)
        fitted: dict[tuple[str, int], tuple[Any, Any]] = {}  # (kind, seed): (cold, adapted)

        def member(kind: str, seed: int) -> tuple[Any, Any]:
            if (kind, seed) not in fitted:
                m, ym = (mlp if kind == "8" else mlp4), mix_labels(clips, kind)
                X, y = train_rows(tab, clips, ym, train)
                Xa, ya = adapt_rows(tab, clips, ym, train, params, rstd, cfg.seed)
                fitted[(kind, seed)] = (tr.fit(tr.make_pipeline(m, seed), X, y),
                                        tr.fit(tr.make_pipeline(cfg.adapt_mlp or m, seed), Xa, ya))
            return fitted[(kind, seed)]

        def q(p: Any) -> Callable:
            return onnx_predictor(quantize_int8(tr.export_onnx(p, spec.n_features, False)))

        mix = parse_mix(cfg.fold_mix4[k]) if cfg.fold_mix4 is not None else [("4", 1)]
        for classes, tag in ((ds.EMOTIONS, "8"), (ds.SEED4, "4")):
            yc = labels_of(clips, classes)
            ids = test_ids[yc[test_ids] >= 0]
            pipe, apipe = member(tag, cfg.seed)
            cold, adapted = pipe.predict_proba, apipe.predict_proba
            parts = None
            if tag == "4" and mix != [("4", 1)]:
                parts = [[(kind, cfg.seed + i) for i in range(n)] for kind, n in mix]
                cold = mix_predictor([[(member(*m)[0].predict_proba, mix_columns(m[0]))
                                       for m in part] for part in parts])
                adapted = mix_predictor([[(member(*m)[1].predict_proba, mix_columns(m[0]))
                                          for m in part] for part in parts])
            add(f"cold{tag}", yc[ids], clip_scores(cold, tab, ids).argmax(1), len(classes))
            yt, pc, pa, warm = adapt_eval(cold, adapted, tab, clips, yc, test,
                                          params, rstd, cfg.seed)
            add(f"adapt{tag}", yt, pa, len(classes))
            add(f"adapt{tag}_postwarmup", yt[warm], pa[warm], len(classes))
            add(f"cold{tag}_postwarmup", yt[warm], pc[warm], len(classes))
            # the int8 variant: the same graphs through onnxruntime's dynamic quantisation
            if parts is None:
                q_cold, q_adapt = q(pipe), q(apipe)
            else:
                q_cold = mix_predictor([[(q(member(*m)[0]), mix_columns(m[0])) for m in part]
                                        for part in parts])
                q_adapt = mix_predictor([[(q(member(*m)[1]), mix_columns(m[0])) for m in part]
                                         for part in parts])
            add(f"int8_cold{tag}", yc[ids], clip_scores(q_cold, tab, ids).argmax(1), len(classes))
            yt, _, pa, _ = adapt_eval(q_cold, q_adapt, tab, clips, yc, test, params, rstd, cfg.seed)
            add(f"int8_adapt{tag}", yt, pa, len(classes))
            if cfg.n_aug and tag == "8":  # a noisy/reverberant room: first augmented copy
                add("cold8_room", yc[ids], clip_scores(cold, tab, ids, aug=1).argmax(1), 8)
                yt, pc, pa, warm = adapt_eval(cold, apipe.predict_proba, tab, clips, yc, test,
                                              params, rstd, cfg.seed, aug=1)
                add("adapt8_room", yt, pa, 8)
            if parts is None and tag == "8":   # what the device hears (device_eval.py)
                yt, _, pa, _ = adapt_eval(cold, adapted, tab, clips, yc, test, params, rstd,
                                          cfg.seed, order=device_eval.emotion_blocks(clips))
                add("adapt8_blocked", yt, pa, 8)
                yt, pc, pa, _ = adapt_eval(cold, adapted, tab, clips, yc, test, params, rstd,
                                           cfg.seed, order=device_eval.only(
                                               device_eval.LOW_AROUSAL, clips))
                add("cold8_lowarousal", yt, pc, 8)
                add("adapt8_lowarousal", yt, pa, 8)
            if cfg.stream and tag == "8":
                blob = tr.export_onnx(pipe, spec.n_features)
                run = onnx_predictor(blob)
                clip_p = clip_scores(run, tab, ids).argmax(1)
                add("onnx_clip8", yc[ids], clip_p, 8)
                add("stream8", yc[ids], stream_labels(run, ids, clips, spec, tr.WINDOW_S,
                                                      tr.HOP_S, cfg.seed + k), 8)
                ablob = tr.export_onnx(apipe, spec.n_features)
                labels = [ds.EMOTIONS[int(c)] for c in pipe.classes_]
                for on in (False, True):
                    yt, yp = device_eval.daemon_stream(blob, ablob, labels, params, rstd, test,
                                                       clips, yc, cfg.seed + k, adapt=on)
                    add("daemon8_adapted" if on else "daemon8_cold", yt, yp, 8)
        log(f"  fold {k + 1} (actors {test}): " + ", ".join(
            f"{n} {100 * v[-1]:.1f}" for n, v in acc.items() if n.endswith("_acc")
            and "postwarmup" not in n) + f"  [{time.time() - t0:.0f} s]")
    res["summary"] = {n: summary(v) for n, v in acc.items()}
    res["per_fold"] = {n: [round(x, 4) for x in v] for n, v in acc.items()}
    res["confusion"] = {n: cm.tolist() for n, cm in cms.items()}
    return res


def run_all(clips: list[ds.Clip], cfg: Config, out_dir: Path | None = None,
            log=print) -> dict[str, Any]:
    """All protocols; writes confusion.png and MODEL_CARD.md into ``out_dir`` if given."""
    t0 = time.time()
    log("leave-actors-out (default recipe, cold/adapted, stream):")
    lres = lao(clips, cfg, log)
    log(f"seed recipe, leave-actors-out ... [{time.time() - t0:.0f} s]")
    sl = seed_eval.seed_lao(clips, cfg.seed)
    log(f"seed protocol ... [{time.time() - t0:.0f} s]")
    sp = seed_eval.seed_protocol(clips, cfg)
    result = {"lao": lres, "seed_lao": sl, "seed_protocol": sp}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        cms = {k: lres["confusion"][k] for k in ("cold8", "adapt8") if k in lres["confusion"]}
        plot_confusions(cms, {"cold8": "cold model, leave-actors-out",
                              "adapt8": "adapted (per-device normaliser)"},
                        list(ds.EMOTIONS), out_dir / "confusion.png")
        (out_dir / "MODEL_CARD.md").write_text(markdown(lres, sl, sp, cfg), encoding="utf-8")
    return result


def print_summary(result: dict[str, Any], log=print) -> None:
    for part in ("lao", "seed_lao", "seed_protocol"):
        for n, v in result[part]["summary"].items():
            log(f"  {part:14s} {n:26s} {fmt(v)}")


def main(argv: list[str] | None = None) -> int:
    from tools import train as tr

    ap = argparse.ArgumentParser(description="Evaluate aerd's training recipe on RAVDESS "
                                 "(leave-actors-out CV, seed protocol, streaming, adaptation).")
    ds.add_data_option(ap)
    ap.add_argument("--aug", type=COUNT0, default=tr.DEFAULT_AUG, help="augmented copies per clip")
    ap.add_argument("--hidden", default=None, type=widths(),
                    help="MLP hidden sizes, e.g. 256 or 256,128")
    ap.add_argument("--alpha", type=ALPHA, default=None, help="MLP L2 penalty")
    ap.add_argument("--warmup", type=WHOLE_FROM_1, default=ADAPT["warmup_windows"],
                    help="adaptation warm-up (speech windows)")
    ap.add_argument("--no-stream", action="store_true", help="skip the streaming test")
    ap.add_argument("--lao-only", action="store_true", help="only leave-actors-out CV")
    ap.add_argument("--write", action="store_true",
                    help="write models/confusion.png and models/MODEL_CARD.md")
    ap.add_argument("--json", default=None, type=output_file, help="also write all results to this JSON file")
    args = ap.parse_args(argv)
    if args.lao_only and args.write:   # (the card needs every protocol's figures)
        ap.error("--write needs the whole evaluation: leave out --lao-only")
    clips = ds.clips_or_none(args.data, "evaluate.py")
    if clips is None:
        return 2
    mlp = dict(tr.DEFAULT_MLP)
    if args.hidden:
        mlp["hidden_layer_sizes"] = tuple(args.hidden)
    if args.alpha is not None:
        mlp["alpha"] = args.alpha
    cfg = Config(mlp=mlp, n_aug=args.aug, adapt={**ADAPT, "warmup_windows": args.warmup},
                 stream=not args.no_stream)
    if args.lao_only:
        result = {"lao": lao(clips, cfg)}
        for n, v in result["lao"]["summary"].items():
            print(f"  {n:26s} {fmt(v)}")
    else:
        result = run_all(clips, cfg, tr.MODELS if args.write else None)
        print_summary(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(ds.tool_main("evaluate.py", main))
