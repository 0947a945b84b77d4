"""SIGHUP reloads the config and model in a running daemon: the socket, stream time, counters
and the adaptation learned so far carry over; a bad config or model card, or a model for
another sample rate, is refused (status ``reload_failed``, a log line) and the running
pipeline goes on. All real processes and sockets."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_helpers import REPO, Sub, make_stream, spawn, stop_process  # noqa: E402


def _reload(daemon, sub, expect: str, what: str = "") -> None:
    """SIGHUP, then the daemon's reload status, which must be ``expect`` (``reloaded`` or
    ``reload_failed``); ``what`` names the case in a failure."""
    daemon.send_signal(signal.SIGHUP)
    assert sub.pump(5, lambda e: e.get("state") in ("reloaded", "reload_failed")), what
    assert sub.events[-1][1]["state"] == expect, what


def _stopped_reload_failures(daemon) -> list[str]:
    """SIGTERM: the daemon must stop cleanly (exit 0); its "reload failed" log lines."""
    daemon.send_signal(signal.SIGTERM)
    out, _ = daemon.communicate(timeout=10)
    assert daemon.returncode == 0, out[-2000:]
    return [ln for ln in out.splitlines() if "reload failed" in ln]


def _start(tmp_path, ctx, config: str, repeat: int, *flags: str):
    """The daemon on a paced stream of the test clips, with ``config`` as its TOML file,
    ``flags`` and a subscriber; returns (daemon, subscriber, config path)."""
    wav = tmp_path / "long.wav"
    make_stream(wav, repeat=repeat)
    cfg = tmp_path / "aerd.toml"
    cfg.write_text(config)
    ep = f"ipc://{tmp_path}/a.sock"
    sub = Sub(ep, ctx)
    return (spawn("run", "--config", str(cfg), "--input", str(wav), "--endpoint", ep, *flags),
            sub, cfg)


def test_sighup_reloads_without_dropping_socket(tmp_path, ctx):
    daemon, sub, cfg = _start(tmp_path, ctx, "[decision]\nsmoothing = 3\n[adapt]\nenabled = false\n",
                              4, "--status-interval", "0.5")
    try:
        assert sub.pump(15, lambda e: e["topic"] == "emotion")
        assert sub.pump(5, lambda e: e["topic"] == "status" and e["windows"] > 0)
        cfg.write_text("[decision]\nsmoothing = 1\n[adapt]\nenabled = false\n")
        daemon.send_signal(signal.SIGHUP)
        last_start = max(e["start"] for _, e in sub.events if e["topic"] == "emotion")
        windows_before = max(e["windows"] for _, e in sub.events if e["topic"] == "status")
        assert sub.pump(5, lambda e: e.get("state") == "reloaded"), "no reloaded status"
        assert sub.events[-1][1]["windows"] >= windows_before, "counters restarted at reload"
        assert sub.pump(10, lambda e: e["topic"] == "emotion"), "no events after reload"
        assert sub.events[-1][1]["start"] > last_start, "stream time restarted at reload"
        cfg.write_text("[decision]\nsmoothing = 0\n")   # bad: the running pipeline must stay
        _reload(daemon, sub, "reload_failed")
        assert sub.pump(10, lambda e: e["topic"] == "emotion")
        assert daemon.poll() is None
        daemon.send_signal(signal.SIGTERM)
        out, _ = daemon.communicate(timeout=10)
        assert sub.pump(5, lambda e: e.get("state") == "stopping")
        last = sub.events[-1][1]
        # the closing log line counts across the reloads, like the status events
        assert f"{last['windows']} windows, {last['events']} events" in out, out[-300:]
    finally:
        stop_process(daemon)
        sub.close()
    seqs = [e["seq"] for _, e in sub.events]
    assert seqs == sorted(seqs)
    # one daemon run across the reloads, as seq goes on: no subscriber takes them for restarts
    runs = {e["run"] for _, e in sub.events}
    assert len(runs) == 1 and len(runs.pop()) == 16, runs
    assert {e["status_interval_s"] for _, e in sub.events if e["topic"] == "status"} == {0.5}


def test_a_reload_loses_no_window_unless_the_windows_change(tmp_path, ctx):
    """Same features and windows (here: only the decision changes): the window stream goes
    on, one event every hop across the reload. Another model (seed180's features): its
    windows start afresh, after the reload's stream time."""
    daemon, sub, cfg = _start(tmp_path, ctx, "[decision]\nmin_speech = 0\n[adapt]\nenabled = false\n",
                              4)
    try:
        assert sub.pump(15, lambda e: e["topic"] == "emotion")
        cfg.write_text("[decision]\nmin_speech = 0\nhysteresis = 0.2\n[adapt]\nenabled = false\n")
        daemon.send_signal(signal.SIGHUP)
        assert sub.pump(5, lambda e: e.get("state") == "reloaded")
        reloaded_at = sub.events[-1][1]["audio_s"]
        assert sub.pump(10, lambda e: e["topic"] == "emotion" and e["start"] > reloaded_at)
        starts = [e["start"] for _, e in sub.events if e["topic"] == "emotion"]
        assert [round(b - a, 3) for a, b in zip(starts, starts[1:])] == [0.5] * (len(starts) - 1)

        cfg.write_text("[model]\npath = \"seed180\"\n[decision]\nmin_speech = 0\n")
        daemon.send_signal(signal.SIGHUP)
        assert sub.pump(5, lambda e: e.get("state") == "reloaded")
        reloaded_at = sub.events[-1][1]["audio_s"]
        assert sub.pump(10, lambda e: e["topic"] == "emotion" and "seed180" in e["model"])
        first = sub.events[-1][1]
        assert first["start"] >= reloaded_at - 0.05 and round(first["end"] - first["start"], 3) == 3.0
    finally:
        stop_process(daemon)
        sub.close()


def _card(tmp_path, name, **changes):
    """A copy of the shipped default card (graphs by absolute path) with ``changes``."""
    card = json.loads((REPO / "models" / "default.json").read_text())
    for key in ("onnx", "adapt_onnx"):
        if key in card:
            card[key] = str(REPO / "models" / card[key])
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        d = card
        for p in parents:
            d = d[p]
        d[leaf] = value
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(card))
    return path


