"""Fleet and security with the real daemon: two daemons through one relay; CURVE end to end."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_helpers import free_tcp_port, json_lines, make_stream, run, spawn  # noqa: E402


def _stop(*procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        if p.returncode is not None and p.stdout.closed:
            continue
        try:
            out, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        p.err_text = err or ""   # kept for the failure message


def test_two_daemons_through_one_relay(tmp_path):
    wav = tmp_path / "s.wav"
    make_stream(wav)
    front, back = f"ipc://{tmp_path}/front.sock", f"ipc://{tmp_path}/back.sock"
    relay = spawn("relay", "--frontend", front, "--backend", back)
    listener = spawn("listen", "--endpoint", back, "--topic", "emotion", "--timeout", "40")
    time.sleep(0.5)
    daemons = [spawn("run", "--connect", front, "--device-id", dev, "--input", str(wav), "--no-adapt",
                     "--fast", "--wait-subscriber", "10")
               for dev in ("pi-kitchen", "pi-hall")]
    try:
        deadline = time.monotonic() + 40   # both daemons play their file (--fast) and exit
        while time.monotonic() < deadline and any(d.poll() is None for d in daemons):
            time.sleep(0.5)
        _stop(*daemons)
        time.sleep(1.5)
        listener.send_signal(signal.SIGTERM)
        out, listener.err_text = listener.communicate(timeout=10)
        seen = {e["device_id"] for e in json_lines(out)}
    finally:
        _stop(*daemons, listener, relay)
    why = " | ".join(f"{name} rc={p.returncode}: {getattr(p, 'err_text', '')[-300:]}"
                     for name, p in (("relay", relay), ("listener", listener),
                                     ("kitchen", daemons[0]), ("hall", daemons[1])))
    assert seen == {"pi-kitchen", "pi-hall"}, why
    assert relay.returncode == 0, why


def test_curve_authorised_subscriber_gets_events_unknown_key_none(tmp_path):
    keys = tmp_path / "keys"
    for name in ("server", "alice", "mallory"):
        assert run("keygen", str(keys / name), "--name", name).returncode == 0
    clients = tmp_path / "clients"
    clients.mkdir()
    (clients / "alice.key").write_bytes((keys / "alice" / "alice.key").read_bytes())
    wav = tmp_path / "s.wav"
    make_stream(wav)
    ep = f"tcp://127.0.0.1:{free_tcp_port()}"
    common = ["--endpoint", ep, "--timeout", "10", "--server-key", str(keys / "server" / "server.key")]
    alice = spawn("listen", *common, "--count", "2", "--key", str(keys / "alice" / "alice.key_secret"))
    mallory = spawn("listen", *common, "--count", "1", "--key", str(keys / "mallory" / "mallory.key_secret"))
    plain = spawn("listen", "--endpoint", ep, "--count", "1", "--timeout", "10")
    time.sleep(0.3)
    daemon = spawn("run", "--endpoint", ep, "--input", str(wav), "--no-adapt",
                   "--curve-secret", str(keys / "server" / "server.key_secret"),
                   "--curve-clients", str(clients))
    try:
        a_out, _ = alice.communicate(timeout=40)
        m_out, _ = mallory.communicate(timeout=40)
        p_out, _ = plain.communicate(timeout=40)
    finally:
        _stop(daemon, alice, mallory, plain)
    assert alice.returncode == 0 and len([e for e in json_lines(a_out) if e["topic"] == "emotion"]) >= 2
    assert mallory.returncode == 1 and json_lines(m_out) == []
    assert plain.returncode == 1 and json_lines(p_out) == []


def test_non_loopback_without_curve_is_refused_and_insecure_overrides(tmp_path):
    wav = tmp_path / "s.wav"
    make_stream(wav)
    r = run("run", "--endpoint", "tcp://0.0.0.0:5599", "--input", str(wav), "--fast")
    assert r.returncode == 2 and "CURVE" in r.stderr
    r = run("run", "--connect", "tcp://192.0.2.7:5599", "--input", str(wav), "--fast")
    assert r.returncode == 2 and "CURVE" in r.stderr and "--connect" in r.stderr
    # --insecure: allowed, loudly (bind on all interfaces of this machine only; no traffic sent)
    port = free_tcp_port()
    r = run("run", "--endpoint", f"tcp://0.0.0.0:{port}", "--insecure", "--input", str(wav), "--fast",
            "--no-adapt")
    assert r.returncode == 0 and "INSECURE" in r.stdout
