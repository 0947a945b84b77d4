"""The capturing process of tests/test_pulse_capture.py, run as a script in a subprocess.

``sounddevice`` is imported in ``main`` only: the parent starts the PulseAudio server and
sets PULSE_SERVER first, and imports this module's constants without PortAudio.

Usage: ``capture_child.py MODE [OUT.npy]``. Protocol: one line per event on stdout, "TAG payload".
  record OUT.npy          DEVICES, READY (first callback), DONE json
  loss OUT.npy            DEVICES, READY, LOST json, CLOSED, OPEN_WHILE_DOWN json,
                          (waits for "RESTARTED" on stdin), REOPENED json, READY, DONE json
  cold                    DEVICES (server down at import), (waits for "STARTED"),
                          PLAIN json, REINIT json
"""

from __future__ import annotations

import json
import select
import sys
import time

import numpy as np

RATE = 16000
RECORD_S = 3.0
STALE_S = 0.2  # the callback clock counts as stale after this long without a callback
sd = None  # sounddevice, imported by main()


def say(tag, payload=""):
    if not isinstance(payload, str):
        payload = json.dumps(payload)
    print(tag, payload, flush=True)


def wait_parent(expected, timeout=20.0):
    r, _, _ = select.select([sys.stdin], [], [], timeout)
    line = sys.stdin.readline().strip() if r else ""
    if line != expected:
        say("ERROR", f"waited for {expected!r}, got {line!r}")
        sys.exit(3)


def devices():
    return [d["name"] for d in sd.query_devices() if d["max_input_channels"] > 0]


class Recorder:
    """Callback-mode InputStream on the default input; keeps the audio and a callback clock."""

    def __init__(self, seconds):
        self.buf = np.zeros(int(RATE * seconds) + RATE, dtype=np.float32)
        self.n = 0            # frames delivered since start
        self.keep = False     # store frames into buf from now on
        self.kept = 0
        self.last = 0.0       # time.monotonic() of the last callback
        self.status = []
        self.finished = None  # time finished_callback fired
        self.stream = sd.InputStream(samplerate=RATE, channels=1, dtype="float32",
                                     callback=self.cb, finished_callback=self.fin)

    def cb(self, indata, frames, t, status):
        self.last = time.monotonic()
        self.n += frames
        if status:
            self.status.append(str(status))
        if self.keep:
            k = min(frames, len(self.buf) - self.kept)
            self.buf[self.kept:self.kept + k] = indata[:k, 0]
            self.kept += k

    def fin(self):
        self.finished = time.monotonic()

    def start(self, timeout=5.0):
        t0 = time.monotonic()
        self.stream.start()
        while self.n == 0:
            if time.monotonic() - t0 > timeout:
                say("ERROR", "no callback within %s s" % timeout)
                sys.exit(4)
            time.sleep(0.002)
        return time.monotonic() - t0

    def record(self, seconds, out):
        self.keep = True
        say("READY", {"t": time.monotonic()})
        deadline = time.monotonic() + seconds + 5.0
        want = int(RATE * seconds)
        while self.kept < want and time.monotonic() < deadline:
            time.sleep(0.01)
        self.keep = False
        np.save(out, self.buf[:min(self.kept, want)])
        return {"frames": int(min(self.kept, want)), "status": self.status}


def main():
    global sd
    import sounddevice as sd  # only now: the parent has set PULSE_SERVER

    mode = sys.argv[1]
    say("DEVICES", {"all": [d["name"] for d in sd.query_devices()], "input": devices(),
                    "default": list(sd.default.device)})
    if mode == "record":
        r = Recorder(RECORD_S)
        first = r.start()
        res = r.record(RECORD_S, sys.argv[2])
        r.stream.close()
        say("DONE", dict(res, first_callback_s=first))

    elif mode == "loss":
        r = Recorder(1.0)
        r.start()
        say("READY", {"t": time.monotonic()})
        t_inactive = t_stale = None
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and (t_inactive is None or t_stale is None):
            now = time.monotonic()
            if t_inactive is None and not r.stream.active:
                t_inactive = now
            if t_stale is None and now - r.last > STALE_S:
                t_stale = now
            time.sleep(0.002)
        say("LOST", {"inactive": t_inactive, "stale": t_stale, "last_callback": r.last,
                     "finished_callback": r.finished, "status": r.status,
                     "active": r.stream.active, "stopped": r.stream.stopped})
        t0 = time.monotonic()
        r.stream.close()
        say("CLOSED", {"s": time.monotonic() - t0})
        try:
            s = sd.InputStream(samplerate=RATE, channels=1, dtype="float32")
            s.start(); s.close()
            say("OPEN_WHILE_DOWN", {"error": None})
        except Exception as e:
            say("OPEN_WHILE_DOWN", {"error": f"{type(e).__name__}: {e}"})
        wait_parent("RESTARTED")
        how, err = "plain", None
        try:
            r2 = Recorder(RECORD_S)
        except Exception as e:  # device list stale: re-scan
            err = f"{type(e).__name__}: {e}"
            how = "reinit"
            sd._terminate(); sd._initialize()
            r2 = Recorder(RECORD_S)
        first = r2.start()
        say("REOPENED", {"how": how, "plain_error": err, "first_callback_s": first,
                         "input": devices()})
        res = r2.record(RECORD_S, sys.argv[2])
        r2.stream.close()
        say("DONE", res)

    elif mode == "cold":
        wait_parent("STARTED")
        try:
            r = Recorder(1.0); r.start(); r.stream.close()
            say("PLAIN", {"error": None})
        except Exception as e:
            say("PLAIN", {"error": f"{type(e).__name__}: {e}"})
        sd._terminate(); sd._initialize()
        r = Recorder(1.0)
        r.start()
        n0, t0 = r.n, time.monotonic()
        time.sleep(1.0)
        rate = (r.n - n0) / (time.monotonic() - t0)
        r.stream.close()
        say("REINIT", {"input": devices(), "frames_per_s": rate})


if __name__ == "__main__":
    main()
