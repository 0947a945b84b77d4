"""tools/seed_eval.py: the seed protocol's adapted row uses only the clips a device has heard
(synthetic feature rows; no dataset needed)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools import dataset as ds  # noqa: E402
from tools.seed_eval import heard_normalised  # noqa: E402

DIM = 5


def table() -> tuple[list[ds.Clip], ds.FeatureTable]:
    """Two actors of 8 clips, 16 speech windows each; actor 2's features sit 5 higher and
    vary 3 times as much."""
    clips = [ds.Clip(Path(f"a{a}-{i}.flac"), ds.EMOTIONS[i], 1, 1, 1, a)
             for a in (1, 2) for i in range(8)]
    rng = np.random.default_rng(0)
    clip = np.repeat(np.arange(len(clips)), 16)
    X = rng.normal(size=(len(clip), DIM))
    second = np.array([clips[c].actor == 2 for c in clip])
    X[second] = 5 + 3 * X[second]
    n = len(clip)
    return clips, ds.FeatureTable(X=X, speech=np.ones(n), clip=clip, kind=np.ones(n, int),
                                  start=np.zeros(n), aug=np.zeros(n, int))


def test_each_actor_is_normalised_by_its_own_voice():
    clips, tab = table()
    heard = np.array([i for i in range(len(clips)) if i % 8 < 6])
    X = heard_normalised(tab, clips, heard, 0)
    second = np.array([clips[c].actor == 2 for c in tab.clip])
    raw_gap = (tab.X[second].mean(0) - tab.X[~second].mean(0)) / tab.X.std(0)
    gap = X[second].mean(0) - X[~second].mean(0)
    assert np.all(raw_gap > 1.2)
    assert np.all(np.abs(gap) < 0.25 * raw_gap)       # each voice is centred on itself
    assert np.all(np.abs(X[second].std(0) / X[~second].std(0) - 1) < 0.3)   # and scaled


def test_clips_not_heard_change_nothing_but_their_own_rows():
    clips, tab = table()
    heard = np.array([i for i in range(len(clips)) if i % 8 < 6])
    not_heard = ~np.isin(tab.clip, heard)
    before = heard_normalised(tab, clips, heard, 0)
    moved = tab.X.copy()
    moved[not_heard] += 1.0
    after = heard_normalised(replace(tab, X=moved), clips, heard, 0)
    np.testing.assert_array_equal(after[~not_heard], before[~not_heard])
    # the unheard rows move by the same amount scaled by their actor's (fixed) deviation
    shift = after[not_heard] - before[not_heard]
    assert np.all(shift > 0)
    actor2 = np.array([clips[c].actor == 2 for c in tab.clip])[not_heard]
    assert shift[actor2].mean() < shift[~actor2].mean()
