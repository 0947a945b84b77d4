"""Nested choice of the MLP's L2 penalty (alpha) and width by inner leave-actors-out CV.

For each outer fold of tools/evaluate.py (4 held-out actors), the 16 training actors are
split into 4 inner folds of 4 (2 male + 2 female); each candidate alpha is scored by the
clip accuracy of the cold model (classify rule; 8 classes, or the seed's 4 with
``--classes 4``) on the inner held-out actors, and
the best one is the outer fold's choice (``--hidden`` adds widths to the grid). The held-out actors of the outer fold are never
used. With ``--final`` the same inner CV runs once on all 20 actors (the shipped model's
choice).

    python tools/select_hparams.py [--alphas 0.3,1,3] [--hidden 256] [--classes 4] [--final]
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
from tools import evaluate as ev  # noqa: E402
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alphas", default="0.3,1,3")
    ap.add_argument("--hidden", default="256", help="comma-separated hidden-layer widths")
    ap.add_argument("--final", action="store_true", help="inner CV on all 20 actors only")
    ap.add_argument("--classes", choices=("8", "4"), default="8",
                    help="8 emotions, or the seed's 4 (calm, happy, fearful, disgust)")
    ap.add_argument("--outer", default=None, help="only these outer folds (1-based, e.g. 1,2)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    clips = ds.list_clips()
    tab = tr.default_table(clips, FeatureSpec(), tr.DEFAULT_AUG)
    alphas = [float(a) for a in args.alphas.split(",")]
    widths = [int(h) for h in args.hidden.split(",")]
    grid = [(h, a) for h in widths for a in alphas]
    outer = [[]] if args.final else ev.FOLDS
    if args.outer and not args.final:
        outer = [ev.FOLDS[int(k) - 1] for k in args.outer.split(",")]
    out = []
    for test in outer:
        actors = [a for a in range(1, 21) if a not in test]
        scores = {f"{h}:{a:g}": inner_score(tab, clips, actors, {
            **tr.DEFAULT_MLP, "hidden_layer_sizes": (h,), "alpha": a},
            classes=ds.EMOTIONS if args.classes == "8" else ds.SEED4) for h, a in grid}
        best = max(scores, key=scores.get)
        out.append({"outer_test": test, "inner_acc": scores, "best": best})
        print(json.dumps(out[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
