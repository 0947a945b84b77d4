"""The seed prototype's way of working on a stream, as a reference for tools/bench.py.

Every 0.5 s, recompute librosa's 180 features (MFCC-40, chroma-12, mel-128 means, librosa
defaults, as the seed called them: chroma estimates the tuning of each window) over the last
3 s, then a scikit-learn MLP. Run as its own process (one at a time: librosa 0.11 + numba 0.68
can crash when two processes build numba's cache together):

    python tools/seed_reference.py FILE.wav [--notify-ready PATH]

prints one JSON line with the CPU and wall time of the stream part and the RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from aerd.cliparser import POSITIVE_SECONDS  # noqa: E402   (light: no numpy, no librosa)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--window", type=POSITIVE_SECONDS, default=3.0)
    ap.add_argument("--hop", type=POSITIVE_SECONDS, default=0.5)
    ap.add_argument("--notify-ready", help="AF_UNIX datagram socket to send READY=1 to")
    args = ap.parse_args()
    t_start = time.monotonic()
    import librosa
    import numpy as np
    import soundfile as sf
    from sklearn.neural_network import MLPClassifier

    try:
        y, sr = sf.read(args.file, dtype="float32")
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        print(f"seed_reference: {args.file}: not a readable audio file ({e})", file=sys.stderr)
        return 2
    if y.ndim > 1:
        y = y.mean(axis=1)
    rng = np.random.default_rng(0)
    clf = MLPClassifier(hidden_layer_sizes=(300,), max_iter=5, random_state=0)
    with warnings.catch_warnings():   # cost, not accuracy, is measured
        warnings.simplefilter("ignore")
        clf.fit(rng.normal(size=(64, 180)), np.arange(64) % 8)

    def features(x: np.ndarray) -> np.ndarray:
        stft = np.abs(librosa.stft(x))
        mfcc = np.mean(librosa.feature.mfcc(y=x, sr=sr, n_mfcc=40).T, axis=0)
        chroma = np.mean(librosa.feature.chroma_stft(S=stft, sr=sr).T, axis=0)
        mel = np.mean(librosa.feature.melspectrogram(y=x, sr=sr).T, axis=0)
        return np.hstack([mfcc, chroma, mel])

    win, hop = int(args.window * sr), int(args.hop * sr)
    clf.predict_proba(features(y[:win])[None, :])     # first call: numba compiles / loads cache
    ready = time.monotonic() - t_start
    if args.notify_ready:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(b"READY=1", args.notify_ready)
    c0, w0 = time.process_time(), time.monotonic()
    n = 0
    for end in range(win, len(y) + 1, hop):
        clf.predict_proba(features(y[end - win : end])[None, :])
        n += 1
    print(json.dumps({"windows": n, "audio_s": len(y) / sr, "cpu_s": time.process_time() - c0,
                      "wall_s": time.monotonic() - w0, "ready_s": ready,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
