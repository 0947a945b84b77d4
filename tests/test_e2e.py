"""The real daemon in a subprocess, a real subscriber, real sockets and real files."""

from __future__ import annotations

import json
import signal
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from e2e_helpers import CLIPS, env, free_tcp_port, json_lines, make_stream, run, spawn

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


def test_classify_good_and_bad_files(tmp_path):
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(4000, np.float32), 16000)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    missing = tmp_path / "missing.flac"
    files = [str(CLIPS[0]), str(missing), str(text), str(empty), str(short), str(CLIPS[1])]
    r = run("classify", *files)
    assert r.returncode == 1
    lines = json_lines(r.stdout)
    assert [x["file"] for x in lines] == [str(CLIPS[0]), str(CLIPS[1])]
    for x in lines:
        assert x["label"] in x["probs"] and 0 < x["confidence"] <= 1
    err = r.stderr.strip().splitlines()
    assert len(err) == 4
    for bad, line in zip([missing, text, empty, short], err):
        assert str(bad) in line
    assert "too short" in err[3] and "empty" in err[2]


def test_a_damaged_file_is_an_error_not_a_partial_result(tmp_path):
    """A FLAC cut off half-way: classify refuses to give it a label (one line naming it, the
    other files still classified, exit 1); the daemon publishes the readable part, says
    "read error" in its status, and exits 1 with one line naming the file."""
    long = tmp_path / "long.wav"
    make_stream(long, repeat=3)
    cut = tmp_path / "cut.flac"
    y, sr = sf.read(long, dtype="float32")
    sf.write(cut, y, sr)
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    r = run("classify", str(cut), str(CLIPS[0]))
    assert r.returncode == 1
    assert [x["file"] for x in json_lines(r.stdout)] == [str(CLIPS[0])]
    assert r.stdout.count("\n") == 1, r.stdout   # nothing but the JSON line on stdout
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and str(cut) in err[0] and "read error after" in err[0], err
    ep = f"ipc://{tmp_path}/cut.sock"
    listener = spawn("listen", "--endpoint", ep, "--timeout", "60", "--count", "100000")
    daemon = spawn("run", "--input", str(cut), "--fast", "--endpoint", ep, "--no-adapt",
                   "--wait-subscriber", "20")
    d_out, d_err = daemon.communicate(timeout=120)
    time.sleep(0.3)
    listener.send_signal(signal.SIGTERM)
    events = json_lines(listener.communicate(timeout=10)[0])
    assert daemon.returncode == 1, d_out + d_err
    last = d_err.strip().splitlines()[-1]
    assert last.startswith("aerd run: error:") and str(cut) in last and "read error" in last
    assert any(e["topic"] == "emotion" for e in events), "the readable part was not published"
    assert any(e["topic"] == "status" and e["detail"].startswith("read error") for e in events)


