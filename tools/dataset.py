"""RAVDESS speech (16 kHz FLAC) loading and cached feature extraction.

Features are computed ONLY through :mod:`aerd.features`, :mod:`aerd.windowstats` and
:mod:`aerd.stream` (the code the daemon runs), never through librosa, so training and
serving cannot drift apart.

Data set: RAVDESS, Livingstone SR, Russo FA (2018) PLoS ONE 13(5): e0196391,
CC BY-NC-SA 4.0. Extracted features are cached under ``<repo>/cache/`` (gitignored).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from aerd.features import FrameAnalyzer  # noqa: E402
from aerd.windowstats import extract_window  # noqa: E402
from aerd.featurespec import FeatureSpec  # noqa: E402
from aerd.stream import StreamExtractor  # noqa: E402

DEFAULT_DATA = (REPO / ".." / "shared" / "data" / "ravdess-16k").resolve()
CACHE_DIR = REPO / "cache"
FEATURE_CODE = ("features.py", "featurespec.py", "windowstats.py", "filterbanks.py", "stream.py")
"""The modules whose code decides the feature values (their bytes are part of the cache key)."""
SR = 16000

EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
SEED4 = ("calm", "happy", "fearful", "disgust")
DATASET_NAME = "RAVDESS speech, audio only, 16 kHz FLAC"
LICENSE = "CC BY-NC-SA 4.0"
CITATION = ("Livingstone SR, Russo FA (2018) The Ryerson Audio-Visual Database of Emotional "
            "Speech and Song (RAVDESS). PLoS ONE 13(5): e0196391. "
            "https://doi.org/10.1371/journal.pone.0196391")

_NAME = re.compile(r"^03-01-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)\.flac$")


class DataError(Exception):
    """The data cannot be used: a missing or incomplete directory, an unreadable clip. The
    message names the directory or file; the tools print it as one line and exit 2."""


class DataMissing(DataError):
    """The data directory does not exist or holds no RAVDESS clips."""


@dataclass(frozen=True)
class Clip:
    path: Path
    emotion: str
    intensity: int
    statement: int
    repetition: int
    actor: int

    @property
    def male(self) -> bool:
        return self.actor % 2 == 1


HELD_OUT_ACTORS = range(21, 25)
"""RAVDESS actors 21-24: kept out of this project's data so that the shipped model can be
judged on speakers it never heard. If a directory holds them, the tools leave them out."""


def list_clips(data_dir: str | Path = DEFAULT_DATA) -> list[Clip]:
    """All speech clips under ``data_dir``/Actor_*/ but those of actors 21-24, sorted by name."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DataMissing(f"data directory {root} " + ("is not a directory" if root.exists()
                                                      else "not found"))
    clips, held_out = [], 0
    for p in sorted(root.glob("Actor_*/*.flac")):
        m = _NAME.match(p.name)
        if not m:
            continue
        e, i, s, r, a = (int(g) for g in m.groups())
        if a in HELD_OUT_ACTORS:
            held_out += 1
            continue
        clips.append(Clip(p, EMOTIONS[e - 1], i, s, r, a))
    if held_out:
        print(f"{root}: leaving out the {held_out} clips of actors 21-24 (held out for judging "
              "the shipped model on unheard speakers)", file=sys.stderr)
    if not clips:
        raise DataMissing(f"no RAVDESS clips (Actor_*/03-01-*.flac) under {root}")
    return clips


def add_data_option(ap: argparse.ArgumentParser) -> None:
    """The tools' ``--data DIR`` option (default: ../shared/data/ravdess-16k)."""
    ap.add_argument("--data", default=str(DEFAULT_DATA),
                    help="RAVDESS 16 kHz directory with Actor_XX/ folders "
                         "(default: ../shared/data/ravdess-16k relative to the repo)")


def check_complete(clips: list[Clip], root: str | Path, folds: bool) -> None:
    """DataError unless ``clips`` hold all 8 emotions and, with ``folds``, every actor of the
    cross-validation folds (1-20)."""
    missing = [e for e in EMOTIONS if e not in {c.emotion for c in clips}]
    if missing:
        raise DataError(f"{root}: no clips of {', '.join(missing)} (all 8 emotions needed)")
    if folds:
        absent = sorted(set(range(1, 21)) - {c.actor for c in clips})
        if absent:
            raise DataError(f"{root}: actors 1-20 needed (the cross-validation folds), "
                            f"missing {absent}")


