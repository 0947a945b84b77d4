"""Helpers for tests that run the real `aerd` command in subprocesses."""

from __future__ import annotations

import json
import os
import socket
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf
import zmq

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
CLIPS = sorted(DATA.glob("03-01-*.flac"))


def aerd_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "aerd", *args]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e.setdefault("OMP_NUM_THREADS", "1")
    e.setdefault("OPENBLAS_NUM_THREADS", "1")
    return e


def run(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(aerd_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          env=kw.pop("env", env()), cwd=kw.pop("cwd", REPO), **kw)


def spawn(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(aerd_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=kw.pop("env", env()), cwd=kw.pop("cwd", REPO), **kw)


def make_stream(path: Path, gap_s: float = 1.0, repeat: int = 1, rate: int = 16000) -> float:
    """The test clips separated by silence, written as a 16 kHz WAV; returns its duration."""
    parts = []
    for _ in range(repeat):
        for c in CLIPS:
            y, sr = sf.read(c, dtype="float32")
            parts += [y, np.zeros(int(gap_s * sr), np.float32)]
    audio = np.concatenate(parts)
    sf.write(path, audio, 16000)
    return len(audio) / 16000


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


class Sub:
    """An in-test subscriber collecting typed events with arrival times."""

    def __init__(self, endpoint: str, ctx: zmq.Context):
        self.sock = ctx.socket(zmq.SUB)
        self.sock.linger = 0
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(endpoint)
        self.events: list[tuple[float, dict]] = []

    def pump(self, seconds: float, until=None) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.sock.poll(50):
                topic, body = self.sock.recv_multipart()
                self.events.append((time.monotonic(), {"topic": topic.decode(), **json.loads(body)}))
                if until is not None and until(self.events[-1][1]):
                    return True
        return False

    def close(self):
        self.sock.close()


@contextmanager
def joined_publisher(tmp_path: Path, topic: bytes, device_id: str):
    """``(sub, publisher)``: an in-process Publisher on a private ipc:// endpoint and a SUB to
    ``topic`` on it, the subscription known to the publisher before it is yielded (a PUB
    drops what it sends before that). Both closed afterwards."""
    from aerd.config import PublishSettings
    from aerd.publisher import Publisher

    ep = f"ipc://{tmp_path}/{device_id}.sock"
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, topic)
    publisher = Publisher(PublishSettings(endpoint=ep, device_id=device_id), ctx=ctx)
    try:
        sub.connect(ep)
        assert publisher.wait_for_subscriber(10), "the subscription never reached the publisher"
        yield sub, publisher
    finally:
        publisher.close()
        sub.close(linger=0)
        ctx.term()


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it does not exit within ``timeout`` s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
