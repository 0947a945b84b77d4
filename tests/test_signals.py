"""Signals at every phase of the daemon's life, on the real daemon in a subprocess.

Start-up is held at a known point by giving the daemon its config as a FIFO: it blocks reading
it until the test writes the config, so a signal sent meanwhile lands before the model is
loaded and the socket bound."""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_helpers import CLIPS, Sub, spawn, stop_process  # noqa: E402

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
