"""Bad input, end to end through the real `aerd` command: each gets one line on stderr naming
the option, field, file or endpoint at fault, and a non-zero exit where the program stops;
the good part of the input still goes through (the other files, the readable audio)."""

from __future__ import annotations

import json
import signal
import socket as pysocket
import time

import numpy as np
import pytest
import soundfile as sf

from e2e_helpers import (CLIPS, REPO, aerd_cmd, env, free_tcp_port, json_lines, make_stream, run,
                         spawn)


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


def test_a_file_whose_name_is_not_utf8_is_read(tmp_path):
    """A name with bytes that are not UTF-8 (a Latin-1 name from an old archive): soundfile
    re-encoded the str strictly and `aerd classify` and `aerd run` died with a traceback."""
    import os
    import shutil

    odd = tmp_path / os.fsdecode(b"caf\xe9.flac")
    shutil.copy(CLIPS[2], odd)   # the angry sentence
    r = run("classify", str(odd))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert json_lines(r.stdout)[0]["label"] == "angry"


def test_a_file_without_speech_gets_no_label(tmp_path):
    """Silence and low noise: a null label (the daemon publishes no emotion for such windows),
    a line on stderr saying why; the file itself is fine (exit 0). --min-speech 0 labels it."""
    quiet = tmp_path / "quiet.wav"
    noise = np.random.default_rng(0).normal(0, 1e-4, 4 * 16000).astype(np.float32)
    sf.write(quiet, noise, 16000)
    r = run("classify", str(quiet), str(CLIPS[0]))
    assert r.returncode == 0, r.stderr
    first, second = json_lines(r.stdout)
    assert first["label"] is None and first["confidence"] is None and first["probs"] is None
    assert first["windows"] >= 1 and first["speech_windows"] == 0
    assert second["label"] in second["probs"]
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and str(quiet) in err[0] and "no speech" in err[0], err
    r = run("classify", "--min-speech", "0", str(quiet))
    assert r.returncode == 0 and json_lines(r.stdout)[0]["label"] is not None, r.stderr


