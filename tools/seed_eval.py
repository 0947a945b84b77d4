"""The seed prototype's terms (see tools/evaluate.py's docstring): the seed recipe under
leave-actors-out CV, and the seed's own protocol (4 classes, a random 75/25 split of clips,
5 repeats) for the seed recipe and for ours."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from aerd.featurespec import FeatureSpec
from tools import dataset as ds
from tools import evalkit as ek
from tools.evalkit import FOLDS, accuracy, clip_scores, labels_of, summary, train_rows


def seed_lao(clips: list[ds.Clip], seed: int = 0) -> dict[str, Any]:
    """The seed recipe (whole-clip seed180, MLP 300) under leave-actors-out CV."""
    from tools import train as tr

    tab = ds.extract_table(clips, FeatureSpec.seed180())
    actor = np.array([c.actor for c in clips])
    acc: dict[str, list[float]] = {}
    for test in FOLDS:
        train = [a for a in range(1, 21) if a not in test]
        for classes, tag in ((ds.EMOTIONS, "8"), (ds.SEED4, "4")):
            yc = labels_of(clips, classes)
            X, y = train_rows(tab, clips, yc, train)
            pipe = tr.fit(tr.make_pipeline(tr.SEED_MLP, seed), X, y)
            m = np.isin(actor[tab.clip], test) & (yc[tab.clip] >= 0)
            a, u, _ = accuracy(yc[tab.clip[m]], pipe.predict(tab.X[m]), len(classes))
            acc.setdefault(f"seed{tag}_acc", []).append(a)
            acc.setdefault(f"seed{tag}_ua", []).append(u)
    return {"summary": {n: summary(v) for n, v in acc.items()}}


def heard_normalised(tab: ds.FeatureTable, clips: list[ds.Clip], heard: np.ndarray,
                     seed: int, adapt: dict[str, Any] | None = None) -> np.ndarray:
    """``tab.X`` with each actor's rows (per augmentation copy: one device per room) normalised
    by the daemon's per-device normaliser after it has heard that actor's ``heard`` clips (their
    speech windows, in a random clip order; labels unused). The population statistics it
    shrinks toward come from the ``heard`` clips too: nothing of the other clips is used."""
    actor = np.array([c.actor for c in clips])
    row_actor = actor[tab.clip]
    seen = np.isin(tab.clip, heard)
    sub = tab.rows(seen)
    actors = sorted(set(actor.tolist()))
    rstd = ek.ref_std(sub, clips, actors)
    params = ek.with_prior(ek.ADAPT if adapt is None else adapt, sub, clips, actors)
    speech_win = seen & (tab.kind == 1) & (tab.speech >= ek.MIN_SPEECH)
    rng = np.random.default_rng([seed, 5])
    X = tab.X.copy()
    for a in actors:
        for g in sorted(set(tab.aug.tolist())):
            rows = np.flatnonzero((row_actor == a) & (tab.aug == g))
            norm = ek.make_normalizer(params, rstd, tab.X.shape[1])
            heard_rows = rows[speech_win[rows]]
            for ci in rng.permutation(np.unique(tab.clip[heard_rows])):
                for i in heard_rows[tab.clip[heard_rows] == ci]:
                    norm.update(tab.X[i])
            X[rows] = np.stack([norm.transform(tab.X[i]) for i in rows])
    return X


def seed_protocol(clips: list[ds.Clip], cfg: Any, repeats: int = 5) -> dict[str, Any]:
    """Seed protocol (4 classes, random 75/25 split of clips) for the seed recipe and ours
    (``cfg``: an ``evaluate.Config``: its MLP, augmented copies, speeds and warps)."""
    from sklearn.model_selection import train_test_split

    from tools import train as tr

    yc = labels_of(clips, ds.SEED4)
    ids = np.flatnonzero(yc >= 0)
    stab = ds.extract_table(clips, FeatureSpec.seed180())
    rtab = tr.default_table(clips, FeatureSpec(), cfg.n_aug, cfg.speeds, cfg.warps)
    acc: dict[str, list[float]] = {}
    for r in range(repeats):
        tr_ids, te_ids = train_test_split(ids, test_size=0.25, random_state=r)
        m = np.isin(stab.clip, tr_ids)
        pipe = tr.fit(tr.make_pipeline(tr.SEED_MLP, r), stab.X[m], yc[stab.clip[m]])
        mt = np.isin(stab.clip, te_ids)
        a, u, _ = accuracy(yc[stab.clip[mt]], pipe.predict(stab.X[mt]), 4)
        acc.setdefault("seed_acc", []).append(a)
        acc.setdefault("seed_ua", []).append(u)
        m = np.isin(rtab.clip, tr_ids)
        # our recipe; and the seed's own terms: our features, the seed's MLP settings
        # and with the daemon's adaptation: each actor's device has heard that actor's
        # training clips (the test clips are never heard before they are classified)
        atab = replace(rtab, X=heard_normalised(rtab, clips, tr_ids, r, cfg.adapt))
        for tag, mlp, tab in (("ours", cfg.mlp, rtab), ("ours_seedmlp", tr.SEED_MLP, rtab),
                              ("ours_seedmlp_adapted", tr.SEED_MLP, atab)):
            pipe = tr.fit(tr.make_pipeline(mlp, r), tab.X[m], yc[tab.clip[m]])
            a, u, _ = accuracy(yc[te_ids], clip_scores(pipe.predict_proba, tab, te_ids).argmax(1),
                               4)
            acc.setdefault(f"{tag}_acc", []).append(a)
            acc.setdefault(f"{tag}_ua", []).append(u)
    return {"summary": {n: summary(v) for n, v in acc.items()}}
