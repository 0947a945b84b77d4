"""The real daemon in a subprocess, a real subscriber, real sockets and real files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import zmq

from e2e_helpers import CLIPS, REPO, aerd_cmd, env, json_lines, make_stream, run, spawn

EMOTION_FIELDS = {"v", "seq", "ts", "start", "end", "label", "confidence", "probs", "device_id", "model"}
STATUS_FIELDS = {"v", "seq", "ts", "uptime", "input", "windows", "overflows", "device_id", "state"}


def _run_with_listener(tmp_path, run_args, count, stdin=None, listen_timeout=60):
    ep = f"ipc://{tmp_path}/ev.sock"
    listener = spawn("listen", "--endpoint", ep, "--count", str(count), "--timeout", str(listen_timeout))
    daemon = spawn("run", "--endpoint", ep, "--device-id", "test-dev", "--no-adapt",
                   "--wait-subscriber", "20", *run_args, stdin=stdin)
    out, err = listener.communicate(timeout=listen_timeout + 30)
    d_out, d_err = daemon.communicate(timeout=120)
    return listener.returncode, json_lines(out), daemon.returncode, d_out + d_err


def test_file_source_to_real_subscriber(tmp_path):
    wav = tmp_path / "stream.wav"
    make_stream(wav)
    rc, events, drc, dlog = _run_with_listener(tmp_path, ["--input", str(wav), "--fast"], count=4)
    assert drc == 0, dlog
    assert rc == 0
    emotions = [e for e in events if e["topic"] == "emotion"]
    statuses = [e for e in events if e["topic"] == "status"]
    assert len(emotions) >= 4
    for e in emotions:
        assert EMOTION_FIELDS <= e.keys()
        assert e["device_id"] == "test-dev" and e["v"] == 1
        assert abs(sum(e["probs"].values()) - 1) < 0.01 and e["label"] in e["probs"]
        assert e["end"] - e["start"] == pytest.approx(3.0)
    assert statuses and STATUS_FIELDS <= statuses[0].keys()
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_paced_file_takes_real_time(tmp_path):
    wav = tmp_path / "one.wav"
    y, sr = sf.read(CLIPS[0], dtype="float32")
    sf.write(wav, y, sr)
    t0 = time.monotonic()
    rc, events, drc, dlog = _run_with_listener(tmp_path, ["--input", str(wav)], count=1)
    elapsed = time.monotonic() - t0
    assert drc == 0 and rc == 0, dlog
    assert elapsed >= len(y) / sr * 0.9


def test_stdin_pcm_at_another_rate(tmp_path):
    y, sr = sf.read(CLIPS[0], dtype="float32")
    import soxr

    y8 = soxr.resample(np.concatenate([y, y]), sr, 8000)
    pcm = (np.clip(y8, -1, 1) * 32767).astype("<i2").tobytes()
    raw = tmp_path / "in.raw"
    raw.write_bytes(pcm)
    with open(raw, "rb") as f:
        rc, events, drc, dlog = _run_with_listener(tmp_path, ["--input", "-", "--rate", "8000"],
                                                   count=2, stdin=f)
    assert drc == 0 and rc == 0, dlog
    assert len([e for e in events if e["topic"] == "emotion"]) >= 2


def test_classify_matches_daemon_code_path():
    """classify = mean of the daemon's per-window model probabilities over speech windows."""
    sys.path.insert(0, str(CLIPS[0].parent.parent.parent))
    from aerd.model import load_model
    from aerd.pipeline import Pipeline
    from aerd.config import DecisionSettings

    model = load_model(None)
    pipe = Pipeline(model, DecisionSettings())
    y, sr = sf.read(CLIPS[0], dtype="float32")
    results = pipe.push(y) + pipe.flush()
    probs = np.mean([r.probs for r in results if r.window.speech >= 0.2], axis=0)
    r = run("classify", str(CLIPS[0]))
    got = json.loads(r.stdout)
    assert got["label"] == model.card.labels[int(np.argmax(probs))]
    assert got["confidence"] == pytest.approx(float(probs.max()), abs=1e-3)