def test_a_reader_that_leaves_early_is_no_error(tmp_path):
    """`aerd classify ... | head -c 10`: the pipe closes under it; it stops quietly, exit 0."""
    import subprocess

    from e2e_helpers import REPO, aerd_cmd

    p = subprocess.Popen(aerd_cmd("classify", *[str(c) for c in CLIPS * 4]), cwd=REPO, env=env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.read(10)
    p.stdout.close()
    err = p.stderr.read().decode()
    p.wait(timeout=60)
    assert p.returncode == 0 and err == "", err


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


@pytest.mark.parametrize("args, needle", [
    (["--model", "/nonexistent/model.json"], "/nonexistent/model.json"),
    (["--rate", "12"], "[input] rate"),
    (["--input", "/nonexistent.wav"], "/nonexistent.wav"),
    (["--endpoint", "tcp://0.0.0.0:5599"], "CURVE"),
    (["--endpoint", "nonsense"], "[publish] endpoint"),
])
def test_bad_run_options_fail_with_one_line(args, needle):
    r = run("run", "--fast", *args, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("aerd run: error:"), lines


@pytest.mark.parametrize("args, needle", [
    (["run", "--rate", "abc"], "aerd run: error: argument --rate: invalid int value: 'abc'"),
    (["run", "--bogus"], "unrecognized arguments: --bogus"),
    (["listen", "--topic", "foo"], "aerd listen: error: argument --topic: invalid choice: 'foo'"),
    (["relay", "--frontend", "ipc:///tmp/x"], "the following arguments are required: --backend"),
])
def test_unparsable_options_fail_with_one_line_too(args, needle):
    """argparse's own errors: one line (no usage block), naming the option, exit 2."""
    r = run(*args, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "--help" in lines[0], lines


def test_bad_config_field_names_field_and_file(tmp_path):
    cfg = tmp_path / "aerd.toml"
    cfg.write_text('[decision]\nsmoothing = "three"\n')
    r = run("run", "--config", str(cfg), timeout=60)
    assert r.returncode == 2
    assert str(cfg) in r.stderr and "[decision] smoothing" in r.stderr
    cfg.write_text('[decison]\nsmoothing = 3\n')
    r = run("run", "--config", str(cfg), timeout=60)
    assert r.returncode == 2 and "unknown setting [decison]" in r.stderr


def test_corrupt_or_mismatched_model(tmp_path):
    from e2e_helpers import REPO

    card = json.loads((REPO / "models" / "default.json").read_text())
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x01garbage" * 100)
    card.update(onnx="bad.onnx", onnx_sha256="")
    (tmp_path / "bad.json").write_text(json.dumps(card))
    r = run("run", "--model", str(tmp_path / "bad.json"), "--input", str(CLIPS[0]), timeout=60)
    assert r.returncode == 2 and "bad.onnx" in r.stderr and "ONNX" in r.stderr
    card2 = json.loads((REPO / "models" / "default.json").read_text())
    card2["n_features"] = 7
    (tmp_path / "mismatch.json").write_text(json.dumps(card2))
    r = run("classify", "--model", str(tmp_path / "mismatch.json"), str(CLIPS[0]), timeout=60)
    assert r.returncode == 2 and "n_features" in r.stderr
    card3 = json.loads((REPO / "models" / "default.json").read_text())
    card3["onnx_sha256"] = "0" * 64
    card3["onnx"] = str(REPO / "models" / "default.onnx")
    (tmp_path / "tampered.json").write_text(json.dumps(card3))
    r = run("classify", "--model", str(tmp_path / "tampered.json"), str(CLIPS[0]), timeout=60)
    assert r.returncode == 2 and "sha256" in r.stderr


def test_busy_endpoint_is_refused(tmp_path):
    import zmq

    port = free_tcp_port()
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUB)
    s.bind(f"tcp://127.0.0.1:{port}")
    try:
        r = run("run", "--input", str(CLIPS[0]), "--fast", "--endpoint", f"tcp://127.0.0.1:{port}")
        assert r.returncode == 2 and f"127.0.0.1:{port}" in r.stderr and "in use" in r.stderr
        ipc = f"ipc://{tmp_path}/busy.sock"
        s2 = ctx.socket(zmq.PUB)
        s2.bind(ipc)
        r = run("run", "--input", str(CLIPS[0]), "--fast", "--endpoint", ipc)
        s2.close()
        assert r.returncode == 2 and "already in use" in r.stderr
    finally:
        s.close()
        ctx.term()


def test_no_microphone_is_one_clear_line(tmp_path):
    e = env()
    e["PULSE_SERVER"] = f"unix:{tmp_path}/no-server"
    r = run("run", "--endpoint", f"ipc://{tmp_path}/m.sock", env=e, timeout=60)
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert "microphone" in last and "--input" in last


def test_daemon_does_not_import_training_stack(tmp_path):
    wav = tmp_path / "s.wav"
    make_stream(wav)
    code = (
        "import sys, aerd.cli\n"
        f"rc = aerd.cli.main(['run', '--input', {str(wav)!r}, '--fast', '--no-adapt',"
        f" '--endpoint', 'ipc://{tmp_path}/x.sock', '--log-level', 'warning'])\n"
        "bad = [m for m in ('librosa', 'numba', 'sklearn', 'skl2onnx', 'scipy', 'sounddevice')"
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
    assert drc == 0 and rc == 0, dlog
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
    return 0, json_lines(out), daemon.returncode, d_out + d_err
