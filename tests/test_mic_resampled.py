"""A microphone that opens only at its own rate (a raw hw: device at 48 kHz): its audio goes
through the streaming resampler, which holds back up to about 40 ms until more comes. That
audio belongs before a loss or an overflow gap; it was thrown away with the resampler at the
reopen (each loss then made every later event early by as much) or came out after the gap.
The virtual PulseAudio microphone of the other tests opens at 16 kHz, so the device here is
a stand-in: a real Capture (ring and callback) with a stream object that can stop; the
MicSource, its resampler (soxr) and its gap accounting are the real ones."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from aerd.capture import Capture
from aerd.mic import MicSource

DEV_RATE, RATE, BLOCK = 48000, 16000, 2400
OK = SimpleNamespace(input_overflow=False)


def _mic(buffer_s: float) -> tuple[MicSource, list[Capture]]:
    opened: list[Capture] = []

    def opener(*_args) -> Capture:   # open_capture's part: a started 48 kHz mono stream
        cap = Capture("stand-in 48 kHz microphone", DEV_RATE, 1, buffer_s, BLOCK,
                      sd=SimpleNamespace(PortAudioError=OSError))
        cap.stream = SimpleNamespace(active=True, close=lambda: None)
        opened.append(cap)
        return cap

    mic = MicSource("stand-in", RATE, buffer_s=buffer_s, opener=opener)
    assert mic.state == "ok" and len(opened) == 1, mic.detail
    return mic, opened


def _speak(cap: Capture, seconds: float, seed: int) -> None:
    x = np.random.default_rng(seed).uniform(-0.3, 0.3, int(seconds * DEV_RATE))
    for i in range(0, len(x), BLOCK):
        blk = x[i : i + BLOCK].astype(np.float32)[:, None]
        cap.callback(blk, len(blk), None, OK)


def _read(mic: MicSource) -> int:
    y = mic.read(0.05)
    return 0 if y is None else len(y)


def test_the_audio_before_a_loss_comes_out_whole():
    mic, opened = _mic(buffer_s=2.0)
    try:
        got = 0
        for k in range(10):   # 1 s in 0.1 s steps, read as they come
            _speak(opened[0], 0.1, k)
            got += _read(mic)
        assert got < RATE   # (the resampler holds some back while the stream goes on)
        opened[0].stream.active = False   # the device goes away
        got += _read(mic)
        assert mic.state == "lost"
        assert got == RATE, f"{RATE - got} samples of the second before the loss never came out"
    finally:
        mic.close()


def test_the_audio_before_an_overflow_gap_comes_out_before_it():
    mic, opened = _mic(buffer_s=0.5)
    try:
        cap = opened[0]
        _speak(cap, 0.3, 1)
        got = _read(mic)
        _speak(cap, 0.6, 2)   # not read: the ring holds 0.5 s, 0.1 s is dropped after it
        got += _read(mic)
        assert mic.gap_s == 0.0 and got == int(0.8 * RATE), \
            f"{int(0.8 * RATE) - got} samples of the audio before the gap were held back"
        _speak(cap, 0.2, 3)
        after = _read(mic)
        assert abs(mic.gap_s - 0.1) < 1e-9   # announced before the block after the gap
        assert 0 < after <= int(0.2 * RATE)
    finally:
        mic.close()


def test_a_loss_right_after_an_overflow_gap_adds_no_second_gap(tmp_path):
    """The resampler's tail handed out at a loss came with the ``gap_s`` of the block before
    it: when that block was the first after an overflow, the daemon took the same gap twice
    (0.1 s more stream time, every later event 0.1 s late, and the tail scored apart from
    the audio it belongs to). The real daemon reads the stand-in microphone; each read
    first plays one step: 0.3 s, 0.6 s into a 0.5 s ring (0.1 s dropped), 0.2 s, gone."""
    from aerd.config import DecisionSettings
    from aerd.daemon import Daemon
    from aerd.model import load_model
    from aerd.pipeline import Pipeline

    from e2e_helpers import joined_publisher

    mic, opened = _mic(buffer_s=0.5)
    steps = [lambda: _speak(opened[0], 0.3, 1), lambda: _speak(opened[0], 0.6, 2),
             lambda: _speak(opened[0], 0.2, 3),
             lambda: setattr(opened[0].stream, "active", False)]
    read = mic.read

    def scripted_read(timeout: float = 1.0):
        if steps:
            steps.pop(0)()
        elif mic.state == "lost":
            daemon._stop = True
        return read(timeout)

    mic.read = scripted_read
    try:
        with joined_publisher(tmp_path, b"status", "gap") as (_sub, publisher):
            daemon = Daemon(mic, Pipeline(load_model(None), DecisionSettings()), publisher,
                            "gap", status_interval=600.0, tick_s=0.05)
            assert daemon.run() == 0
    finally:
        mic.close()
    assert mic.losses == 1 and daemon.counters.samples == int(1.0 * RATE)
    # 1.1 s of the microphone's clock: 0.3 + 0.6 + 0.2, of which 0.1 s dropped
    assert abs(daemon.counters.stream_offset_s - 1.1) < 1e-6, daemon.counters.stream_offset_s