def clips_or_none(data_dir: str | Path, prog: str, folds: bool = True) -> list[Clip] | None:
    """:func:`list_clips` checked by :func:`check_complete`, or None after one line on
    stderr naming the directory (the tools then exit 2)."""
    try:
        clips = list_clips(data_dir)
        check_complete(clips, data_dir, folds)
        return clips
    except DataError as e:
        print(f"{prog}: {e} (use --data DIR)", file=sys.stderr)
        return None


class _Interrupted(BaseException):
    """Ctrl-C, raised past scikit-learn's MLP ``fit``: it catches KeyboardInterrupt, warns and
    returns a half-trained model."""


def _interrupt(_signum: int, _frame: object) -> None:
    raise _Interrupted


def tool_main(prog: str, main: Callable[[], int]) -> int:
    """Run a tool's ``main``: a data problem met on the way (an unreadable clip) is one line
    naming it and exit 2; Ctrl-C is one line and exit 130 (nothing half-trained is kept)."""
    previous = signal.signal(signal.SIGINT, _interrupt)
    try:
        return main()
    except DataError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    except (_Interrupted, KeyboardInterrupt):
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, previous)


def load_audio(path: str | Path) -> np.ndarray:
    """float32 mono at 16 kHz (stereo clips are downmixed by the mean); DataError naming
    the file if it is not readable audio at that rate."""
    try:
        y, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise DataError(f"{path}: not a readable audio file ({e})") from None
    if sr != SR:
        raise DataError(f"{path}: sample rate {sr} Hz, expected {SR}")
    return y.mean(axis=1).astype(np.float32)


