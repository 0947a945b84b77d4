"""Mixes of models for the seed's 4 classes: a nested-choice experiment of the evaluation
(``select_hparams.py --classes 4 --mix4``, ``train.py --evaluate --fold-mix4``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from tools import dataset as ds
from tools.evalkit import comma_list, labels_of


def labels_other(clips: list[ds.Clip], classes: tuple[str, ...]) -> np.ndarray:
    """Class index per clip, every clip outside ``classes`` in one extra "other" class."""
    y = labels_of(clips, classes)
    return np.where(y >= 0, y, len(classes))


MIX_KINDS = ("4", "8", "5")
"""Members of a 4-class mix: "4" the 4-class model, "8" the 8-class model restricted to the
4 classes (renormalised), "5" a model of the 4 classes + "other" (the remaining emotions'
clips), restricted likewise."""


def parse_mix(spec: str) -> list[tuple[str, int]]:
    """'4x3+8' -> [("4", 3), ("8", 1)]: the mean over the parts of each part's mean over
    that many training seeds (seed, seed + 1, ...)."""
    parts = []
    for p in spec.split("+"):
        kind, sep, n = p.strip().partition("x")
        if kind not in MIX_KINDS or (sep and (not n.isdigit() or int(n) < 1)):
            raise ValueError(f"bad 4-class mix {spec!r} (e.g. 4, 4+8, 4x3+8x3)")
        parts.append((kind, int(n) if n else 1))
    return parts


def mix_list(length: int | None = None) -> Callable[[str], list[str]]:
    """An argparse ``type``: comma-separated mixes (``length`` of them if given), each
    checked by :func:`parse_mix`; a bad one is argparse's error naming the option."""

    def check(spec: str) -> str:
        parse_mix(spec)
        return spec

    return comma_list(check, "mixes", length)


def mix_labels(clips: list[ds.Clip], kind: str) -> np.ndarray:
    return {"4": lambda: labels_of(clips, ds.SEED4), "8": lambda: labels_of(clips, ds.EMOTIONS),
            "5": lambda: labels_other(clips, ds.SEED4)}[kind]()


def mix_columns(kind: str) -> list[int] | None:
    """Columns of a member's output that are the seed's 4 classes (None: all)."""
    return [ds.EMOTIONS.index(e) for e in ds.SEED4] if kind == "8" else (
        list(range(len(ds.SEED4))) if kind == "5" else None)


def mix_predictor(parts: list[list[tuple[Callable, list[int] | None]]]) -> Callable:
    """Mean over ``parts`` of each part's mean over its members' probabilities, every member
    restricted to its 4-class columns and renormalised."""
    def run(x: np.ndarray) -> np.ndarray:
        out = 0.0
        for members in parts:
            acc = 0.0
            for f, cols in members:
                p = f(x)
                if cols is not None:
                    p = p[:, cols]
                    p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
                acc = acc + p
            out = out + acc / len(members)
        return out / len(parts)
    return run
