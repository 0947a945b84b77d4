"""Signals at every phase of the daemon's life, on the real daemon in a subprocess.

Start-up is held at a known point by giving the daemon its config as a FIFO: it blocks reading
it until the test writes the config, so a signal sent meanwhile lands before the model is
loaded and the socket bound."""

from __future__ import annotations

import errno
import os
import signal
import socket
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_helpers import CLIPS, Sub, env, spawn, stop_process  # noqa: E402

CONFIG = "[adapt]\nenabled = false\n"


def _serve_config(fifo: Path, daemon, text: str = CONFIG, hold_s: float = 0.0,
                  before_write=None, timeout: float = 30.0) -> None:
    """Wait until the daemon opens the FIFO for reading (it is then blocked in the read),
    call ``before_write``, wait ``hold_s``, then hand it ``text`` and end the file."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as e:
            if e.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            if daemon.poll() is not None:
                pytest.fail(f"the daemon exited {daemon.returncode} before reading its config")
            time.sleep(0.01)
    try:
        if before_write is not None:
            before_write()
        time.sleep(hold_s)
        os.write(fd, text.encode())
    except BrokenPipeError:   # the daemon is gone: the caller's checks say how it ended
        pass
    finally:
        os.close(fd)


def _start(tmp_path: Path):
    fifo = tmp_path / "aerd.toml"
    os.mkfifo(fifo)
    ep = f"ipc://{tmp_path}/sig.sock"
    daemon = spawn("run", "--config", str(fifo), "--input", str(CLIPS[0]), "--endpoint", ep,
                   "--status-interval", "0.5")
    return daemon, fifo, ep


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_during_start_up_exits_cleanly(tmp_path, sig):
    """SIGTERM (or ^C) before the model is loaded: the daemon finishes starting, stops at
    once, and exits 0 like any stop, with its socket file removed (it was killed by the
    signal, or exited 130 from a KeyboardInterrupt)."""
    daemon, fifo, _ep = _start(tmp_path)
    try:
        _serve_config(fifo, daemon, hold_s=0.3, before_write=lambda: daemon.send_signal(sig))
        t = time.monotonic()
        out, err = daemon.communicate(timeout=30)
        took = time.monotonic() - t
    finally:
        stop_process(daemon)
    assert daemon.returncode == 0, (daemon.returncode, err[-1500:])
    assert "stopped after" in out, out[-1500:]
    assert took < 3.0, took   # not after the 4 s file
    assert not (tmp_path / "sig.sock").exists()


def test_sighup_during_start_up_reloads_once_running(tmp_path, ctx):
    """systemctl reload (SIGHUP) before the model is loaded: not fatal (SIGHUP's default
    action killed the daemon), and not lost: the daemon reloads once it runs."""
    daemon, fifo, ep = _start(tmp_path)
    sub = Sub(ep, ctx)
    try:
        _serve_config(fifo, daemon, hold_s=0.3, before_write=lambda: daemon.send_signal(signal.SIGHUP))
        deadline = time.monotonic() + 20   # bound: the first read of the config is over
        while not (tmp_path / "sig.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        # the reload reads the config again: serve it once more, after the subscriber is in
        _serve_config(fifo, daemon, hold_s=1.0, timeout=20)
        assert sub.pump(10, lambda e: e.get("state") in ("reloaded", "reload_failed")), \
            f"no reload: exit {daemon.poll()}"
        assert sub.events[-1][1]["state"] == "reloaded"
        out, err = daemon.communicate(timeout=30)
    finally:
        stop_process(daemon)
        sub.close()
    assert daemon.returncode == 0, (daemon.returncode, err[-1500:])


def _notify_socket(tmp_path: Path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(tmp_path / "notify.sock"))
    s.settimeout(0.1)
    return s, str(tmp_path / "notify.sock")


def _drain(s: socket.socket, seconds: float) -> list[str]:
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            out.append(s.recv(4096).decode())
        except socket.timeout:
            pass
    return out


def test_a_reload_before_audio_flows_does_not_report_ready(tmp_path, ctx):
    """READY=1 means audio flows: a SIGHUP while stdin has delivered nothing yet reloads,
    but tells systemd nothing (its READY=1 made systemd count the service as started);
    once running, a reload is RELOADING=1 ... READY=1."""
    notify, path = _notify_socket(tmp_path)
    ep = f"ipc://{tmp_path}/r.sock"
    sub = Sub(ep, ctx)
    r, w = os.pipe()
    daemon = spawn("run", "--input", "-", "--endpoint", ep, "--no-adapt",
                   env={**env(), "NOTIFY_SOCKET": path}, stdin=r)
    os.close(r)
    try:
        assert sub.pump(15, lambda e: e["topic"] == "status"), f"not up: {daemon.poll()}"
        daemon.send_signal(signal.SIGHUP)
        assert sub.pump(10, lambda e: e.get("state") == "reloaded")
        before = _drain(notify, 0.5)
        os.write(w, np.zeros(16000, "<i2").tobytes())
        after = _drain(notify, 1.5)
        daemon.send_signal(signal.SIGHUP)   # once ready, a reload is bracketed for systemd
        running = [ln for m in _drain(notify, 2.0) for ln in m.splitlines()]
    finally:
        os.close(w)
        stop_process(daemon)
        sub.close()
        notify.close()
    lines = [ln for m in before for ln in m.splitlines()]
    assert "READY=1" not in lines and "RELOADING=1" not in lines, before
    assert "READY=1" in [ln for m in after for ln in m.splitlines()], after
    assert "RELOADING=1" in running and "READY=1" in running[running.index("RELOADING=1"):], running


def test_a_read_error_on_stdin_ends_the_input_like_a_damaged_file(tmp_path, ctx):
    """stdin a TCP connection that is reset (ECONNRESET on read): the input ends with the
    error, the daemon stops as after any end (status ``stopping``) and exits 1 with one line
    naming it, as for a damaged file; it died of a traceback, without a stopping status."""
    srv = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    srv.close()
    ep = f"ipc://{tmp_path}/rst.sock"
    sub = Sub(ep, ctx)
    daemon = spawn("run", "--input", "-", "--endpoint", ep, "--no-adapt",
                   "--status-interval", "0.5", stdin=conn.fileno())
    conn.close()
    try:
        client.sendall(np.zeros(16000, "<i2").tobytes())
        assert sub.pump(15, lambda e: e["topic"] == "status" and e["audio_s"] > 0), daemon.poll()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()   # a reset, not an end of file
        out, err = daemon.communicate(timeout=10)
        sub.pump(1.0, lambda e: e.get("state") == "stopping")
    finally:
        stop_process(daemon)
        sub.close()
    assert daemon.returncode == 1 and "Traceback" not in err, err[-1500:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "stdin" in lines[0] and "reset" in lines[0].lower(), err
    states = [(e.get("state"), e.get("input")) for _, e in sub.events if e["topic"] == "status"]
    assert states[-1] == ("stopping", "ended"), states


def test_a_second_stop_signal_ends_a_start_up_that_blocks(tmp_path):
    """Start-up blocked for good (here: a config FIFO nobody writes): the first SIGTERM is
    kept for when the daemon runs, a second one ends it there, with one line (before, only
    SIGKILL could)."""
    daemon, fifo, _ep = _start(tmp_path)
    fd = None
    try:
        deadline = time.monotonic() + 30
        while fd is None:   # the daemon has the FIFO open; it now waits for the config's text
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                assert time.monotonic() < deadline and daemon.poll() is None
                time.sleep(0.01)
        daemon.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert daemon.poll() is None, "the first SIGTERM during start-up must not end it"
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=5)
    finally:
        stop_process(daemon)
        if fd is not None:
            os.close(fd)
    assert daemon.returncode == 2, (daemon.returncode, err[-800:])
    assert err.strip().splitlines()[-1] == ("aerd run: error: stopped by a second SIGTERM "
                                            "during start-up"), err[-800:]
