"""Soak: hours of audio through `aerd run --input - ` as fast as it goes; RSS sampled.

    python tools/soak.py [--hours 2] [--every 60] [--out curve.csv]

Streams speech clips separated by silence (RAVDESS if present, else the test clips) to the
daemon's stdin as s16le PCM, samples the daemon's VmRSS from /proc every ``--every``
seconds of audio, and prints the curve plus the growth after warm-up.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data" / "ravdess-16k"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.dataset import tool_main  # noqa: E402
from tools.evalkit import POSITIVE, output_file  # noqa: E402


class SoakError(Exception):
    """The daemon under test stopped before the soak's end."""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def soak(hours: float, every_s: float, model: str = "default") -> list[tuple[float, float]]:
    """RSS of the daemon (MB) every ``every_s`` seconds of audio over ``hours`` of it; its
    socket and state directory are temporary."""
    with tempfile.TemporaryDirectory(prefix="aerd-soak-") as tmp:
        return _soak(hours, every_s, model, Path(tmp))


def _soak(hours: float, every_s: float, model: str, tmp: Path) -> list[tuple[float, float]]:
    clips = sorted(SHARED.glob("Actor_*/*.flac"))[:40] or sorted((REPO / "tests" / "data").glob("*.flac"))
    pieces = []
    for c in clips:
        y, _ = sf.read(c, dtype="float32")
        pieces += [y.mean(axis=1) if y.ndim > 1 else y, np.zeros(8000, np.float32)]
    loop = (np.clip(np.concatenate(pieces), -1, 1) * 32767).astype("<i2")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "aerd", "run", "--input", "-", "--model", model,
                             "--endpoint", f"ipc://{tmp}/soak.sock", "--log-level", "warning",
                             "--state-dir", str(tmp / "state")],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
    total = int(hours * 3600 * 16000)
    step = int(every_s * 16000)
    curve, sent, next_sample = [], 0, 0
    chunk = 16000
    try:
        try:
            while sent < total:
                i = sent % len(loop)
                block = loop[i : i + chunk]
                proc.stdin.write(block.tobytes())
                sent += len(block)
                if sent >= next_sample:
                    proc.stdin.flush()
                    time.sleep(0.02)  # let the daemon catch up before sampling
                    curve.append((sent / 16000, rss_mb(proc.pid)))
                    next_sample += step
            proc.stdin.close()
        except BrokenPipeError:   # the daemon is gone: its exit code says why
            pass
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    rc = proc.returncode
    if rc != 0 or sent < total:   # a clean exit part-way is a failure too: a short curve
        how = f"killed by signal {-rc}" if rc < 0 else f"exit {rc}"
        raise SoakError(f"aerd run stopped after {sent / 16000:.0f} s of the {total / 16000:.0f} s "
                        f"of audio ({how}" + (", see above)" if rc > 0 else ")"))
    return curve


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=POSITIVE, default=2.0)
    ap.add_argument("--every", type=POSITIVE, default=60.0, help="sample every S seconds of audio")
    ap.add_argument("--model", default="default")
    ap.add_argument("--out", type=output_file, help="write the curve as CSV here")
    args = ap.parse_args()
    t0 = time.monotonic()
    try:
        curve = soak(args.hours, args.every, args.model)
    except SoakError as e:
        print(f"soak: {e}", file=sys.stderr)
        return 1
    wall = time.monotonic() - t0
    for t, r in curve[:: max(1, len(curve) // 12)]:
        print(f"{t / 60:8.1f} min audio  RSS {r:6.1f} MB")
    warm = [r for t, r in curve if t >= 600] or [r for _, r in curve]
    print(f"{args.hours:.1f} h of audio in {wall:.0f} s; RSS after 10 min warm-up: min {min(warm):.1f} "
          f"max {max(warm):.1f} MB, growth {warm[-1] - warm[0]:+.2f} MB")
    if args.out:
        Path(args.out).write_text("audio_s,rss_mb\n" + "".join(f"{t:.0f},{r:.2f}\n" for t, r in curve))
    return 0


if __name__ == "__main__":
    sys.exit(tool_main("soak", main))