def _adapted_then_reloaded(daemon, sub) -> None:
    """Wait for adapted events, SIGHUP, and check the first event after it is still adapted."""
    assert sub.pump(30, lambda e: e["topic"] == "emotion" and e["adapted"]), "never adapted"
    daemon.send_signal(signal.SIGHUP)
    assert sub.pump(5, lambda e: e.get("state") == "reloaded")
    assert sub.pump(10, lambda e: e["topic"] == "emotion")
    assert sub.events[-1][1]["adapted"], "the reload restarted the adaptation"


def test_reload_keeps_adaptation_when_not_persisted(tmp_path, ctx):
    """[adapt] persist = false: the statistics carry over in memory."""
    daemon, sub, _ = _start(tmp_path, ctx, f'[service]\nstate_dir = "{tmp_path / "state"}"\n'
                            '[adapt]\npersist = false\n', repeat=2)
    try:
        _adapted_then_reloaded(daemon, sub)
    finally:
        stop_process(daemon)
        sub.close()
    assert not (tmp_path / "state").exists()


def test_reload_keeps_adaptation_and_refuses_bad_models(tmp_path, ctx):
    state = tmp_path / "state"
    daemon, sub, cfg = _start(tmp_path, ctx, f'[service]\nstate_dir = "{state}"\n', repeat=4)
    try:
        _adapted_then_reloaded(daemon, sub)   # learned since start, never saved yet
        bad = [("min_audio_s", _card(tmp_path, "text", min_audio_s="abc")),
               ("adaptation", _card(tmp_path, "list", adaptation=[1, 2])),
               ("8000 Hz", _card(tmp_path, "rate", **{"features.sample_rate": 8000,
                                                        "features.fmax": 4000.0}))]
        for needle, card in bad:
            cfg.write_text(f'[service]\nstate_dir = "{state}"\n[model]\npath = "{card}"\n')
            _reload(daemon, sub, "reload_failed", needle)
            assert sub.pump(10, lambda e: e["topic"] == "emotion"), f"no events after {needle}"
            assert daemon.poll() is None, needle
        failures = _stopped_reload_failures(daemon)
    finally:
        stop_process(daemon)
        sub.close()
    assert len(failures) == 3, failures
    for (needle, _), line in zip(bad, failures):
        assert needle in line, line


