"""Nested choice of the MLP's L2 penalty (alpha) and width by inner leave-actors-out CV.

For each outer fold of tools/evaluate.py (4 held-out actors), the 16 training actors are
split into 4 inner folds of 4 (2 male + 2 female); each candidate alpha is scored by the
clip accuracy of the cold model (classify rule; 8 classes, or the seed's 4 with
``--classes 4``) on the inner held-out actors, and
the best one is the outer fold's choice (``--hidden`` adds widths to the grid). The held-out actors of the outer fold are never
used. With ``--final`` the same inner CV runs once on all 20 actors (the shipped model's
choice). With ``--mix4`` the candidates are instead mixes of 4-class models (the 4-class
model, several training seeds, the 8-class model restricted to the 4 classes; see
``mixes.parse_mix``), scored by the adapted (``--score adapt``) or cold clip accuracy.

    python tools/select_hparams.py [--alphas 0.3,1,3] [--hidden 256] [--classes 4] [--final]
    python tools/select_hparams.py --classes 4 --mix4 4,4+8,4x3+8x3 --fold-alpha ... \
        --fold-hidden ... --fold-alpha4 ... --fold-hidden4 ...
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from aerd.featurespec import FeatureSpec  # noqa: E402
from tools import dataset as ds  # noqa: E402
from tools import evalkit as ev  # noqa: E402
from tools import mixes  # noqa: E402
from tools import train as tr  # noqa: E402


def inner_folds(actors: list[int]) -> list[list[int]]:
    """4 folds of 2 male (odd) + 2 female (even) actors."""
    m = sorted(a for a in actors if a % 2 == 1)
    f = sorted(a for a in actors if a % 2 == 0)
    k = len(m) // 2
    return [m[2 * j : 2 * j + 2] + f[2 * j : 2 * j + 2] for j in range(k)]


def inner_score(tab: ds.FeatureTable, clips: list[ds.Clip], actors: list[int],
                mlp: dict, seed: int = 0, classes: tuple[str, ...] = ds.EMOTIONS) -> float:
    actor = np.array([c.actor for c in clips])
    yc = ev.labels_of(clips, classes)
    accs = []
    for test in inner_folds(actors):
        train = [a for a in actors if a not in test]
        X, y = ev.train_rows(tab, clips, yc, train)
        pipe = tr.fit(tr.make_pipeline(mlp, seed), X, y)
        ids = np.flatnonzero(np.isin(actor, test) & (yc >= 0))
        accs.append(float(np.mean(ev.clip_scores(pipe.predict_proba, tab, ids).argmax(1)
                                  == yc[ids])))
    return float(np.mean(accs))


def inner_mix_scores(tab: ds.FeatureTable, clips: list[ds.Clip], actors: list[int],
                     mlp8: dict, mlp4: dict, cands: list[str], seed: int = 0
                     ) -> dict[str, dict[str, float]]:
    """Inner CV of 4-class model mixes (``mixes.parse_mix``): per candidate, the mean over
    the inner folds of the cold and of the adapted clip accuracy on the seed's 4 classes
    (adaptation exactly as ``evaluate.lao`` runs it). "8" members use ``mlp8``, the others
    ``mlp4``."""
    actor = np.array([c.actor for c in clips])
    y4 = ev.labels_of(clips, ds.SEED4)
    members = {c: [[(kind, seed + i) for i in range(n)] for kind, n in mixes.parse_mix(c)]
               for c in cands}
    need = sorted({m for parts in members.values() for part in parts for m in part})
    acc: dict[str, dict[str, list[float]]] = {c: {"cold": [], "adapt": []} for c in cands}
    for test in inner_folds(actors):
        train = [a for a in actors if a not in test]
        rstd = ev.ref_std(tab, clips, train)
        params = ev.with_prior(ev.ADAPT, tab, clips, train)
        fitted = {}
        for kind, s in need:
            m, ym = (mlp8 if kind == "8" else mlp4), mixes.mix_labels(clips, kind)
            X, y = ev.train_rows(tab, clips, ym, train)
            Xa, ya = ev.adapt_rows(tab, clips, ym, train, params, rstd, seed)
            fitted[(kind, s)] = (tr.fit(tr.make_pipeline(m, s), X, y),
                                 tr.fit(tr.make_pipeline(m, s), Xa, ya))
        ids = np.flatnonzero(np.isin(actor, test) & (y4 >= 0))
        for c, parts in members.items():
            cold, adapted = (mixes.mix_predictor([[(fitted[m][g].predict_proba, mixes.mix_columns(m[0]))
                                                for m in part] for part in parts]) for g in (0, 1))
            acc[c]["cold"].append(float(np.mean(
                ev.clip_scores(cold, tab, ids).argmax(1) == y4[ids])))
            yt, _, pa, _ = ev.adapt_eval(cold, adapted, tab, clips, y4, test, params, rstd, seed)
            acc[c]["adapt"].append(float(np.mean(yt == pa)))
    return {c: {g: float(np.mean(v)) for g, v in d.items()} for c, d in acc.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alphas", default=[0.3, 1.0, 3.0], type=ev.alphas(),
                    help="comma-separated L2 penalties (default: 0.3,1,3)")
    ap.add_argument("--hidden", default=[256], type=ev.widths(),
                    help="comma-separated hidden-layer widths (default: 256)")
    ap.add_argument("--final", action="store_true", help="inner CV on all 20 actors only")
    ap.add_argument("--classes", choices=("8", "4"), default="8",
                    help="8 emotions, or the seed's 4 (calm, happy, fearful, disgust)")
    ap.add_argument("--mix4", default=None, type=mixes.mix_list(),
                    help="instead of the width/alpha grid: 4-class model mixes to choose from, "
                         "comma-separated (e.g. 4,4+8,4x3+8x3; see mixes.parse_mix), each "
                         "member with its outer fold's width/alpha (--fold-*)")
    ap.add_argument("--score", choices=("cold", "adapt"), default="adapt",
                    help="--mix4: inner score, cold or adapted clip accuracy (default: adapt)")
    for o in ("hidden", "alpha", "hidden4", "alpha4"):
        ap.add_argument(f"--fold-{o}", default=None,
                        type=(ev.widths if o.startswith("hidden") else ev.alphas)(len(ev.FOLDS)),
                        help=f"--mix4: comma-separated {o.rstrip('4')} per outer fold"
                             + (" for the 4-class members" if o.endswith("4") else
                                " for the 8-class members"))
    ap.add_argument("--outer", default=None, type=ev.number_list(int),
                    help="only these outer folds (1-based, e.g. 1,2)")
    ds.add_data_option(ap)
    ap.add_argument("--json", default=None, type=ev.output_file)
    args = ap.parse_args(argv)
    if args.outer and not all(1 <= k <= len(ev.FOLDS) for k in args.outer):
        ap.error(f"argument --outer: folds are 1 to {len(ev.FOLDS)}, got {args.outer}")
    clips = ds.clips_or_none(args.data, "select_hparams.py")
    if clips is None:
        return 2
    tab = tr.default_table(clips, FeatureSpec(), tr.DEFAULT_AUG)
    alphas, widths = args.alphas, args.hidden
    grid = [(h, a) for h in widths for a in alphas]
    outer = [[]] if args.final else ev.FOLDS
    if args.outer and not args.final:
        outer = [ev.FOLDS[k - 1] for k in args.outer]
    out = []
    if args.mix4:
        cands = args.mix4

        def fold_mlp(k: int, hs: list[int] | None, al: list[float] | None) -> dict:
            h = hs[k] if hs and k is not None else widths[0]
            a = al[k] if al and k is not None else alphas[0]
            return tr.mlp_settings(h, a)

        for test in outer:
            k = ev.FOLDS.index(test) if test else None
            actors = [a for a in range(1, 21) if a not in test]
            mlp8 = fold_mlp(k, args.fold_hidden, args.fold_alpha)
            mlp4 = fold_mlp(k, args.fold_hidden4 or args.fold_hidden,
                            args.fold_alpha4 or args.fold_alpha)
            scores = inner_mix_scores(tab, clips, actors, mlp8, mlp4, cands)
            best = max(cands, key=lambda c: scores[c][args.score])  # ties: the first listed
            out.append({"outer_test": test, "inner_acc": scores, "score": args.score,
                        "best": best})
            print(json.dumps(out[-1]), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1))
        return 0
    for test in outer:
        actors = [a for a in range(1, 21) if a not in test]
        scores = {f"{h}:{a:g}": inner_score(tab, clips, actors, tr.mlp_settings(h, a),
                                            classes=ds.EMOTIONS if args.classes == "8" else ds.SEED4)
                  for h, a in grid}
        best = max(scores, key=scores.get)
        out.append({"outer_test": test, "inner_acc": scores, "best": best})
        print(json.dumps(out[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(ds.tool_main("select_hparams.py", main))