def test_daemon_does_not_import_training_stack(tmp_path):
    wav = tmp_path / "s.wav"
    make_stream(wav)
    code = (
        "import sys, aerd.cli\n"
        f"rc = aerd.cli.main(['run', '--input', {str(wav)!r}, '--fast', '--no-adapt',"
        f" '--endpoint', 'ipc://{tmp_path}/x.sock', '--log-level', 'warning'])\n"
        # (_hashlib: OpenSSL's libcrypto, 4 MB of RSS, which the secrets module had pulled in)
        "bad = [m for m in ('librosa', 'numba', 'sklearn', 'skl2onnx', 'scipy', 'sounddevice',"
        " '_hashlib')"
        " if m in sys.modules]\n"
        "print('BAD', bad, rc)\n"
    )
    import subprocess

    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), timeout=120)
    assert "BAD [] 0" in r.stdout, r.stdout + r.stderr


def test_sigterm_stops_cleanly_within_2s(tmp_path):
    wav = tmp_path / "long.wav"
    make_stream(wav, repeat=3)
    ep = f"ipc://{tmp_path}/t.sock"
    listener = spawn("listen", "--endpoint", ep, "--topic", "status", "--timeout", "30")
    daemon = spawn("run", "--input", str(wav), "--endpoint", ep, "--no-adapt", "--wait-subscriber", "10")
    time.sleep(4)
    t0 = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    daemon.communicate(timeout=10)
    assert daemon.returncode == 0
    assert time.monotonic() - t0 < 2.0
    listener.send_signal(signal.SIGTERM)
    out, _ = listener.communicate(timeout=10)
    states = [e["state"] for e in json_lines(out)]
    assert states and states[-1] == "stopping"


