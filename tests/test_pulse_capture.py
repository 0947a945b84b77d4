"""Real PortAudio capture through a user-space PulseAudio server (tests/pulse_server.py).

The capturing code runs in a subprocess (tests/capture_child.py): the server must be up and
PULSE_SERVER set before ``import sounddevice`` there. The parent plays a known clip into the null sink and checks it
comes back through ``sd.InputStream`` (callback mode, default input, 16 kHz mono).

Run with ``-s`` to see the measurements (server start, loss detection, reopen).
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from capture_child import RATE, RECORD_S, STALE_S  # noqa: E402
from pulse_server import PulseServer, pulse_available  # noqa: E402

_skip = pulse_available()
pytestmark = pytest.mark.skipif(_skip is not None, reason=_skip or "")

CHILD = Path(__file__).with_name("capture_child.py")
MIN_CORR = 0.9
DETECT_LIMIT_S = 2.0

class Child:
    """The capturing subprocess, with bounded line-by-line waits."""

    def __init__(self, script: Path, args: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen([sys.executable, str(script), *args], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines.put),
                         daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr.append),
                         daemon=True).start()

    @staticmethod
    def _pump(stream, sink):
        for line in stream:
            sink(line.rstrip("\n"))

    def expect(self, tag: str, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0.001))
            except queue.Empty:
                raise AssertionError(
                    f"child: no {tag} within {timeout} s (exit={self.proc.poll()})\n"
                    + "\n".join(self.stderr[-20:])) from None
            got, _, payload = line.partition(" ")
            if got == "ERROR":
                raise AssertionError(f"child error: {payload}\n" + "\n".join(self.stderr[-20:]))
            if got == tag:
                return json.loads(payload) if payload else None

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 10.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


# --------------------------------------------------------------------------------------------
# Helpers and fixtures
# --------------------------------------------------------------------------------------------

def make_clip(rate: int = RATE) -> np.ndarray:
    """1 s linear chirp 200 Hz -> 4 kHz, then tone bursts at 440, 1000, 2500 Hz (~1.6 s)."""
    t = np.arange(rate) / rate
    f0, f1 = 200.0, 4000.0
    chirp = np.sin(2 * np.pi * (f0 * t + (f1 - f0) / 2 * t ** 2))
    parts = [chirp]
    tb = np.arange(int(0.1 * rate)) / rate
    for f in (440.0, 1000.0, 2500.0):
        parts += [np.zeros(int(0.1 * rate)), np.sin(2 * np.pi * f * tb)]
    clip = 0.5 * np.concatenate(parts)
    ramp = int(0.005 * rate)
    clip[:ramp] *= np.linspace(0, 1, ramp)
    clip[-ramp:] *= np.linspace(1, 0, ramp)
    return clip.astype(np.float32)


def best_match(recording: np.ndarray, clip: np.ndarray, up: int = 8) -> tuple[float, float]:
    """(normalised peak cross-correlation, lag in samples) of ``clip`` within ``recording``.

    The lag is searched at 1/``up`` sample resolution (band-limited interpolation of the
    cross-correlation): the 16 kHz -> 48 kHz sink -> 16 kHz source path delays the audio by a
    fraction of a sample, which alone costs a few percent of correlation at integer lags.
    """
    x = recording.astype(np.float64)
    c = clip.astype(np.float64)
    n, m = len(x), len(c)
    assert n >= m, f"recording ({n} samples) shorter than the clip ({m})"
    size = 1 << int(np.ceil(np.log2(n + m)))
    spec = np.fft.rfft(x, size) * np.conj(np.fft.rfft(c, size))
    xc = np.fft.irfft(spec, size * up)[: (n - m) * up + 1] * up  # xc at lags k / up
    energy = np.concatenate([[0.0], np.cumsum(x * x)])
    win = energy[m:] - energy[: n - m + 1]           # ||x[lag:lag+m]||^2 at integer lags
    win = win[np.round(np.arange(len(xc)) / up).astype(int)]
    ncc = xc / np.sqrt(np.maximum(win, 1e-12) * np.dot(c, c))
    ncc[win < 1e-6 * np.dot(c, c)] = 0.0  # silent windows
    k = int(np.argmax(ncc))
    return float(ncc[k]), k / up


@pytest.fixture
def clip_wav(tmp_path):
    import soundfile as sf
    path = tmp_path / "clip.wav"
    sf.write(path, make_clip(), RATE, subtype="PCM_16")
    return path


@pytest.fixture
def pulse(tmp_path):
    server = PulseServer(tmp_path / "pulse")
    children: list[Child] = []
    server.children = children
    try:
        yield server
    finally:
        for c in children:
            c.kill()
        server.stop()
        server.kill()


def spawn(server: PulseServer, script: Path, *args: str) -> Child:
    child = Child(script, list(args), server.client_env())
    server.children.append(child)
    return child


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------

def play_and_recover(pulse, child, clip_wav, out):
    """Play the clip into the sink while the child records; (DONE message, peak NCC, lag)."""
    pulse.play(clip_wav)
    done = child.expect("DONE", timeout=RECORD_S + 10)
    assert child.finish() == 0
    rec = np.load(out)
    assert done["frames"] == int(RATE * RECORD_S) == len(rec), done
    corr, lag = best_match(rec, make_clip())
    return done, corr, lag


def test_clip_played_into_sink_is_captured(pulse, clip_wav, tmp_path):
    pulse.start()
    print(f"\n[pulse] server start (spawn -> pactl info answers): {pulse.start_time * 1000:.0f} ms")
    out = tmp_path / "rec.npy"
    child = spawn(pulse, CHILD, "record", str(out))
    devs = child.expect("DEVICES")
    print(f"[pulse] sd.query_devices(): {devs['all']}, default (in, out): {devs['default']}")
    assert "default" in devs["input"] and "pulse" in devs["input"], devs
    ready = child.expect("READY")
    time.sleep(0.2)  # keep the clip clear of the recording's start
    t_play = time.monotonic()
    done, corr, lag = play_and_recover(pulse, child, clip_wav, out)
    print(f"[pulse] first callback {done['first_callback_s'] * 1000:.0f} ms after start(); "
          f"clip recovered: peak NCC {corr:.4f} at {lag / RATE * 1000:.0f} ms into the recording "
          f"(paplay launched {(t_play - ready['t']) * 1000:.0f} ms after READY); "
          f"status flags {done['status'] or 'none'}")
    assert corr > MIN_CORR, f"clip not recovered: peak NCC {corr:.3f} at lag {lag}"


def test_device_loss_is_detected_and_stream_reopens(pulse, clip_wav, tmp_path):
    pulse.start()
    out = tmp_path / "rec_after_restart.npy"
    child = spawn(pulse, CHILD, "loss", str(out))
    child.expect("DEVICES")
    child.expect("READY")
    time.sleep(0.5)  # let it run
    t_kill = time.monotonic()  # CLOCK_MONOTONIC: the same clock in both processes
    pulse.kill()
    lost = child.expect("LOST", timeout=15)
    rel = {k: (lost[k] - t_kill if lost[k] is not None else None)
           for k in ("inactive", "stale", "finished_callback", "last_callback")}
    fmt = {k: ("never" if v is None else f"{v * 1000:+.0f} ms") for k, v in rel.items()}
    print(f"\n[pulse] after SIGKILL of the server: stream.active False {fmt['inactive']}, "
          f"finished_callback {fmt['finished_callback']}, last callback {fmt['last_callback']}, "
          f"callback clock stale (> {STALE_S * 1000:.0f} ms) {fmt['stale']}; "
          f"status flags {lost['status'] or 'none'}; stopped={lost['stopped']}")
    detected = [v for v in (rel["inactive"], rel["stale"]) if v is not None]
    assert detected, f"loss never detected: {lost}"
    assert min(detected) < DETECT_LIMIT_S, f"loss detected after {min(detected):.2f} s: {lost}"
    print(f"[pulse] detection time: {min(detected) * 1000:.0f} ms")

    closed = child.expect("CLOSED")
    down = child.expect("OPEN_WHILE_DOWN")
    print(f"[pulse] close() of the dead stream: {closed['s'] * 1000:.1f} ms; "
          f"opening while the server is down: {down['error']}")
    assert down["error"] is not None, "a stream opened with no server"

    pulse.start()
    print(f"[pulse] server restart on the same socket: {pulse.start_time * 1000:.0f} ms")
    child.send("RESTARTED")
    re = child.expect("REOPENED", timeout=15)
    print(f"[pulse] reopen after restart: {re['how']}"
          + (f" (plain open failed: {re['plain_error']})" if re["plain_error"] else
             " (new sd.InputStream, no PortAudio re-initialisation)")
          + f"; first callback after {re['first_callback_s'] * 1000:.0f} ms; "
            f"devices {re['input']}")
    child.expect("READY")
    time.sleep(0.2)
    _, corr, lag = play_and_recover(pulse, child, clip_wav, out)
    print(f"[pulse] after reopen: clip recovered with peak NCC {corr:.4f} "
          f"at {lag / RATE * 1000:.0f} ms into the recording")
    assert corr > MIN_CORR


def test_portaudio_initialised_before_server_needs_reinit(pulse):
    """The daemon may start before the sound server: PortAudio then sees no devices at all."""
    child = spawn(pulse, CHILD, "cold")
    devs = child.expect("DEVICES")
    assert "pulse" not in devs["all"] and "default" not in devs["all"], devs
    pulse.start()
    child.send("STARTED")
    plain = child.expect("PLAIN")
    re = child.expect("REINIT")
    assert child.finish() == 0
    print(f"\n[pulse] PortAudio initialised with the server down: devices {devs['all']}; "
          f"after the server starts, plain open -> {plain['error']}; after "
          f"sd._terminate(); sd._initialize(): devices {re['input']}, "
          f"{re['frames_per_s']:.0f} frames/s")
    if not devs["all"]:  # no other ALSA devices (no sound hardware): nothing to open at all
        assert plain["error"] is not None
    assert "default" in re["input"]
    assert 0.8 * RATE < re["frames_per_s"] < 1.2 * RATE