def test_a_reload_onto_changed_features_does_not_carry_the_statistics_over(tmp_path, ctx):
    """A model of the same name whose features changed (an upgrade's retrained `default`
    with another spectral floor, then `systemctl reload`): the statistics learned on the old
    features must not carry over in memory (and be saved as the new model's) any more than
    a file saved for other features is loaded; the adaptation warms up afresh."""
    state = tmp_path / "state"
    daemon, sub, cfg = _start(tmp_path, ctx, f'[service]\nstate_dir = "{state}"\n', repeat=4)
    upgraded = _card(tmp_path, "upgraded", **{
        "features.spectral_floor_db": -65.0,
        "adaptation.onnx": str(REPO / "models" / "default.adapt.onnx")})
    try:
        assert sub.pump(30, lambda e: e["topic"] == "emotion" and e["adapted"]), "never adapted"
        cfg.write_text(f'[service]\nstate_dir = "{state}"\n[model]\npath = "{upgraded}"\n')
        _reload(daemon, sub, "reloaded")
        assert sub.pump(15, lambda e: e["topic"] == "emotion"), "no events after the reload"
        assert not sub.events[-1][1]["adapted"], "the old features' statistics carried over"
    finally:
        stop_process(daemon)
        sub.close()


def test_saves_that_fail_mid_run_are_counted_in_the_status_events(tmp_path, ctx):
    """A save of the adaptation state that fails mid-run (here the state directory is replaced
    by a file, which fails the save as a full disk or a read-only remount does, also for root)
    was a log line only: subscribers could not tell that the device's statistics lived in
    memory only. Status events count the failed saves in a row (a reload saves first, then
    says "reloaded"); the daemon goes on, and the count is 0 again once a save works."""
    state = tmp_path / "state"
    saved = state / "adapt-default.json"
    daemon, sub, _ = _start(tmp_path, ctx, f'[service]\nstate_dir = "{state}"\n', repeat=4)

    def save_by_reload() -> dict:
        assert sub.pump(15, lambda e: e["topic"] == "emotion"), "no speech: nothing new to save"
        daemon.send_signal(signal.SIGHUP)
        assert sub.pump(5, lambda e: e.get("state") in ("reloaded", "reload_failed"))
        return sub.events[-1][1]

    try:
        assert save_by_reload()["save_errors"] == 0 and saved.exists()
        n_saved = json.loads(saved.read_text())["n"]
        state.rename(tmp_path / "away")
        state.write_text("")
        assert [save_by_reload()["save_errors"] for _ in range(2)] == [1, 2]
        assert daemon.poll() is None
        state.unlink()
        (tmp_path / "away").rename(state)
        assert save_by_reload()["save_errors"] == 0
        assert json.loads(saved.read_text())["n"] > n_saved
    finally:
        stop_process(daemon)
        sub.close()


COUNT_MODELS = """
import gc, sys, threading, time, weakref
import aerd.model as am
alive = weakref.WeakSet()
init = am.Model.__init__
def track(self, *a, **k):
    init(self, *a, **k)
    alive.add(self)
am.Model.__init__ = track
def report():
    while True:
        time.sleep(0.5)
        gc.collect()
        print(f"MODELS {len(alive)}", file=sys.stderr, flush=True)
threading.Thread(target=report, daemon=True).start()
from aerd.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_reload_frees_the_previous_model(tmp_path, ctx):
    """After SIGHUP only the new model (and its onnxruntime sessions) is alive: the first one
    was kept by the reload code before, about 8 MB for the life of the process. (SIGHUP only
    once an event shows the daemon's handlers are in: before, it would kill the process.)"""
    import subprocess
    import threading
    import time

    from e2e_helpers import aerd_cmd, env

    wav = tmp_path / "long.wav"
    make_stream(wav, repeat=2)
    ep = f"ipc://{tmp_path}/f.sock"
    sub = Sub(ep, ctx)
    cmd = [aerd_cmd()[0], "-c", COUNT_MODELS, "run", "--input", str(wav), "--no-adapt",
           "--endpoint", ep]
    p = subprocess.Popen(cmd, env=env(), cwd=REPO, stderr=subprocess.PIPE, text=True,
                         stdout=subprocess.PIPE)
    counts: list[tuple[float, int]] = []   # (arrival, live models) of each MODELS report

    def reports():
        for line in p.stderr:
            if line.startswith("MODELS "):
                counts.append((time.monotonic(), int(line.split()[1])))

    reader = threading.Thread(target=reports, daemon=True)
    reader.start()
    try:
        assert sub.pump(15, lambda e: e["topic"] == "emotion"), "the daemon did not come up"
        p.send_signal(signal.SIGHUP)
        assert sub.pump(10, lambda e: e.get("state") == "reloaded"), "no reloaded status"
        reloaded = time.monotonic()
        deadline = reloaded + 10   # the second report after it was counted after the reload
        while sum(t > reloaded for t, _ in counts) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)
        out = p.stdout.read()
        reader.join(5)
    finally:
        stop_process(p)
        sub.close()
    assert "reloaded: model" in out, out[-1000:]   # the reload happened
    after = [n for t, n in counts if t > reloaded]
    assert len(after) >= 2 and after[-1] == 1, counts


