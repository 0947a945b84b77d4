"""tools/mixes.py: 4-class model mixes (parse_mix, mix_predictor)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools import dataset as ds  # noqa: E402
from tools import mixes as ev  # noqa: E402


def test_parse_mix():
    assert ev.parse_mix("4") == [("4", 1)]
    assert ev.parse_mix("4x3+8x3") == [("4", 3), ("8", 3)]
    assert ev.parse_mix("4+5") == [("4", 1), ("5", 1)]
    for bad in ("", "3", "4x0", "4x", "4+9", "4xa"):
        with pytest.raises(ValueError):
            ev.parse_mix(bad)


def test_mix_columns_are_the_seed_classes():
    assert [ds.EMOTIONS[i] for i in ev.mix_columns("8")] == list(ds.SEED4)
    assert ev.mix_columns("5") == [0, 1, 2, 3] and ev.mix_columns("4") is None


def test_mix_predictor_means_parts_of_renormalised_members():
    rng = np.random.default_rng(0)
    p4a, p4b = rng.dirichlet(np.ones(4), 3), rng.dirichlet(np.ones(4), 3)
    p8 = rng.dirichlet(np.ones(8), 3)
    x = np.zeros((3, 2))
    run = ev.mix_predictor([[(lambda _x: p4a, None), (lambda _x: p4b, None)],
                            [(lambda _x: p8, ev.mix_columns("8"))]])
    r8 = p8[:, ev.mix_columns("8")]
    want = 0.5 * (0.5 * (p4a + p4b) + r8 / r8.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(run(x), want)
    np.testing.assert_allclose(run(x).sum(axis=1), 1.0)
    # one member alone is the member itself
    np.testing.assert_allclose(ev.mix_predictor([[(lambda _x: p4a, None)]])(x), p4a)


def test_labels_other_puts_the_rest_in_one_class():
    clips = [ds.Clip(path=Path(f"{e}.flac"), emotion=e, intensity=1, statement=1,
                     repetition=1, actor=1) for e in ds.EMOTIONS]
    y = ev.labels_other(clips, ds.SEED4)
    assert [y[ds.EMOTIONS.index(e)] for e in ds.SEED4] == [0, 1, 2, 3]
    assert sorted(set(y) - {0, 1, 2, 3}) == [4]
