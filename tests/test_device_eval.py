"""tools/device_eval.py: the clip orders a device can hear, and the daemon's own events scored
per clip (the shipped model's graphs, the committed clips; no dataset needed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools import dataset as ds  # noqa: E402
from tools import device_eval  # noqa: E402
from tools.evalkit import labels_of  # noqa: E402


def fake_clips() -> list[ds.Clip]:
    """Two actors, every emotion three times (paths are never opened)."""
    return [ds.Clip(Path(f"a{a}-{e}-{r}.flac"), e, 1, 1, r, a)
            for a in (1, 2) for e in ds.EMOTIONS for r in range(3)]


def test_emotion_blocks_keep_each_emotion_together():
    clips = fake_clips()
    ids = np.array([i for i, c in enumerate(clips) if c.actor == 2])
    order = device_eval.emotion_blocks(clips)(ids, np.random.default_rng(0))
    assert sorted(order.tolist()) == sorted(ids.tolist())
    emo = [clips[i].emotion for i in order]
    runs = [e for k, e in enumerate(emo) if k == 0 or emo[k - 1] != e]
    assert sorted(runs) == sorted(ds.EMOTIONS)       # one block per emotion
    assert runs != list(ds.EMOTIONS) or emo != sorted(emo)   # shuffled, not in label order


def test_only_keeps_those_emotions():
    clips = fake_clips()
    ids = np.arange(len(clips))[:24]
    order = device_eval.only(device_eval.LOW_AROUSAL, clips)(ids, np.random.default_rng(1))
    assert sorted(clips[i].emotion for i in order) == sorted(
        clips[i].emotion for i in ids if clips[i].emotion in device_eval.LOW_AROUSAL)


def test_daemon_stream_scores_the_daemons_events_per_clip():
    """The shipped default's two graphs as a fold bundle: each committed clip's stream goes
    through the daemon's FileSource, Pipeline and Decider; the angry clip comes out angry."""
    card = json.loads((ROOT / "models" / "default.json").read_text())
    cold = (ROOT / "models" / card["onnx"]).read_bytes()
    adapt = (ROOT / "models" / card["adaptation"]["onnx"]).read_bytes()
    params = {k: v for k, v in card["adaptation"].items()
              if k not in ("onnx", "onnx_sha256", "method", "ref_std")}
    clips = []
    for p in sorted((ROOT / "tests" / "data").glob("03-01-*.flac")):
        _, _, e, i, s, r, a = (int(x) for x in p.stem.split("-"))   # RAVDESS file name
        clips.append(ds.Clip(p, ds.EMOTIONS[e - 1], i, s, r, a))
    y = labels_of(clips, tuple(card["labels"]))
    angry = next(i for i, c in enumerate(clips) if c.emotion == "angry")
    for on in (False, True):
        yt, yp = device_eval.daemon_stream(cold, adapt, card["labels"], params,
                                           np.array(card["adaptation"]["ref_std"]),
                                           [clips[angry].actor], clips, y, 0, adapt=on)
        assert yt.tolist() == [y[angry]] and yp.tolist() == [y[angry]], (on, yp)
