"""A sound server that stops answering (the PulseAudio process stopped with SIGSTOP: its
socket stays open, nothing comes back). PortAudio calls against it block for a minute or two
(closing a stream 60 s, a re-initialisation 120 s, measured); the daemon must go on
publishing status, obey SIGTERM, and recover when the server answers again."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_helpers import Sub, env, spawn, stop_process  # noqa: E402
from pulse_server import PulseServer, pulse_available  # noqa: E402

pytestmark = pytest.mark.skipif(pulse_available() is not None, reason=pulse_available() or "")


def _status(e: dict, input_state: str | None = None) -> bool:
    return e["topic"] == "status" and (input_state is None or e["input"] == input_state)


def _start(tmp_path, ctx, extra_env=None):
    server = PulseServer(tmp_path / "pa").start()
    ep = f"ipc://{tmp_path}/h.sock"
    sub = Sub(ep, ctx)
    daemon = spawn("run", "--endpoint", ep, "--no-adapt", "--status-interval", "0.5",
                   env={**server.client_env(env()), **(extra_env or {})})
    return server, sub, daemon


def _cleanup(server, sub, daemon):
    if server.proc is not None and server.proc.poll() is None:
        os.kill(server.proc.pid, signal.SIGCONT)
    stop_process(daemon)
    sub.close()
    server.stop()


def test_a_hung_sound_server_is_reported_and_outlived(tmp_path, ctx):
    """The loop closed the lost stream itself and sat in Pa_CloseStream for 60 s: no status
    events, no watchdog, no SIGTERM. Now the status goes on, and audio comes back after."""
    server, sub, daemon = _start(tmp_path, ctx)
    try:
        assert sub.pump(20, lambda e: _status(e, "ok")), f"not up: {daemon.poll()}"
        os.kill(server.proc.pid, signal.SIGSTOP)
        assert sub.pump(5, lambda e: _status(e, "lost")), "the hung server was not reported"
        n0 = len(sub.events)
        sub.pump(4)
        later = [e for _, e in sub.events[n0:] if _status(e)]
        assert len(later) >= 5 and all(e["input"] == "lost" for e in later), later
        assert "no answer from PortAudio" in later[-1]["detail"], later[-1]
        os.kill(server.proc.pid, signal.SIGCONT)
        assert sub.pump(30, lambda e: _status(e, "ok")), "no recovery once the server answered"
        t = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=10)
        assert time.monotonic() - t < 2.5
    finally:
        _cleanup(server, sub, daemon)
    assert daemon.returncode == 0


def test_sigterm_while_portaudio_hangs_stops_at_once(tmp_path, ctx):
    server, sub, daemon = _start(tmp_path, ctx)
    try:
        assert sub.pump(20, lambda e: _status(e, "ok")), f"not up: {daemon.poll()}"
        os.kill(server.proc.pid, signal.SIGSTOP)
        assert sub.pump(5, lambda e: _status(e, "lost"))
        sub.pump(1)
        t = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        try:
            out, err = daemon.communicate(timeout=8)
        except Exception:   # noqa: BLE001 -- report the time, not a traceback of the wait
            pytest.fail(f"still running {time.monotonic() - t:.1f} s after SIGTERM")
        took = time.monotonic() - t
        sub.pump(0.5)
    finally:
        _cleanup(server, sub, daemon)
    assert daemon.returncode == 0 and took < 3.0, (daemon.returncode, took, err[-1500:])
    assert any(_status(e) and e["state"] == "stopping" for _, e in sub.events)
    assert "PortAudio has not answered" in out, out[-1500:]


def test_a_server_hung_at_start_is_waited_for_under_systemd(tmp_path, ctx):
    """Under systemd, a sound server that does not answer at start: the daemon opened the
    microphone before its loop and sat there for minutes (PortAudio's device scan); now it is
    a lost input after 10 s, and audio flows once the server answers."""
    import socket

    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    server = PulseServer(tmp_path / "pa").start()
    os.kill(server.proc.pid, signal.SIGSTOP)
    ep = f"ipc://{tmp_path}/h.sock"
    sub = Sub(ep, ctx)
    daemon = spawn("run", "--endpoint", ep, "--no-adapt", "--status-interval", "0.5",
                   env={**server.client_env(env()), "NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
    try:
        assert sub.pump(20, lambda e: _status(e, "lost")), f"nothing from the daemon: {daemon.poll()}"
        assert "did not answer" in sub.events[-1][1]["detail"], sub.events[-1][1]
        os.kill(server.proc.pid, signal.SIGCONT)
        assert sub.pump(150, lambda e: _status(e, "ok")), "no audio once the server answered"
    finally:
        _cleanup(server, sub, daemon)
        notify.close()
    assert daemon.returncode == 0


def test_sigterm_while_the_first_open_hangs_stops_at_once(tmp_path):
    """A stop during start-up is acted on once the daemon runs; the first open waited its
    full 10 s for a server that does not answer first (the unit's TimeoutStopSec is 10 s)."""
    server = PulseServer(tmp_path / "pa").start()
    os.kill(server.proc.pid, signal.SIGSTOP)
    daemon = spawn("run", "--endpoint", f"ipc://{tmp_path}/s.sock", "--no-adapt",
                   env={**server.client_env(env()), "NOTIFY_SOCKET": str(tmp_path / "nobody")})
    try:
        time.sleep(3.0)   # the model is loaded, the open waits
        assert daemon.poll() is None
        t = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=15)
        took = time.monotonic() - t
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
        stop_process(daemon)
        server.stop()
    assert daemon.returncode == 0 and took < 2.0, (daemon.returncode, took, err[-1500:])


def test_devices_with_a_hung_server_is_one_line_not_a_hang(tmp_path):
    """`aerd devices` sat in PortAudio's device scan for two minutes, deaf to ^C."""
    from e2e_helpers import run

    server = PulseServer(tmp_path / "pa").start()
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        t = time.monotonic()
        r = run("devices", env=server.client_env(env()), timeout=30)
        took = time.monotonic() - t
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()
    assert r.returncode == 2 and took < 15, (r.returncode, took)
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("aerd devices: error:") and "did not answer" in last, r.stderr[-1500:]


def test_run_by_hand_against_a_hung_server_says_so(tmp_path):
    """By hand (no systemd), the microphone is not waited for: one line, exit 2. The line
    went to /dev/null: sounddevice points fd 2 there while PortAudio initialises."""
    from e2e_helpers import run

    server = PulseServer(tmp_path / "pa").start()
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        r = run("run", "--endpoint", f"ipc://{tmp_path}/r.sock", "--no-adapt",
                env=server.client_env(env()), timeout=40)
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and lines, (r.returncode, r.stderr[-1500:], r.stdout[-1500:])
    assert lines[-1].startswith("aerd run: error: no usable microphone") and \
        "did not answer within 10 s" in lines[-1], lines[-1]
