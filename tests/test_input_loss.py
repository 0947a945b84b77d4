"""A microphone lost and found again is a gap in the audio, however long (an unplugged USB
microphone, a sound server restarted overnight): no window may join the audio from both sides
of it, and no label may be held over it by the decision's hysteresis. Real model, real files
through the real decoder, real publisher and subscriber; the source is the part that goes
away (sources are passed in), as a microphone does: state ``lost``, no audio, then ``ok``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aerd.config import DecisionSettings
from aerd.daemon import Daemon
from aerd.model import load_model
from aerd.pipeline import Pipeline
from aerd.sources import FileSource

from e2e_helpers import joined_publisher

ANGRY, SAD = "03-01-05-02-01-01-01.flac", "03-01-04-01-01-02-04.flac"


class _UnpluggedMic:
    """Plays ``before``, is lost for ``lost_reads`` reads, then plays ``after`` and ends."""

    name = "unplugged"
    overflows = bad_frames = 0

    def __init__(self, before: FileSource, after: FileSource, lost_reads: int = 3) -> None:
        self.before, self.after, self.lost_reads = before, after, lost_reads
        self.state, self.detail, self.ended = "ok", "mic", False

    def read(self, timeout: float = 1.0) -> np.ndarray | None:
        if not self.before.ended:
            return self.before.read(timeout)
        if self.lost_reads > 0:
            self.lost_reads -= 1
            self.state, self.detail = "lost", "stream stopped (device or sound server gone)"
            return None
        self.state, self.detail = "ok", "mic"
        block = self.after.read(timeout)
        if self.after.ended:
            self.ended, self.state = True, "ended"
        return block


@pytest.fixture
def emotions_across_a_loss(tmp_path, data_dir):
    """Emotion events of a daemon whose microphone is lost between an angry and a sad clip,
    with a hysteresis no label change within one stream can pass; and the loss's stream time."""
    rate = 16000
    before = FileSource(data_dir / ANGRY, rate, fast=True)
    after = FileSource(data_dir / SAD, rate, fast=True)
    loss_at = before.duration
    with joined_publisher(tmp_path, b"emotion", "loss") as (sub, publisher):
        pipeline = Pipeline(load_model(None), DecisionSettings(hysteresis=0.9))
        daemon = Daemon(_UnpluggedMic(before, after), pipeline, publisher, "loss",
                        status_interval=60.0, tick_s=0.01)
        assert daemon.run() == 0
        events = []
        while sub.poll(500):
            events.append(json.loads(sub.recv_multipart()[1]))
        yield events, loss_at


def test_no_window_joins_the_audio_before_and_after_a_lost_microphone(emotions_across_a_loss):
    events, loss_at = emotions_across_a_loss
    assert any(e["end"] <= loss_at for e in events) and any(e["start"] >= loss_at for e in events)
    across = [(e["start"], e["end"]) for e in events
              if e["start"] < loss_at - 1e-3 < e["end"] - 2e-3]
    assert not across, f"windows across the gap at {loss_at:.3f} s: {across}"


def test_no_label_is_held_over_a_lost_microphone(emotions_across_a_loss):
    events, loss_at = emotions_across_a_loss
    assert events[0]["label"] == "angry"
    first_after = next(e for e in events if e["start"] >= loss_at - 1e-3)
    probs = first_after["probs"]
    assert first_after["label"] == max(probs, key=probs.get) != "angry", first_after