def stream_windows(audio: np.ndarray, spec: FeatureSpec, window_s: float, hop_s: float,
                   min_audio_s: float = 1.0, mel_warp: float = 1.0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows exactly as the daemon computes them: (features (n,d), speech (n,), starts (n,));
    ``mel_warp`` != 1 for a VTLP training copy (aerd.filterbanks.mel_filterbank)."""
    se = StreamExtractor(spec, window_s, hop_s, min_audio_s, mel_warp=mel_warp)
    ws = se.push(audio) + se.flush()
    if not ws:
        return (np.zeros((0, spec.n_features), np.float32), np.zeros(0, np.float32),
                np.zeros(0, np.float32))
    return (np.stack([w.features for w in ws]).astype(np.float32),
            np.array([w.speech for w in ws], np.float32),
            np.array([w.start for w in ws], np.float32))


def _digest(path: Path) -> str:
    """SHA-256 of a clip's bytes (DataError naming it if it cannot be read)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class FeatureTable:
    """Feature rows with the clip each came from.

    ``clip`` indexes the clip list; ``kind`` 0 = whole-clip vector, 1 = stream window;
    ``start`` is the window start in the clip (s); ``aug`` is the augmentation copy (0 = clean).
    """

    X: np.ndarray
    speech: np.ndarray
    clip: np.ndarray
    kind: np.ndarray
    start: np.ndarray
    aug: np.ndarray

    def rows(self, mask: np.ndarray) -> "FeatureTable":
        """The table of the rows ``mask`` selects."""
        return FeatureTable(**{f.name: getattr(self, f.name)[mask] for f in fields(self)})


def _clip_rows(audio: np.ndarray, spec: FeatureSpec, an: FrameAnalyzer, window_s: float | None,
               hop_s: float) -> tuple[list, list, list, list]:
    X, S, K, T = [], [], [], []
    f, s = extract_window(audio, spec, an)
    X.append(f[None]); S.append([s]); K.append([0]); T.append([0.0])
    if window_s is not None:
        wf, ws, wt = stream_windows(audio, spec, window_s, hop_s, mel_warp=an.mel_warp)
        X.append(wf); S.append(ws); K.append(np.ones(len(wf), int)); T.append(wt)
    return X, S, K, T


def extract_table(clips: list[Clip], spec: FeatureSpec, window_s: float | None = None,
                  hop_s: float = 0.5, n_aug: int = 0, aug_seed: int = 0,
                  speeds: tuple[float, ...] = (), warps: tuple[tuple[float, float], ...] = (),
                  verbose: bool = True) -> FeatureTable:
    """Whole-clip vectors (+ stream windows if ``window_s``) for each clip, ``n_aug``
    room-augmented copies per clip, one speed-perturbed copy per factor in ``speeds`` and
    one copy per (speed, warp) in ``warps``: the clip at that speed (1: as it is) analysed
    with mel filters warped by VTLP (see tools/augment.py). Copy (``aug``) 0 is the clean
    clip, 1..n_aug the rooms, then the speeds and the warps in order. Cached in cache/ by a
    key of the parameters, the feature and augmentation code and the clips' bytes."""
    from tools import augment

    # the code that decides the rows (the daemon's feature modules and the augmentation) and
    # each clip's content, not only its name: an edit or a clip replaced is a cache miss
    code = hashlib.sha256(b"".join([*((REPO / "aerd" / f).read_bytes() for f in FEATURE_CODE),
                                    Path(augment.__file__).read_bytes()])).hexdigest()[:12]
    key = _key(spec.to_dict(), spec.n_features, code, window_s, hop_s, n_aug, aug_seed,
               augment.VERSION, list(speeds), [list(w) for w in warps],
               [(c.path.name, _digest(c.path)) for c in clips])
    CACHE_DIR.mkdir(exist_ok=True)
    cache = CACHE_DIR / f"feat-{spec.set}-{key}.npz"
    if cache.exists():
        d = np.load(cache)
        return FeatureTable(**{k: d[k] for k in ("X", "speech", "clip", "kind", "start", "aug")})
    an = FrameAnalyzer(spec)
    warped = {w: FrameAnalyzer(spec, w) for w in sorted({w for _, w in warps})}
    perturbed = [(f, an) for f in speeds] + [(f, warped[w]) for f, w in warps]
    X, S, C, K, T, A = [], [], [], [], [], []
    rooms: dict[tuple[int, int], augment.Room] = {}
    for ci, c in enumerate(clips):
        audio = load_audio(c.path)
        sped = {f: augment.speed(audio, f) for f, _ in perturbed}   # once per factor
        for a in range(n_aug + 1 + len(perturbed)):
            if a > n_aug:  # speaker perturbation (clean room)
                factor, analyzer = perturbed[a - n_aug - 1]
                y = sped[factor]
                x, s, k, t = _clip_rows(y, spec, analyzer, window_s, hop_s)
                n = sum(len(v) for v in s)
                X += x; S += s; K += k; T += t; C.append(np.full(n, ci)); A.append(np.full(n, a))
                continue
            if a:  # one room per (actor, copy): that copy of the actor is one "device"
                room = rooms.get((c.actor, a))
                if room is None:
                    room = rooms[(c.actor, a)] = augment.make_room(
                        np.random.default_rng([aug_seed, c.actor, a]))
                rng = np.random.default_rng([aug_seed, ci, a, 1])
            y = audio if a == 0 else augment.apply_room(audio, room, rng)
            x, s, k, t = _clip_rows(y, spec, an, window_s, hop_s)
            if a == 0 and window_s is not None and len(s[1]) == 0:   # (scored by its windows)
                raise DataError(f"{c.path}: {len(audio) / SR:.2f} s of audio gives no "
                                f"{window_s:g} s analysis window; remove the clip")
            n = sum(len(v) for v in s)
            X += x; S += s; K += k; T += t; C.append(np.full(n, ci)); A.append(np.full(n, a))
        if verbose and (ci + 1) % 200 == 0:
            print(f"  features {spec.set}: {ci + 1}/{len(clips)} clips", file=sys.stderr, flush=True)
    tab = FeatureTable(np.concatenate(X).astype(np.float32),
                       np.concatenate([np.asarray(s, np.float32) for s in S]),
                       np.concatenate(C), np.concatenate([np.asarray(k) for k in K]),
                       np.concatenate([np.asarray(t, np.float32) for t in T]), np.concatenate(A))
    tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")   # two extractions at once: own files
    np.savez_compressed(tmp, **tab.__dict__)
    tmp.replace(cache)
    return tab