def test_adaptation_warms_up_persists_and_resumes(tmp_path):
    """Daemon default: adaptation on; after warm-up events say adapted; state survives restart."""
    from e2e_helpers import REPO

    card = json.loads((REPO / "models" / "default.json").read_text())
    warmup = card["adaptation"]["warmup_windows"]
    wav = tmp_path / "s.wav"
    make_stream(wav, gap_s=0.2, repeat=max(1, warmup // 6 + 2))
    state = tmp_path / "state"
    rc, events, drc, dlog = _run_with_listener_adapt(tmp_path, wav, state)
    assert drc == 0 and rc == -signal.SIGTERM, dlog   # the listener ran until stopped
    emotions = [e for e in events if e["topic"] == "emotion"]
    assert not emotions[0]["adapted"] and emotions[-1]["adapted"]
    saved = state / "adapt-default.json"
    assert saved.exists()
    n_before = json.loads(saved.read_text())["n"]
    assert n_before >= warmup
    rc, events, drc, dlog = _run_with_listener_adapt(tmp_path, wav, state)
    emotions = [e for e in events if e["topic"] == "emotion"]
    assert drc == 0 and emotions[0]["adapted"], "restart did not resume the saved adaptation"
    assert json.loads(saved.read_text())["n"] > n_before


def _run_with_listener_adapt(tmp_path, wav, state):
    ep = f"ipc://{tmp_path}/ad.sock"
    listener = spawn("listen", "--endpoint", ep, "--timeout", "60", "--count", "100000")
    daemon = spawn("run", "--endpoint", ep, "--input", str(wav), "--fast", "--state-dir", str(state),
                   "--wait-subscriber", "20")
    d_out, d_err = daemon.communicate(timeout=120)
    time.sleep(0.5)
    listener.send_signal(signal.SIGTERM)
    out, _ = listener.communicate(timeout=10)
    return listener.returncode, json_lines(out), daemon.returncode, d_out + d_err


def test_an_empty_room_with_hum_and_an_offset_publishes_no_emotion(tmp_path):
    """10 s of a poor microphone in an empty room (a DC offset, 50 Hz hum with harmonics, a
    low noise floor), then a clip over the same hum and offset: the daemon publishes emotion
    events for the speech only (before the VAD's steady-sound rule it labelled the room
    "sad" every half second)."""
    rate = 16000
    y, _ = sf.read(CLIPS[0], dtype="float32")
    n_room = 10 * rate
    t = np.arange(n_room + len(y)) / rate
    # the hum about 12 dB under the clip's speech (the clip is quiet: -39 dBFS); speech must
    # rise 10 dB over a steady background to count
    room = 0.03 + sum(0.004 / k * np.sin(2 * np.pi * 50 * k * t + k) for k in range(1, 6))
    room += np.random.default_rng(0).standard_normal(len(t)) * 10 ** (-70 / 20)
    audio = room.astype(np.float32)
    audio[n_room:] += y
    wav = tmp_path / "room.wav"
    sf.write(wav, audio, rate, subtype="FLOAT")
    rc, events, drc, dlog = _run_with_listener(tmp_path, ["--input", str(wav), "--fast"],
                                               count=1, listen_timeout=30)
    assert drc == 0, dlog
    emotions = [e for e in events if e["topic"] == "emotion"]
    assert rc == 0 and emotions, dlog
    # events come in stream order: the first one's window already holds the clip (which
    # starts at 10 s), so none came from the room alone
    assert emotions[0]["end"] > 10.0 + 1.0, emotions[0]


def test_a_raw_subscriber_gets_strict_json_in_the_readme_field_order(tmp_path):
    """What a subscriber in another language sees, with plain pyzmq and no aerd code: two
    frames, a topic, compact ASCII JSON in the README tables' field order, only finite
    numbers and Unicode text. The input's name is not UTF-8: its undecodable byte reached the
    status detail as a lone surrogate (\\udce9), which strict JSON readers refuse."""
    from test_readme_example import readme_fields

    odd = tmp_path / os.fsdecode(b"caf\xe9.flac")
    shutil.copy(CLIPS[2], odd)
    ep = f"ipc://{tmp_path}/raw.sock"
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(ep)
    daemon = subprocess.Popen(   # (bytes: its log names the file with the byte as it is)
        aerd_cmd("run", "--input", str(odd), "--fast", "--endpoint", ep, "--no-adapt",
                 "--wait-subscriber", "20", "--state-dir", str(tmp_path / "st")),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env(), cwd=REPO)
    got = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (got and got[-1][1].get("state") == "stopping"):
            if sub.poll(200):
                frames = sub.recv_multipart()
                assert len(frames) == 2, frames
                text = frames[1].decode("ascii")   # (non-ASCII text travels as \u escapes)

                def no_constant(name):
                    raise AssertionError(f"{name} on the wire: {text}")

                data = json.loads(text, parse_constant=no_constant)
                assert text == json.dumps(data, separators=(",", ":")), "not compact"
                got.append((frames[0].decode(), data))
    finally:
        sub.close(linger=0)
        ctx.term()
        log = daemon.communicate(timeout=60)[0]
    assert daemon.returncode == 0, log
    assert {t for t, _ in got} == {"emotion", "status"}
    for topic, data in got:
        assert list(data) == list(readme_fields(topic)), topic
        for v in (*data.values(), *data.get("probs", {})):
            if isinstance(v, str):
                v.encode("utf-8")   # no lone surrogate
    assert [d["seq"] for _, d in got] == list(range(1, len(got) + 1))
    assert got[0][1]["detail"] == "file caf\ufffd.flac"
    # the README's precision: times and speech to 3 decimals, probabilities to 4
    decimals = {"ts": 3, "start": 3, "end": 3, "uptime": 3, "audio_s": 3, "speech": 3,
                "confidence": 4}
    for _, data in got:
        assert abs(data["ts"] - time.time()) < 120   # the wall clock, in seconds
        for k, n in decimals.items():
            if k in data:
                assert isinstance(data[k], float) and data[k] == round(data[k], n), (k, data)
        for p in data.get("probs", {}).values():
            assert isinstance(p, float) and p == round(p, 4), data