def test_float_samples_that_were_changed_are_named_on_stderr(tmp_path):
    """NaN/inf samples are read as 0 / full scale and samples beyond full scale are clipped:
    the file is still classified, but this was silent (a file of NaN: "no speech"; a file in
    integer scale, clipped to a square wave: "no speech")."""
    x, rate = sf.read(CLIPS[0], dtype="float32")
    holes = x.copy()
    holes[8000:8100] = np.nan
    holes[20000] = -np.inf
    nan, loud, fine = tmp_path / "nan.wav", tmp_path / "loud.wav", tmp_path / "fine.wav"
    sf.write(nan, holes, rate, subtype="FLOAT")
    sf.write(loud, x * 32768, rate, subtype="FLOAT")
    sf.write(fine, x, rate, subtype="FLOAT")
    r = run("classify", str(nan), str(loud), str(fine))
    assert r.returncode == 0, r.stderr
    assert [x["file"] for x in json_lines(r.stdout)] == [str(nan), str(loud), str(fine)]
    err = r.stderr.strip().splitlines()
    said = [ln for ln in err if "no speech" not in ln]
    assert len(said) == 2, r.stderr
    assert str(nan) in said[0] and "NaN or infinite samples" in said[0] and "0.5 s" in said[0]
    assert str(loud) in said[1] and "beyond full scale" in said[1] and "clipped" in said[1]


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
    time.sleep(1.0)   # the last events reach the listener
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

    p = subprocess.Popen(aerd_cmd("classify", *[str(c) for c in CLIPS * 4]), cwd=REPO, env=env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.read(10)
    p.stdout.close()
    err = p.stderr.read().decode()
    p.wait(timeout=60)
    assert p.returncode == 0 and err == "", err


@pytest.mark.parametrize("args, needle", [
    (["--model", "/nonexistent/model.json"], "/nonexistent/model.json"),
    (["--rate", "12"], "command line: --rate must be"),   # the flag, not the config field
    (["--input", "/nonexistent.wav"], "/nonexistent.wav"),
    (["--endpoint", "tcp://0.0.0.0:5599"], "CURVE"),
    (["--endpoint", "nonsense"], "--endpoint must look like"),
    (["--connect", "nonsense"], "--connect must look like"),
    (["--endpoint", "tcp://127.0.0.1"], "--endpoint: malformed endpoint"),
    (["--endpoint", "tcp://127.0.0.1:99999"], "port 99999 is not 1..65535"),
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
    (["relay", "--frontend", "ipc:///tmp/x", "--backend", "ipc:///tmp/y", "--log-level", "loud"],
     "argument --log-level: invalid choice: 'loud'"),   # was ignored: the relay logged at info
    (["classify", "--min-speech", "7", "x.wav"], "--min-speech: expected a number from 0 to 1"),
    (["listen", "--count", "0"], "--count: expected a whole number from 1 up, got '0'"),
    (["listen", "--timeout", "-1"], "--timeout: expected a positive number of seconds"),
    (["listen", "--timeout", "nan"], "--timeout: expected a positive number of seconds"),
    (["run", "--wait-subscriber", "-2"], "--wait-subscriber: expected a number of seconds from 0"),
])
def test_unparsable_options_fail_with_one_line_too(args, needle):
    """argparse's own errors: one line (no usage block), naming the option, exit 2."""
    r = run(*args, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "--help" in lines[0], lines


@pytest.mark.parametrize("side", ["frontend", "backend"])
def test_relay_clients_without_secret_names_the_side(tmp_path, side):
    """A relay's authorised-keys directory without that side's own key pair: the one line
    names both flags of that side (it said "a --*-clients directory needs the matching
    --*-secret", leaving the user to guess which side)."""
    r = run("relay", "--frontend", f"ipc://{tmp_path}/f", "--backend", f"ipc://{tmp_path}/b",
            f"--{side}-clients", str(tmp_path), timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines == [f"aerd relay: error: --{side}-clients needs --{side}-secret: the relay's "
                     f"own key pair for its {side}"], lines


def test_stdin_input_with_stdin_closed(tmp_path):
    import os
    import subprocess

    r = subprocess.run(aerd_cmd("run", "--input", "-", "--endpoint", f"ipc://{tmp_path}/c.sock"),
                       cwd=REPO, env=env(), capture_output=True, text=True, timeout=60,
                       preexec_fn=lambda: os.close(0))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "no standard input" in lines[0], r.stderr


def test_a_wav_stream_on_stdin_of_another_rate_is_named_with_the_flags_to_give(tmp_path):
    """`arecord -f cd | aerd run --input -` (arecord writes WAV unless -t raw): the header
    and 44.1 kHz stereo samples were read as 16 kHz mono, 4 s of speech became 22.6 s of
    noise and 34 emotion events, exit 0. Now: one line naming the stream's format and the
    flags to give, exit 1; with them, the header is skipped and the clip is classified."""
    import soundfile as sf
    import soxr
    import subprocess

    x, rate = sf.read(CLIPS[2], dtype="float32")
    y = soxr.resample(x, rate, 44100)
    wav = tmp_path / "cd.wav"
    sf.write(wav, np.stack([y, y], axis=1), 44100, subtype="PCM_16")

    def aerd_run(*flags):
        return subprocess.run(aerd_cmd("run", "--input", "-", "--no-adapt", "--endpoint",
                                       f"ipc://{tmp_path}/w.sock", *flags),
                              input=wav.read_bytes(), cwd=REPO, env=env(), capture_output=True,
                              timeout=120)

    r = aerd_run()
    lines = r.stderr.decode().strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert lines[0] == ("aerd run: error: stdin: the input is a WAV stream of 44100 Hz, "
                        "2 channel(s), 16-bit PCM, not 16000 Hz, 1 channel(s): give --rate "
                        "44100 --channels 2 (or [input] rate, channels)")
    assert b"0 events" in r.stdout and b"0.0 s of audio" in r.stdout, r.stdout[-400:]
    r = aerd_run("--rate", "44100", "--channels", "2")
    assert r.returncode == 0 and not r.stderr, r.stderr
    seconds = float(r.stdout.decode().rsplit("stopped after ", 1)[1].split(" s of audio")[0])
    assert abs(seconds - len(x) / rate) < 0.1, r.stdout[-400:]


def _ipv6_loopback() -> str | None:
    try:
        with pysocket.socket(pysocket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError as e:
        return f"no IPv6 loopback here ({e})"
    return None


@pytest.mark.skipif(_ipv6_loopback() is not None, reason=_ipv6_loopback() or "")
def test_ipv6_loopback_endpoint(tmp_path):
    with pysocket.socket(pysocket.AF_INET6) as s:
        s.bind(("::1", 0))
        port = s.getsockname()[1]
    ep = f"tcp://[::1]:{port}"
    listener = spawn("listen", "--endpoint", ep, "--count", "2", "--timeout", "60")
    r = run("run", "--input", str(CLIPS[0]), "--fast", "--endpoint", ep, "--no-adapt",
            "--wait-subscriber", "20")
    out, _ = listener.communicate(timeout=60)
    assert r.returncode == 0, r.stderr
    assert listener.returncode == 0 and len([e for e in json_lines(out) if e["topic"] == "emotion"]) >= 2


def test_bad_config_field_names_field_and_file(tmp_path):
    cfg = tmp_path / "aerd.toml"
    cfg.write_text('[decision]\nsmoothing = "three"\n')
    r = run("run", "--config", str(cfg), timeout=60)
    assert r.returncode == 2
    assert str(cfg) in r.stderr and "[decision] smoothing" in r.stderr
    cfg.write_text('[decison]\nsmoothing = 3\n')
    r = run("run", "--config", str(cfg), timeout=60)
    assert r.returncode == 2 and "unknown section [decison]" in r.stderr


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
        assert r.returncode == 75 and f"127.0.0.1:{port}" in r.stderr and "in use" in r.stderr
        ipc = f"ipc://{tmp_path}/busy.sock"
        s2 = ctx.socket(zmq.PUB)
        s2.bind(ipc)
        r = run("run", "--input", str(CLIPS[0]), "--fast", "--endpoint", ipc)
        s2.close()
        assert r.returncode == 75 and "already in use" in r.stderr
    finally:
        s.close()
        ctx.term()


@pytest.mark.parametrize("host, why", [("192.0.2.1", "Cannot assign requested address"),
                                       ("aerdnosuch0", "No such device")],
                         ids=["address-not-up", "no-such-interface"])
def test_an_address_or_interface_not_up_yet_exits_75(host, why):
    """README: an address or interface not up yet (a Pi's Wi-Fi at boot) is, like a busy
    endpoint, exit 75, which the unit restarts; not exit 2, which it never restarts."""
    ep = f"tcp://{host}:{free_tcp_port()}"
    r = run("run", "--input", str(CLIPS[0]), "--fast", "--insecure", "--endpoint", ep, timeout=60)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 75, r.stderr
    assert len(lines) == 1 and lines[0].startswith("aerd run: error:") and ep in lines[0], lines
    assert why in lines[0], lines


def test_no_microphone_is_one_clear_line(tmp_path):
    e = env()
    e["PULSE_SERVER"] = f"unix:{tmp_path}/no-server"
    r = run("run", "--endpoint", f"ipc://{tmp_path}/m.sock", env=e, timeout=60)
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert "microphone" in last and "--input" in last


def test_classify_keeps_no_window_of_a_long_file(tmp_path, monkeypatch):
    """classify keeps running totals, not the windows: an hour of audio is 7200 windows of
    features (memory grew by about 17 MB an hour before, without bound)."""
    import gc
    import weakref

    from aerd.classify import classify_file
    from aerd.model import load_model
    from aerd.pipeline import Pipeline

    y, sr = sf.read(CLIPS[0], dtype="float32")
    long = tmp_path / "long.wav"
    sf.write(long, np.tile(y, 6), sr)
    seen, alive_at_end = [], []
    push, flush = Pipeline.push, Pipeline.flush

    def spy_push(self, samples):
        out = push(self, samples)
        seen.extend(weakref.ref(r.window) for r in out)
        return out

    def spy_flush(self):
        gc.collect()
        alive_at_end.append(sum(ref() is not None for ref in seen))
        return flush(self)

    monkeypatch.setattr(Pipeline, "push", spy_push)
    monkeypatch.setattr(Pipeline, "flush", spy_flush)
    res = classify_file(str(long), load_model(None), 0.2)
    assert res.windows > 30 and len(seen) > 30 and res.label is not None
    assert alive_at_end == [0]
