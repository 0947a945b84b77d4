"""Shared pieces of the evaluation protocols (tools/evaluate.py, tools/select_hparams.py,
tools/train.py): labels, clip scoring (the classify rule), training rows, per-device
adaptation run causally in stream order, and a continuous stream of held-out clips.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from aerd.adapt import FeatureNormalizer
from aerd.cliparser import WHOLE_FROM_1, number_type
from aerd.featurespec import FeatureSpec
from aerd.stream import StreamExtractor
from tools import dataset as ds

MIN_SPEECH = 0.2
FOLDS = [list(range(4 * k + 1, 4 * k + 5)) for k in range(5)]

# adaptation defaults (stored in the card)
# warm-up: the normaliser's statistics are shrunk toward the training population's (weight
# prior_count windows), so a long cold-model warm-up is not needed; 3 speech windows keep the
# "adapted" flag meaning "device statistics in use".
ADAPT = dict(warmup_windows=3, max_count=2000, std_bounds=[0.25, 4.0], min_std=1e-4, clip=10.0,
             prior_count=10.0)
ADAPT_ORDERS = 2  # random clip orders per training device
GAP_S = 1.5
GAP_DBFS = -75.0


def comma_list(item: Callable[[str], Any], what: str,
               length: int | None = None) -> Callable[[str], list]:
    """An argparse ``type`` for a comma-separated list of ``what`` (e.g. "numbers"), each
    parsed by ``item`` (which raises ValueError on a bad one), ``length`` of them if given:
    a bad list is argparse's error naming the option."""

    def parse(text: str) -> list:
        try:
            values = [item(v) for v in text.split(",")]
        except argparse.ArgumentTypeError as e:   # the item's own message names the bad one
            raise argparse.ArgumentTypeError(f"{e} (in {text!r})") from None
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, "
                                             f"got {text!r} ({e})") from None
        if length is not None and len(values) != length:
            raise argparse.ArgumentTypeError(f"expected {length} {what} (one per outer "
                                             f"fold), got {len(values)} in {text!r}")
        return values

    return parse


def number_list(kind: type = float, length: int | None = None) -> Callable[[str], list]:
    """A :func:`comma_list` of ``kind`` (int or float)."""
    return comma_list(kind, "integers" if kind is int else "numbers", length)


# argparse types for the tools' options (one parser shared with aerd's own command line)
COUNT0 = number_type(int, lambda v: v >= 0, "a whole number from 0 up")
ALPHA = number_type(float, lambda v: 0.0 <= v < float("inf"), "a finite number from 0 up")
POSITIVE = number_type(float, lambda v: 0.0 < v < float("inf"), "a positive number")
SEED = number_type(int, lambda v: 0 <= v < 2**32, f"a whole number from 0 to {2**32 - 1}")
"""A training seed: what scikit-learn's ``random_state`` takes."""
DBFS = number_type(float, lambda v: abs(v) < float("inf"), "a finite number of dBFS")


def widths(length: int | None = None) -> Callable[[str], list]:
    """A :func:`comma_list` of MLP widths (whole numbers from 1 up)."""
    return comma_list(WHOLE_FROM_1, "whole numbers from 1 up", length)


def alphas(length: int | None = None) -> Callable[[str], list]:
    """A :func:`comma_list` of L2 penalties (finite numbers from 0 up)."""
    return comma_list(ALPHA, "finite numbers from 0 up", length)


def output_file(text: str) -> Path:
    """An argparse ``type`` for a file a tool writes at the end of its run: refused at once if
    it could not be written then (its directory missing or read-only, or a directory)."""
    if not text:   # Path("") is the current directory
        raise argparse.ArgumentTypeError("expected a file name, got ''")
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory")
    if path.exists():   # an existing file is written over: it must be writable itself
        if not os.access(path, os.W_OK):
            raise argparse.ArgumentTypeError(f"cannot write {text}")
        return path
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"directory {path.parent} does not exist")
    _writable_parent(path)
    return path