def test_a_reload_applies_the_new_log_level(tmp_path, ctx):
    """[service] log_level changed in the file: the reload applies it (it was kept silently
    at the level of the start, so `log_level = "debug"` + reload showed nothing more)."""
    daemon, sub, cfg = _start(tmp_path, ctx, '[service]\nlog_level = "info"\n[adapt]\nenabled = false\n', 2)
    try:
        assert sub.pump(15, lambda e: e["topic"] == "emotion")
        cfg.write_text('[service]\nlog_level = "error"\n[adapt]\nenabled = false\n')
        daemon.send_signal(signal.SIGHUP)
        assert sub.pump(5, lambda e: e.get("state") == "reloaded")
        daemon.send_signal(signal.SIGTERM)
        out, _ = daemon.communicate(timeout=10)
    finally:
        stop_process(daemon)
        sub.close()
    assert "audio flowing" in out, out[-1000:]          # info lines before the reload
    assert "stopped after" not in out, out[-1000:]      # none after it


def test_a_reload_tells_systemd_reloading_then_ready(tmp_path, ctx):
    """`systemctl reload` (SIGHUP): RELOADING=1 with MONOTONIC_USEC, then READY=1 once the
    new config is in, or refused (the old pipeline runs on). Without the READY=1 systemd
    holds the unit in "reloading" until its timeout, whatever the reload's outcome."""
    import socket

    from e2e_helpers import env

    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(0.2)

    def drain() -> list[str]:
        msgs = []
        while True:
            try:
                msgs.append(notify.recv(4096).decode())
            except socket.timeout:
                return msgs

    wav = tmp_path / "long.wav"
    make_stream(wav, repeat=3)
    cfg = tmp_path / "aerd.toml"
    cfg.write_text("[adapt]\nenabled = false\n")
    ep = f"ipc://{tmp_path}/a.sock"
    sub = Sub(ep, ctx)
    daemon = spawn("run", "--config", str(cfg), "--input", str(wav), "--endpoint", ep,
                   env={**env(), "NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
    try:
        assert sub.pump(15, lambda e: e["topic"] == "emotion")
        assert "READY=1" in drain()   # the start's
        for text, state in (("[decision]\nhysteresis = 0.2\n[adapt]\nenabled = false\n", "reloaded"),
                            ("[decision]\nsmoothing = 0\n", "reload_failed")):
            cfg.write_text(text)
            _reload(daemon, sub, state)
            msgs = [m for m in drain() if not m.startswith("STATUS=")]
            assert len(msgs) == 2 and msgs[1] == "READY=1", (state, msgs)
            assert msgs[0].startswith("RELOADING=1\nMONOTONIC_USEC="), (state, msgs)
        assert daemon.poll() is None
    finally:
        stop_process(daemon)
        sub.close()
        notify.close()
    assert daemon.returncode == 0


def test_a_config_read_from_a_pipe_is_not_read_again_as_empty(tmp_path, ctx):
    """`aerd run --config <(envsubst < aerd.toml)`: the pipe is read at start; at SIGHUP it
    was read again, gave nothing, and the daemon "reloaded" the defaults (here smoothing
    back to 1 and the log level back to info) without a word. Now the reload is refused,
    saying why, and the running settings stay. (A named FIFO that someone serves again at
    each reload still reloads: tests/test_signals.py.)"""
    import os

    wav = tmp_path / "long.wav"
    make_stream(wav, repeat=4)
    ep = f"ipc://{tmp_path}/p.sock"
    sub = Sub(ep, ctx)
    r, w = os.pipe()
    os.write(w, b"[decision]\nsmoothing = 3\n[adapt]\nenabled = false\n")
    os.close(w)
    daemon = spawn("run", "--config", f"/dev/fd/{r}", "--input", str(wav), "--endpoint", ep,
                   pass_fds=(r,))
    os.close(r)
    try:
        assert sub.pump(15, lambda e: e["topic"] == "emotion")
        _reload(daemon, sub, "reload_failed")
        assert sub.pump(10, lambda e: e["topic"] == "emotion")
        failed = _stopped_reload_failures(daemon)
    finally:
        stop_process(daemon)
        sub.close()
    assert len(failed) == 1 and f"/dev/fd/{r}: empty at this reload" in failed[0], failed
