"""Choosing the microphone (`--device`, `[input] device`) against a real PortAudio device list:
a user-space PulseAudio server (tests/pulse_server.py) and more ALSA devices on it, added and
removed between device scans as USB microphones are."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_helpers import Sub, env, run, spawn, stop_process  # noqa: E402
from pulse_server import PulseServer, pulse_available  # noqa: E402

pytestmark = pytest.mark.skipif(pulse_available() is not None, reason=pulse_available() or "")


def _opened(tmp_path, ctx, server, *args, name="d"):
    """Start `aerd run` on the virtual microphone; the status detail once input is ok."""
    ep = f"ipc://{tmp_path}/{name}.sock"
    sub = Sub(ep, ctx)
    daemon = spawn("run", "--endpoint", ep, "--no-adapt", "--status-interval", "0.5", *args,
                   env=server.client_env(env()))
    try:
        ok = sub.pump(20, lambda e: e["topic"] == "status" and e["input"] == "ok")
        detail = sub.events[-1][1]["detail"] if ok else None
    finally:
        stop_process(daemon)
        sub.close()
    return detail, daemon


def test_a_device_name_is_matched_exactly_before_as_a_substring(tmp_path, ctx):
    """`--device default`, as `aerd devices` lists it, opened the first device whose name
    contains 'default' (ALSA lists `sysdefault` before `default`; here `mydefault`)."""
    with PulseServer(tmp_path / "pa", alsa_devices=("mydefault",)) as server:
        listed = run("devices", env=server.client_env(env()), timeout=60)
        assert listed.returncode == 0, listed.stderr
        names = [ln.split()[1] for ln in listed.stdout.splitlines()]
        assert names.index("mydefault") < names.index("default"), names
        detail, daemon = _opened(tmp_path, ctx, server, "--device", "default")
    assert detail is not None and detail.startswith("default @"), detail
    assert daemon.returncode == 0


def test_a_name_that_matches_two_devices_is_refused(tmp_path):
    """`--device usb` with two USB microphones took the first one without a word."""
    with PulseServer(tmp_path / "pa", alsa_devices=("usbA", "usbB")) as server:
        r = run("run", "--device", "usb", "--endpoint", f"ipc://{tmp_path}/a.sock", "--no-adapt",
                env=server.client_env(env()), timeout=30)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2, r.stderr[-1500:]
    assert "--device 'usb'" in last and "usbA" in last and "usbB" in last, last
