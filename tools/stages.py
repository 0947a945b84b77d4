"""Where the daemon's CPU time goes: ``aerd run --fast`` in this process, each stage timed.

    python tools/stages.py AUDIO.wav [--model default]

Runs the real daemon (``aerd.cli``) on a file with ``--fast`` and wraps each pipeline stage
in a ``time.thread_time`` timer, then prints CPU milliseconds per second of audio for each.
The timers cost about a microsecond a call, so the stages add up to a little more than an
untimed run (``tools/bench.py`` gives the untimed figure). Start-up is not included (the
whole loop includes its one garbage collection before the first block).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from aerd import adapt, cli, daemon, decision, features, model, sources, stream  # noqa: E402

STAGES = [
    ("file reading", sources.FileSource, "read"),
    ("frame analysis: window, FFT, power", features.FrameAnalyzer, "_power"),
    ("frame analysis: filterbanks, pitch", features.FrameAnalyzer, "_rows_from_power"),
    ("window statistics", stream, "window_features"),
    ("adaptation", adapt.FeatureNormalizer, "update"),
    ("adaptation (transform)", adapt.FeatureNormalizer, "transform"),
    ("model (onnxruntime)", model.Model, "predict"),
    ("decision", decision.Decider, "update"),
    ("events and publishing", daemon.Daemon, "_publish_results"),
    ("whole loop", daemon.Daemon, "run"),
]


def _timed(fn, name: str, totals: dict[str, float]):
    def wrapper(*args, **kwargs):
        t0 = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[name] = totals.get(name, 0.0) + time.thread_time() - t0
    return wrapper


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("audio", help="a (long) audio file, e.g. a 16 kHz PCM WAV")
    ap.add_argument("--model", default="default")
    args = ap.parse_args(argv)
    import soundfile as sf

    try:
        seconds = sf.info(args.audio).duration
    except (RuntimeError, sf.LibsndfileError) as e:
        sys.exit(f"stages: {args.audio}: cannot read ({e})")
    if seconds < 1.0:
        sys.exit(f"stages: {args.audio}: less than a second of audio ({seconds:.3f} s)")
    totals: dict[str, float] = {}
    for name, owner, attr in STAGES:
        setattr(owner, attr, _timed(getattr(owner, attr), name, totals))
    with tempfile.TemporaryDirectory(prefix="aerd-stages-") as tmp:
        status = cli.main(["run", "--fast", "--model", args.model, "--log-level", "warning",
                           "--input", args.audio, "--endpoint", f"ipc://{tmp}/stages.sock"])
    if status:
        return status
    print(f"{args.model}, {seconds:.0f} s of audio, CPU ms per audio second:")
    for name, _, _ in STAGES:
        if name in totals:
            print(f"  {name:38s} {1000 * totals[name] / seconds:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
