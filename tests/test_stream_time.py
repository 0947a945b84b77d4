"""Stream time over long runs: the status events' `audio_s` is the samples processed over the
model's rate, not a sum of each block's length in seconds, whose rounding errors add up
(0.01 s is no binary fraction: 10 ms blocks drifted 9 ms in 30 days and 2 s in a year, so
`audio_s` fell away from the events' `end`, which come from sample counts)."""

from __future__ import annotations

import numpy as np

from aerd.config import DecisionSettings
from aerd.daemon import Daemon
from aerd.model import load_model
from aerd.pipeline import Pipeline
from aerd.stdin import StdinSource

from e2e_helpers import joined_publisher


def test_audio_s_counts_samples_not_block_seconds(tmp_path):
    n = 60 * 16000   # 60 s of quiet noise, read as 6000 blocks of 10 ms
    pcm = (np.random.default_rng(0).standard_normal(n) * 3).astype("<i2")
    raw = tmp_path / "quiet.raw"
    raw.write_bytes(pcm.tobytes())
    with joined_publisher(tmp_path, b"status", "long") as (sub, publisher), open(raw, "rb") as f:
        source = StdinSource(f, 16000, 16000, block_s=0.01)
        daemon = Daemon(source, Pipeline(load_model(None), DecisionSettings()), publisher,
                        "long", status_interval=600.0, tick_s=0.01)
        assert daemon.run() == 0
    assert daemon.counters.audio_s == n / 16000   # exactly: 60.0, not 59.99999999999...
    assert daemon.status_event().audio_s == 60.0