def output_dir(text: str) -> Path:
    """An argparse ``type`` for a directory a tool creates (with its parents) or fills."""
    if not text:   # Path("") would fill the current directory
        raise argparse.ArgumentTypeError("expected a directory name, got ''")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a directory")
    _writable_parent(path / "x")
    return path


def _writable_parent(path: Path) -> None:
    """ArgumentTypeError unless the nearest existing ancestor of ``path`` is a directory
    this process can write in."""
    up = path.parent
    while not up.exists() and up != up.parent:
        up = up.parent
    if not up.is_dir():
        raise argparse.ArgumentTypeError(f"{up} is not a directory")
    if not os.access(up, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write in {up}")


def labels_of(clips: list[ds.Clip], classes: tuple[str, ...]) -> np.ndarray:
    """Class index per clip (-1 for clips outside ``classes``)."""
    return np.array([classes.index(c.emotion) if c.emotion in classes else -1 for c in clips])


def accuracy(y: np.ndarray, p: np.ndarray, n: int) -> tuple[float, float, np.ndarray]:
    """(accuracy, unweighted accuracy over the classes present, confusion matrix rows=true).
    A prediction of -1 (no decision) is wrong and has no column in the matrix."""
    cm = np.zeros((n, n), int)
    ok = p >= 0
    np.add.at(cm, (y[ok], p[ok]), 1)
    support = np.bincount(y, minlength=n)
    rec = np.diag(cm) / np.maximum(support, 1)
    return float(np.mean(y == p)), float(rec[support > 0].mean()), cm


def decide(probs: np.ndarray, speech: np.ndarray) -> np.ndarray:
    """The classify rule: mean of the windows with speech >= 0.2 (all if none)."""
    keep = speech >= MIN_SPEECH
    return probs[keep].mean(axis=0) if keep.any() else probs.mean(axis=0)


def clip_scores(predict: Callable[[np.ndarray], np.ndarray], tab: ds.FeatureTable,
                clip_ids: np.ndarray, aug: int = 0) -> np.ndarray:
    """Clip-level probabilities (classify rule over the clip's stream windows)."""
    rows = np.flatnonzero(np.isin(tab.clip, clip_ids) & (tab.kind == 1) & (tab.aug == aug))
    P = predict(tab.X[rows])
    out = []
    for ci in clip_ids:
        m = tab.clip[rows] == ci
        out.append(decide(P[m], tab.speech[rows][m]))
    return np.stack(out)


def summary(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (ddof 1: five folds are a sample of speakers)."""
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": round(float(np.mean(values)), 4), "std": round(sd, 4)}


def fmt(s: dict[str, float]) -> str:
    return f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"


# --------------------------------------------------------------------------- training
def train_rows(tab: ds.FeatureTable, clips: list[ds.Clip], y_clip: np.ndarray,
               actors: list[int]) -> tuple[np.ndarray, np.ndarray]:
    actor = np.array([c.actor for c in clips])
    m = np.isin(actor[tab.clip], actors) & (y_clip[tab.clip] >= 0)
    return tab.X[m], y_clip[tab.clip[m]]


def device_streams(tab: ds.FeatureTable, clips: list[ds.Clip], actors: list[int],
                   augs: list[int], seed: int, orders: int = 1):
    """Yield (actor, aug, order, window row indices in stream order) for speech windows."""
    actor = np.array([c.actor for c in clips])
    win = (tab.kind == 1) & (tab.speech >= MIN_SPEECH)
    for a in actors:
        cl = np.flatnonzero(actor == a)
        for g in augs:
            sel = np.flatnonzero(win & (tab.aug == g) & (actor[tab.clip] == a))
            by_clip = {ci: sel[tab.clip[sel] == ci] for ci in cl}
            for o in range(orders):
                rng = np.random.default_rng([seed, a, g, o])
                order = rng.permutation(cl)
                yield a, g, o, order, np.concatenate([by_clip[ci] for ci in order])


def ref_std(tab: ds.FeatureTable, clips: list[ds.Clip], actors: list[int]) -> np.ndarray:
    """Typical per-speaker deviation: median over training actors of each one's window std."""
    actor = np.array([c.actor for c in clips])
    win = (tab.kind == 1) & (tab.speech >= MIN_SPEECH) & (tab.aug == 0)
    stds = [tab.X[win & (actor[tab.clip] == a)].std(axis=0) for a in actors]
    return np.maximum(np.median(stds, axis=0), 1e-6)


def ref_mean(tab: ds.FeatureTable, clips: list[ds.Clip], actors: list[int]) -> np.ndarray:
    """Population mean for the normaliser's shrinkage: mean over training actors of each
    one's mean clean speech window."""
    actor = np.array([c.actor for c in clips])
    win = (tab.kind == 1) & (tab.speech >= MIN_SPEECH) & (tab.aug == 0)
    return np.mean([tab.X[win & (actor[tab.clip] == a)].mean(axis=0) for a in actors], axis=0)


def with_prior(params: dict[str, Any], tab: ds.FeatureTable, clips: list[ds.Clip],
               actors: list[int]) -> dict[str, Any]:
    """Adaptation parameters with the training population's mean (for the shrinkage)."""
    if float(params.get("prior_count", 0.0)) <= 0:
        return dict(params)
    return {**params, "prior_mean": ref_mean(tab, clips, actors)}


def adapt_rows(tab: ds.FeatureTable, clips: list[ds.Clip], y_clip: np.ndarray,
               actors: list[int], params: dict[str, Any], rstd: np.ndarray, seed: int,
               orders: int = ADAPT_ORDERS) -> tuple[np.ndarray, np.ndarray]:
    """Per-device normalised training rows, computed in streaming order (post-warm-up only)."""
    Xs, ys = [], []
    augs = sorted(set(tab.aug.tolist()))
    for _a, _g, _o, _order, idx in device_streams(tab, clips, actors, augs, seed, orders):
        norm = make_normalizer(params, rstd, tab.X.shape[1])
        for i in idx:
            norm.update(tab.X[i])
            if norm.ready and y_clip[tab.clip[i]] >= 0:
                Xs.append(norm.transform(tab.X[i]))
                ys.append(y_clip[tab.clip[i]])
    return np.stack(Xs), np.array(ys)


def make_normalizer(params: dict[str, Any], rstd: np.ndarray, dim: int) -> FeatureNormalizer:
    return FeatureNormalizer.from_card({**params, "ref_std": rstd}, dim)


def random_order(ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A device hears its clips in a random order (the default of :func:`adapt_eval`)."""
    return rng.permutation(ids)


def adapt_eval(cold: Callable, adapted: Callable, tab: ds.FeatureTable, clips: list[ds.Clip],
               y_clip: np.ndarray, actors: list[int], params: dict[str, Any],
               rstd: np.ndarray, seed: int, aug: int = 0,
               order: Callable[[np.ndarray, np.random.Generator], np.ndarray] = random_order
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Streaming adaptation on held-out devices; returns (true, pred cold, pred adapted,
    post-warm-up flag) per clip in ``classes``. Each actor is one device hearing the clips
    ``order`` picks from its own, in that order."""
    actor = np.array([c.actor for c in clips])
    yt, pc, pa, warm = [], [], [], []
    win = (tab.kind == 1) & (tab.aug == aug)
    for a in actors:
        norm = make_normalizer(params, rstd, tab.X.shape[1])
        order_a = order(np.flatnonzero(actor == a), np.random.default_rng([seed, a, 99]))
        for ci in order_a:
            rows = np.flatnonzero(win & (tab.clip == ci))
            x, sp = tab.X[rows], tab.speech[rows]
            p_cold = cold(x)
            p = p_cold.copy()
            was_ready = norm.ready
            for j in range(len(rows)):
                if sp[j] >= MIN_SPEECH:
                    norm.update(x[j])
                    if norm.ready:
                        p[j] = adapted(norm.transform(x[j])[None])[0]
            if y_clip[ci] < 0:
                continue
            yt.append(y_clip[ci])
            pc.append(int(np.argmax(decide(p_cold, sp))))
            pa.append(int(np.argmax(decide(p, sp))))
            warm.append(was_ready)
    return np.array(yt), np.array(pc), np.array(pa), np.array(warm)


# --------------------------------------------------------------------------- streaming
def build_stream(clip_ids: np.ndarray, clips: list[ds.Clip], seed: int,
                 noise_dbfs: float = GAP_DBFS) -> tuple[np.ndarray, list[tuple[int, float, float]]]:
    """Held-out clips in random order joined by GAP_S of low-level white noise (also under
    the clips, ``noise_dbfs``); (audio, spans)."""
    rng = np.random.default_rng([seed, 7])
    gap = int(GAP_S * ds.SR)
    amp = 10 ** (noise_dbfs / 20)
    parts, spans, pos = [], [], 0
    for ci in rng.permutation(clip_ids):
        parts.append((rng.standard_normal(gap) * amp).astype(np.float32))
        pos += gap
        y = ds.load_audio(clips[ci].path)
        spans.append((int(ci), pos / ds.SR, (pos + len(y)) / ds.SR))
        parts.append(y + (rng.standard_normal(len(y)) * amp).astype(np.float32))
        pos += len(y)
    parts.append((rng.standard_normal(gap) * amp).astype(np.float32))
    return np.concatenate(parts), spans


def overlap(st: np.ndarray, en: np.ndarray, a: float, b: float) -> np.ndarray:
    """Seconds each window [st, en) shares with the span [a, b) (negative: apart)."""
    return np.minimum(en, b) - np.maximum(st, a)


def in_clip(st: np.ndarray, en: np.ndarray, a: float, b: float, window_s: float) -> np.ndarray:
    """Windows that belong to the clip spanning [a, b): at least half of each lies inside it
    (so a window never belongs to two clips)."""
    return overlap(st, en, a, b) >= 0.5 * window_s - 1e-9


def stream_predict(predict: Callable, audio: np.ndarray, spans: list[tuple[int, float, float]],
                   spec: FeatureSpec, window_s: float, hop_s: float) -> dict[int, np.ndarray]:
    """Clip probabilities from a continuous stream (rule in the module docstring)."""
    se = StreamExtractor(spec, window_s, hop_s)
    ws = []
    for i in range(0, len(audio), 1600):
        ws += se.push(audio[i : i + 1600])
    ws += se.flush()
    X = np.stack([w.features for w in ws])
    P = predict(X)
    st = np.array([w.start for w in ws])
    en = np.array([w.end for w in ws])
    sp = np.array([w.speech for w in ws])
    out = {}
    for ci, a, b in spans:
        mine = in_clip(st, en, a, b, window_s)
        if not mine.any():
            ov = overlap(st, en, a, b)
            mine = ov == ov.max()
        out[ci] = decide(P[mine], sp[mine])
    return out


def stream_labels(predict: Callable, clip_ids: np.ndarray, clips: list[ds.Clip],
                  spec: FeatureSpec, window_s: float, hop_s: float, seed: int,
                  noise_dbfs: float = GAP_DBFS) -> np.ndarray:
    """Predicted class of each clip of ``clip_ids`` (in that order) from one continuous
    stream of them (:func:`build_stream`, :func:`stream_predict`)."""
    audio, spans = build_stream(clip_ids, clips, seed, noise_dbfs)
    sp = stream_predict(predict, audio, spans, spec, window_s, hop_s)
    return np.array([sp[ci].argmax() for ci in clip_ids])


def onnx_predictor(blob: bytes) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(blob, sess_options=opts, providers=["CPUExecutionProvider"])

    def run(x: np.ndarray) -> np.ndarray:
        return sess.run(["probabilities"], {"features": np.asarray(x, np.float32)})[0]
    return run
