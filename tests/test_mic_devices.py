"""Choosing the microphone (`--device`, `[input] device`) against a real PortAudio device list:
a user-space PulseAudio server (tests/pulse_server.py) and more ALSA devices on it, added and
removed between device scans as USB microphones are."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_helpers import Sub, env, run, spawn, stop_process  # noqa: E402
from pulse_server import PulseServer, pulse_available  # noqa: E402

needs_pulse = pytest.mark.skipif(pulse_available() is not None, reason=pulse_available() or "")


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


@needs_pulse
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


@needs_pulse
def test_a_name_that_matches_two_devices_is_refused(tmp_path):
    """`--device usb` with two USB microphones took the first one without a word."""
    with PulseServer(tmp_path / "pa", alsa_devices=("usbA", "usbB")) as server:
        r = run("run", "--device", "usb", "--endpoint", f"ipc://{tmp_path}/a.sock", "--no-adapt",
                env=server.client_env(env()), timeout=30)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2, r.stderr[-1500:]
    assert "--device 'usb'" in last and "usbA" in last and "usbB" in last, last


@needs_pulse
def test_a_device_chosen_by_index_stays_that_device_after_a_replug(tmp_path, ctx):
    """`--device 1` opened usbA; the sound server went away and came back with the devices in
    another order (a USB microphone plugged again, another one first): the reopen took what
    index 1 now named, another microphone, and said only 'ok'. Now it is usbA at its new index,
    and while usbA is missing the input is lost, naming it."""
    server = PulseServer(tmp_path / "pa", alsa_devices=("usbA", "usbB")).start()
    ep = f"ipc://{tmp_path}/i.sock"
    sub = Sub(ep, ctx)
    daemon = spawn("run", "--endpoint", ep, "--no-adapt", "--status-interval", "0.5",
                   "--device", "1", env=server.client_env(env()))

    def back_with(devices):
        server.kill()
        assert sub.pump(10, lambda e: e["topic"] == "status" and e["input"] == "lost")
        server.set_alsa_devices(devices)
        server.start()
        sub.pump(5)   # retries at 0.5, 1, 2 s after the loss
        return [e for _, e in sub.events if e["topic"] == "status"][-1]

    try:
        assert sub.pump(20, lambda e: e["topic"] == "status" and e["input"] == "ok")
        assert sub.events[-1][1]["detail"].startswith("usbA @"), sub.events[-1][1]
        last = back_with(("usbB", "usbA"))
        assert last["input"] == "ok" and last["detail"].startswith("usbA @"), last
        last = back_with(("usbB",))
        assert last["input"] == "lost" and "'usbA'" in last["detail"], last
        assert daemon.poll() is None
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=10)
    finally:
        stop_process(daemon)
        sub.close()
        server.stop()
    assert daemon.returncode == 0


def test_an_index_finds_its_alsa_card_under_another_card_number():
    """PortAudio names an ALSA card's device "NAME (hw:CARD,DEV)"; a USB microphone plugged
    again may be another card. (No sound card here: the list is as PortAudio gives one.)"""
    from aerd.devices import find_device
    from aerd.errors import AudioError

    listed = [dict(index=0, name="HDA Intel PCH: ALC3246 Analog (hw:0,0)"),
              dict(index=1, name="USB PnP Sound Device: Audio (hw:2,0)"),
              dict(index=2, name="default")]
    assert find_device("3", listed, pinned="USB PnP Sound Device: Audio (hw:1,0)") == 1
    twins = listed + [dict(index=3, name="USB PnP Sound Device: Audio (hw:3,0)")]
    with pytest.raises(AudioError, match="not told apart"):
        find_device("1", twins, pinned="USB PnP Sound Device: Audio (hw:1,0)")


@needs_pulse
def test_a_device_from_the_config_file_is_named_as_its_key(tmp_path):
    """`[input] device` in the config file was blamed on a --device flag nobody gave."""
    cfg = tmp_path / "aerd.toml"
    cfg.write_text('[input]\ndevice = "no-such-mic"\n')
    with PulseServer(tmp_path / "pa") as server:
        r = run("run", "--config", str(cfg), "--endpoint", f"ipc://{tmp_path}/c.sock",
                "--no-adapt", env=server.client_env(env()), timeout=30)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2, r.stderr[-1500:]
    assert f"{cfg}: [input] device 'no-such-mic'" in last and "--device 'no" not in last, last


_LONG_LOSS = """
import json, os, sys, time
import sounddevice as sd
from aerd.mic import MicSource
calls = [0]
real = sd._initialize
def counted():
    calls[0] += 1
    return real()
sd._initialize = counted
src = MicSource("no-such-microphone-xyz", 16000, wait=True, max_backoff_s=0.05,
                long_trouble_s=0.5, long_backoff_s=0.05)
def read_for(s):
    t = time.monotonic()
    while time.monotonic() - t < s:
        assert src.read(timeout=0.05) is None and src.state == "lost", src.detail
read_for(2.5)
before = calls[0]
open(os.path.join(os.environ["XDG_RUNTIME_DIR"], "pipewire-0"), "w").close()   # a server came
read_for(0.5)
print(json.dumps({"reinits_long": before, "reinits_after_change": calls[0] - before}))
src.close()
"""


def test_a_long_loss_reinitialises_portaudio_only_when_the_sound_devices_change(tmp_path):
    """Each PortAudio re-initialisation leaks about 12 KB (ALSA's, measured: 2000 of them
    took RSS from 50 to 75 MB), and every retry of a lost microphone did one: after 5 minutes of
    trouble one a minute, 17 MB a day, 0.5 GB in a month with a microphone unplugged. Past
    ``long_trouble_s`` a retry now re-initialises only when /dev/snd or a sound server's
    socket changed (or once an hour): a new socket file under XDG_RUNTIME_DIR makes the next
    retry re-initialise, and only that one."""
    pytest.importorskip("sounddevice", reason="PortAudio (libportaudio2) is not installed")
    child_env = {**env(), "XDG_RUNTIME_DIR": str(tmp_path)}
    child_env.pop("PULSE_SERVER", None)
    r = subprocess.run([sys.executable, "-c", _LONG_LOSS], capture_output=True, text=True,
                       timeout=60, env=child_env)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    # retries every 0.05 s after 0.5 s of trouble: some 40 in 2.5 s; re-initialised: the
    # first ones (the first 0.5 s) only
    assert got["reinits_long"] <= 4, got
    assert got["reinits_after_change"] == 1, got
