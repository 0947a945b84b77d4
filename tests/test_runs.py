"""A daemon restart as a subscriber sees it: every event names its daemon run (``run``, new at
each start of the process), so `aerd listen` tells a restart from lost messages whatever
``seq`` the new run has reached; status events say their cadence (``status_interval_s``)."""

from __future__ import annotations

import re
import signal
import threading
import time

import numpy as np
import soundfile as sf
import zmq

from aerd.listen import Seen, SeqGaps
from e2e_helpers import Sub, json_lines, make_stream, spawn, stop_process

RUN_ID = re.compile(r"[0-9a-f]{16}")


def test_a_new_run_is_a_restart_whatever_its_seq():
    """The new run's first message seen may have a seq above the last of the old run (the
    subscriber reconnected late): it counted the difference as messages missed."""
    g = SeqGaps()
    assert g.see("pi", "r1", 1) == Seen() and g.see("pi", "r1", 3) == Seen(missed=1)
    assert g.see("pi", "r2", 40) == Seen(restarted=True, previous="r1")
    assert g.see("pi", "r2", 42) == Seen(missed=1)   # the new run's own count
    # two daemons given one device_id: one restart line, then each run counts its own seq
    assert g.see("pi", "r1", 4) == Seen() and g.see("pi", "r2", 43) == Seen()
    # events of an aerd before `run` (run ""): a seq not above the last is the only sign
    assert g.see("old", "", 5) == Seen() and g.see("old", "", 7) == Seen(missed=1)
    assert g.see("old", "", 2) == Seen(restarted=True)
    assert g.see("old", "", 2) == Seen(restarted=True) and g.see("old", "", 3) == Seen()


def _lines_of(stream, into: list[str]) -> threading.Thread:
    th = threading.Thread(target=lambda: into.extend(iter(stream.readline, "")), daemon=True)
    th.start()
    return th


def _wait(what, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if what():
            return True
        time.sleep(0.05)
    return False


def test_listen_reports_a_restart_not_missed_messages(tmp_path):
    """Two daemon runs on one endpoint, one `aerd listen`. The listener is held (SIGSTOP)
    across the restart, so the first message of the new run it sees has a seq above the
    last of the old run: it printed "N message(s) missed" for what was a restart."""
    ep = f"ipc://{tmp_path}/r.sock"
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(16000, np.float32), 16000)
    long_wav = tmp_path / "long.wav"
    make_stream(long_wav)
    daemon_args = ("--endpoint", ep, "--device-id", "pi", "--no-adapt")
    listener = spawn("listen", "--endpoint", ep, "--count", "2", "--timeout", "90")
    lines: list[str] = []
    reader = _lines_of(listener.stdout, lines)
    ctx = zmq.Context()
    sub = second = None
    try:
        first = spawn("run", *daemon_args, "--input", str(silence), "--fast",
                      "--wait-subscriber", "20")
        out, err = first.communicate(timeout=60)
        assert first.returncode == 0, out + err
        assert _wait(lambda: '"stopping"' in "".join(lines), 10), lines
        listener.send_signal(signal.SIGSTOP)   # held: it cannot reconnect to the new run
        old = json_lines("".join(lines))
        sub = Sub(ep, ctx)   # (only now: --wait-subscriber above is for the listener)
        second = spawn("run", *daemon_args, "--input", str(long_wav), "--status-interval", "0.1")
        past = old[-1]["seq"] + 3
        assert sub.pump(60, lambda e: e["seq"] > past), "the second run published nothing"
        listener.send_signal(signal.SIGCONT)
        listener.wait(timeout=60)
        reader.join(timeout=10)
        err = listener.stderr.read()
    finally:
        listener.send_signal(signal.SIGCONT)
        stop_process(listener)
        if second is not None:
            stop_process(second)
        if sub is not None:
            sub.close()
        ctx.term()
    assert listener.returncode == 0, err
    events = json_lines("".join(lines))
    runs = list(dict.fromkeys(e["run"] for e in events))
    assert len(runs) == 2 and all(RUN_ID.fullmatch(r) for r in runs), runs   # one per process
    before = [e for e in events if e["run"] == runs[0]]
    after = [e for e in events if e["run"] == runs[1]]
    assert after[0]["seq"] > before[-1]["seq"] + 1   # the case that was counted as missed
    assert "missed" not in err, err
    assert err.splitlines() == [f"aerd listen: pi: the daemon restarted: run {runs[1]} after run "
                                f"{runs[0]}; its first message seen is seq {after[0]['seq']}"]
    cadence = {e["run"]: e["status_interval_s"] for e in events if e["topic"] == "status"}
    assert cadence == {runs[0]: 5.0, runs[1]: 0.1}, cadence
