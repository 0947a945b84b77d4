"""How much a microphone's noise floor costs on the continuous stream (a diagnosis tool).

Per outer fold of tools/evaluate.py: the cold 8-class model of the default recipe (fold
width/alpha as given), exported to ONNX; its accuracy on the held-out clips one by one, and
on the evaluation's continuous stream of the same clips (tools/evalkit.stream_labels, same
rule) with the white noise under the gaps and clips at each requested level (-150: about
digital silence). Features come from the code in this checkout, so running it before and
after a feature change shows what the change does to noise robustness.

    python tools/noise_check.py [--noise-dbfs=-150,-75,-65] [--seed 0]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from aerd.featurespec import FeatureSpec  # noqa: E402
from tools import dataset as ds  # noqa: E402
from tools import evalkit as ek  # noqa: E402
from tools import train as tr  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--noise-dbfs", default=[-150.0, -75.0, -65.0],
                    type=ek.comma_list(ek.DBFS, "numbers of dBFS"),
                    help="white-noise levels of the stream, dBFS, as --noise-dbfs=-75,-65 "
                         "(default: -150,-75,-65)")
    ap.add_argument("--fold-alpha", default=[3.0, 3.0, 1.0, 3.0, 3.0],
                    type=ek.alphas(len(ek.FOLDS)),
                    help="alpha per outer fold (default: the shipped nested choice)")
    ap.add_argument("--fold-hidden", default=[128, 128, 256, 512, 128],
                    type=ek.widths(len(ek.FOLDS)),
                    help="width per outer fold (default: the shipped nested choice)")
    ap.add_argument("--seed", type=ek.SEED, default=0)
    ds.add_data_option(ap)
    args = ap.parse_args(argv)
    levels, alphas, widths = args.noise_dbfs, args.fold_alpha, args.fold_hidden
    clips = ds.clips_or_none(args.data, "noise_check.py")
    if clips is None:
        return 2
    spec = FeatureSpec()
    tab = tr.default_table(clips, spec, tr.DEFAULT_AUG)
    actor = np.array([c.actor for c in clips])
    yc = ek.labels_of(clips, ds.EMOTIONS)
    acc: dict[str, list[float]] = {}
    for k, test in enumerate(ek.FOLDS):
        train = [a for a in range(1, 21) if a not in test]
        ids = np.flatnonzero(np.isin(actor, test))
        mlp = tr.mlp_settings(widths[k], alphas[k])
        X, y = ek.train_rows(tab, clips, yc, train)
        run = ek.onnx_predictor(tr.export_onnx(tr.fit(tr.make_pipeline(mlp, args.seed), X, y),
                                               spec.n_features))
        acc.setdefault("clips", []).append(
            float(np.mean(ek.clip_scores(run, tab, ids).argmax(1) == yc[ids])))
        for level in levels:
            pred = ek.stream_labels(run, ids, clips, spec, tr.WINDOW_S, tr.HOP_S, args.seed + k,
                                    noise_dbfs=level)
            acc.setdefault(f"stream, noise {level:g} dBFS", []).append(
                float(np.mean(pred == yc[ids])))
        print(f"fold {k + 1}: " + ", ".join(f"{n} {100 * v[-1]:.1f}" for n, v in acc.items()),
              flush=True)
    base = 100 * np.mean(acc["clips"])
    for name, v in acc.items():
        m = 100 * np.mean(v)
        gap = "" if name == "clips" else f"  ({m - base:+.2f} points vs the clips)"
        print(f"{name:28s} {m:5.2f} ± {100 * np.std(v, ddof=1):.2f}{gap}")   # (sample std, as evaluate)
    return 0


if __name__ == "__main__":
    sys.exit(ds.tool_main("noise_check.py", main))
