"""Stream time across missing microphone audio, with the real daemon on a virtual microphone
(tests/pulse_server.py). An emotion event's `end` is the stream time of its window's last
sample; it is published as soon as that sample is processed, so `ts - end` is the wall time
the stream started, the same for every event as long as stream time keeps pace with the
microphone. Audio the ring dropped (the loop fell behind and the ring was full) used to
vanish from stream time: every later event was stamped seconds too early, and the window
across the gap spliced audio from both sides of it. (A lost microphone is a gap of another
kind: stream time goes on from the audio before it, tests/test_input_loss.py.)"""

from __future__ import annotations

import os
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_helpers import CLIPS, Sub, env, spawn, stop_process  # noqa: E402
from pulse_server import PulseServer, pulse_available  # noqa: E402

pytestmark = pytest.mark.skipif(pulse_available() is not None, reason=pulse_available() or "")
CLIP = CLIPS[0]


def _offsets(sub: Sub, since: int) -> list[float]:
    return [e["ts"] - e["end"] for _, e in sub.events[since:] if e["topic"] == "emotion"]


def _speak(server: PulseServer, sub: Sub) -> list[float]:
    """Play a clip into the microphone; ts - end of the events it gave."""
    n0 = len(sub.events)
    server.play(CLIP, block=True)
    sub.pump(3)
    got = _offsets(sub, n0)
    assert got, "no emotion event from the clip"
    return got


def _ok(e: dict) -> bool:
    return e["topic"] == "status" and e["input"] == "ok"


def test_audio_dropped_while_the_loop_is_held_up_keeps_stream_time(tmp_path, ctx):
    """The loop held up for 3 s with a 1 s ring (a reload reading its config from a FIFO
    that nobody writes yet): about 2 s of audio dropped."""
    fifo = tmp_path / "aerd.toml"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "w") as f:
            f.write("[input]\nbuffer_s = 1.0\n")

    server = PulseServer(tmp_path / "pa").start()
    ep = f"ipc://{tmp_path}/g.sock"
    sub = Sub(ep, ctx)
    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    daemon = spawn("run", "--config", str(fifo), "--endpoint", ep, "--no-adapt",
                   "--status-interval", "0.5", env=server.client_env(env()))
    try:
        writer.join(20)
        assert sub.pump(20, _ok), f"not up: {daemon.poll()}"
        before = _speak(server, sub)
        daemon.send_signal(signal.SIGHUP)
        time.sleep(3.0)
        feed()
        assert sub.pump(5, lambda e: e["topic"] == "status" and e["state"] == "reloaded")
        status = [e for _, e in sub.events if e["topic"] == "status"][-1]
        assert status["overflows"] > 0, status
        after = _speak(server, sub)
    finally:
        stop_process(daemon)
        sub.close()
        server.stop()
    shift = statistics.median(after) - statistics.median(before)
    print(f"\nts - end moved by {shift:+.3f} s across the gap")
    assert abs(shift) < 0.6, f"stream time fell {shift:.2f} s behind the microphone"
