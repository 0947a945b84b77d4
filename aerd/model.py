"""Model bundle: ``<name>.onnx`` + ``<name>.json`` model card; load, validate, predict.

The ONNX graph takes a float32 ``(n, n_features)`` input and yields class probabilities
(the scaler is inside the graph). The card says which labels, features, window and hop
the graph expects; anything missing or inconsistent is a :class:`ModelError` at start.
"""

from __future__ import annotations

try:  # the builtin SHA-256: hashlib's OpenSSL binding costs ~3.5 MB RSS on a small device
    from _sha2 import sha256  # Python >= 3.12
except ImportError:
    try:
        from _sha256 import sha256  # Python 3.11
    except ImportError:
        from hashlib import sha256
import json
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import AUDIO_RATES
from .errors import ModelError, lookup
from .featurespec import FeatureSpec, is_number

log = logging.getLogger(__name__)

CARD_FORMAT = "aerd-model"
MAX_WINDOW_S = 60.0
"""Longest analysis window a card may ask for (the window is held in memory)."""
MAX_CARD_BYTES, MAX_ONNX_BYTES = 16 << 20, 256 << 20
"""Largest model card and ONNX graph read (the shipped ones: 14 KB and 0.4 MB)."""
_PKG = Path(__file__).resolve().parent
# Installed: the wheel maps the repository's models/ to aerd/models/. From a source tree: models/.
MODELS_DIR = _PKG / "models" if (_PKG / "models").is_dir() else _PKG.parent / "models"


def _read_file(path: Path, limit: int, what: str) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; a FIFO or device (which would
    block or never end) or a bigger file is a ModelError naming ``path``, without reading."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ModelError(f"{path}: the {what} is not a regular file")
        if st.st_size > limit:
            raise ModelError(f"{path}: the {what} is {st.st_size} bytes, over the "
                             f"{limit >> 20} MiB a model may have")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(limit)
    finally:
        os.close(fd)


def default_model_path() -> Path:
    """The shipped default model's card (inside the installed package)."""
    return MODELS_DIR / "default.json"


def resolve_model_path(value: str | Path | None) -> Path:
    """A card path from ``--model``: a .json/.onnx path, a bundle name in the shipped dir, or None."""
    if value is None or str(value) == "":
        return default_model_path()
    p = Path(value)
    if p.suffix == ".onnx":
        p = p.with_suffix(".json")
    elif p.suffix != ".json" and lookup(p, ModelError) is None:
        shipped = MODELS_DIR / f"{value}.json"
        if shipped.exists():
            return shipped
    return p


_FEATURE_RANGES: dict[str, tuple[bool, Any, str]] = {   # name: (whole number?, ok, what)
    "sample_rate": (True, lambda v: AUDIO_RATES[0] <= v <= AUDIO_RATES[1], "%d..%d Hz" % AUDIO_RATES),
    **{k: (True, lambda v: 1 <= v <= 1 << 20, "1..1048576 samples")
       for k in ("n_fft", "win_length", "hop_length")},
    **{k: (True, lambda v: 1 <= v <= 1024, "1..1024") for k in ("n_mels", "n_mfcc", "n_chroma")},
    "top_db": (False, lambda v: v > 0, "above 0 dB"),
    "f0_min": (False, lambda v: v > 0, "above 0 Hz"),
    "f0_max": (False, lambda v: v > 0, "above 0 Hz"),
    "voicing": (False, lambda v: 0 <= v <= 1, "0..1"),
    "vad.floor_db": (False, lambda v: v <= 0, "at most 0 dBFS"),
    "vad.range_db": (False, lambda v: v >= 0, "0 dB or more"),
    "vad.max_flatness": (False, lambda v: 0 < v <= 1, "above 0, at most 1"),
}


def _check_feature_ranges(data: Any, where: str) -> None:
    """Ranges of a card's feature parameters, checked before FeatureSpec (which divides by
    f0_min: a 0 or an integer beyond float64 was a traceback); out of them (max_flatness
    -1, voicing 1.5) features came out NaN or meaningless. FeatureSpec names wrong types."""
    if not isinstance(data, dict):
        return
    vad = data.get("vad") if isinstance(data.get("vad"), dict) else {}
    for name, (whole, ok, what) in _FEATURE_RANGES.items():
        v = vad.get(name[4:]) if name.startswith("vad.") else data.get(name)
        usable = (type(v) is int) if whole else is_number(v)
        if usable and not ok(v):
            raise ModelError(f"{where}.{name}: must be {what}, got {v!r:.40}")
    f0 = data.get("f0_min"), data.get("f0_max")
    if all(is_number(v) for v in f0) and not f0[0] < f0[1]:
        raise ModelError(f"{where}.f0_min: must be below f0_max, got {f0[0]!r} and {f0[1]!r}")


@dataclass(frozen=True)
class ModelCard:
    """The parts of a model card the runtime needs (the card holds more: metrics, data)."""

    name: str
    labels: tuple[str, ...]
    features: FeatureSpec
    window_s: float
    hop_s: float
    onnx_file: Path
    onnx_sha256: str
    min_audio_s: float
    adaptation: dict[str, Any]
    raw: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> "ModelCard":
        try:
            raw = json.loads(_read_file(path, MAX_CARD_BYTES, "model card").decode("utf-8"))
        except FileNotFoundError:
            raise ModelError(f"{path}: model card not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelError(f"{path}: not a readable model card ({e})") from None
        if not isinstance(raw, dict) or raw.get("format") != CARD_FORMAT:
            raise ModelError(f"{path}: not an aerd model card (format != {CARD_FORMAT!r})")

        def need(key: str, kind: type | tuple[type, ...]) -> Any:
            if key not in raw:
                raise ModelError(f"{path}: field {key!r} is missing")
            if not isinstance(raw[key], kind) or isinstance(raw[key], bool):
                raise ModelError(f"{path}: field {key!r} has the wrong type")
            return raw[key]

        labels = need("labels", list)
        if len(labels) < 2 or not all(isinstance(x, str) for x in labels) or len(set(labels)) != len(labels):
            raise ModelError(f"{path}: field 'labels' must be two or more distinct strings")
        _check_feature_ranges(need("features", dict), f"{path}: features")
        spec = FeatureSpec.from_dict(raw["features"], where=f"{path}: features")
        window_s, hop_s = need("window_s", (int, float)), need("hop_s", (int, float))
        if (not (is_number(window_s) and is_number(hop_s))
                or not 0 < hop_s <= window_s <= MAX_WINDOW_S
                or window_s * spec.sample_rate < spec.n_fft):
            raise ModelError(f"{path}: window_s/hop_s must satisfy 0 < hop_s <= window_s <= "
                             f"{MAX_WINDOW_S:g}, window >= n_fft")
        min_audio_s = raw.get("min_audio_s", 1.0)
        if not is_number(min_audio_s) or not 0 <= min_audio_s <= window_s:
            raise ModelError(f"{path}: field 'min_audio_s' must be a number of seconds in "
                             f"[0, window_s], got {min_audio_s!r}")
        adaptation = raw.get("adaptation", {})
        adaptation = {} if adaptation is None else adaptation
        if not isinstance(adaptation, dict):
            raise ModelError(f"{path}: field 'adaptation' must be a table")
        n = need("n_features", int)
        if n != spec.n_features:
            raise ModelError(f"{path}: n_features {n} does not match feature set ({spec.n_features})")
        onnx_file = path.parent / need("onnx", str)
        name = need("name", str)   # (it names the adaptation state file: adapt-<name>.json)
        if not (0 < len(name) <= 100 and name.isprintable() and "/" not in name
                and not name.startswith(".")):
            raise ModelError(f"{path}: field 'name' must be 1..100 printable characters, "
                             f"no '/' and no leading '.', got {name!r:.60}")
        sha = raw.get("onnx_sha256", "")
        if not isinstance(sha, str):
            raise ModelError(f"{path}: field 'onnx_sha256' must be a string of hex digits")
        return cls(name=name, labels=tuple(labels), features=spec, window_s=float(window_s),
                   hop_s=float(hop_s), onnx_file=onnx_file, onnx_sha256=sha,
                   min_audio_s=float(min_audio_s), adaptation=dict(adaptation), raw=raw)


class _Graph:
    """One ONNX session and how to feed it. Single rows (the daemon's case, once per hop) go
    through an I/O binding to preallocated buffers: no per-call input/output conversion."""

    def __init__(self, sess: Any, input_name: str, output_name: str, n_features: int):
        self.sess, self.input, self.output = sess, input_name, output_name
        self._x1 = np.zeros((1, n_features), np.float32)
        self._binding = None
        self._p1: np.ndarray | None = None

    def run(self, x: np.ndarray) -> np.ndarray:
        (p,) = self.sess.run([self.output], {self.input: x})
        return np.asarray(p, dtype=np.float32)

    def bind_one(self, n_labels: int) -> None:
        import onnxruntime as ort

        self._p1 = np.zeros((1, n_labels), np.float32)
        b = self.sess.io_binding()
        # OrtValues over numpy memory (shared, not copied): write x into _x1, read _p1
        self._xv = ort.OrtValue.ortvalue_from_numpy(self._x1)
        self._pv = ort.OrtValue.ortvalue_from_numpy(self._p1)
        b.bind_ortvalue_input(self.input, self._xv)
        b.bind_ortvalue_output(self.output, self._pv)
        self._binding = b

    def run_one(self, x: np.ndarray) -> np.ndarray:
        self._x1[0] = x
        self.sess.run_with_iobinding(self._binding)
        return self._p1.copy()


class Model:
    """An ONNX session (one thread) plus its card. ``predict(x)`` -> probabilities (n, labels)."""

    def __init__(self, card: ModelCard, onnx_file: Path | None = None, adapt: bool = False):
        self.card = card
        path = onnx_file or card.onnx_file
        self.id, self._cold = self._open(path, card.onnx_sha256 if onnx_file is None else "")
        self._adapted: _Graph | None = None
        if adapt and card.adaptation.get("onnx"):
            apath = card.onnx_file.parent / str(card.adaptation["onnx"])
            self._adapted = self._open(apath, str(card.adaptation.get("onnx_sha256", "")))[1]
        zeros = np.zeros((1, card.features.n_features), np.float32)
        for graph, name in ((self._cold, path), (self._adapted, card.adaptation.get("onnx"))):
            if graph is None:
                continue
            try:
                probe = graph.run(zeros)
            except Exception as e:  # noqa: BLE001 -- onnxruntime's own error types
                raise ModelError(f"{name}: the graph does not run on a feature vector "
                                 f"({str(e).splitlines()[0][:160]})") from None
            if probe.shape != (1, len(card.labels)) or not np.isfinite(probe).all():
                raise ModelError(f"{name}: output {probe.tolist()!r:.80} is not the {len(card.labels)} "
                                 "finite probabilities the card lists")   # (NaN: a diverged fit)
            graph.bind_one(len(card.labels))

    @property
    def can_adapt(self) -> bool:
        """True when the bundle has an adapted graph and it was loaded."""
        return self._adapted is not None

    def _open(self, path: Path, expected_sha256: str) -> tuple[str, _Graph]:
        import onnxruntime as ort

        card = self.card
        try:
            blob = _read_file(path, MAX_ONNX_BYTES, "ONNX model")
        except OSError as e:
            raise ModelError(f"{path}: cannot read ONNX model ({e.strerror or e})") from None
        digest = sha256(blob).hexdigest()
        if expected_sha256 and digest != expected_sha256:
            raise ModelError(f"{path}: sha256 does not match the model card (file changed or corrupt)")
        model_id = f"{card.name}@{digest[:12]}"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        # no arena / memory-pattern preallocation: a tiny MLP does not need them, RSS does
        opts.enable_cpu_mem_arena = False
        opts.enable_mem_pattern = False
        try:
            sess = ort.InferenceSession(blob, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelError(f"{path}: not a loadable ONNX model ({str(e).splitlines()[0][:160]})") from None
        inputs = sess.get_inputs()
        if len(inputs) != 1 or inputs[0].shape[-1] != card.features.n_features:
            raise ModelError(f"{path}: input shape {inputs[0].shape} does not match the card's "
                             f"{card.features.n_features} features")
        outs = [o.name for o in sess.get_outputs()]
        out = "probabilities" if "probabilities" in outs else outs[-1]
        if sess.get_outputs()[outs.index(out)].type != "tensor(float)":
            raise ModelError(f"{path}: output {out!r} is not a float tensor of probabilities")
        return model_id, _Graph(sess, inputs[0].name, out, card.features.n_features)

    def predict(self, x: np.ndarray, adapted: bool = False) -> np.ndarray:
        """Class probabilities (n, labels); ``adapted`` uses the graph for normalised features."""
        graph = self._adapted if adapted else self._cold
        if graph is None:
            raise ModelError(f"{self.card.name}: no adapted model loaded")
        if isinstance(x, np.ndarray) and x.ndim == 1 and x.dtype == np.float32:
            return graph.run_one(x)
        return graph.run(np.ascontiguousarray(np.atleast_2d(x), dtype=np.float32))


def load_model(value: str | Path | None, adapt: bool = False) -> Model:
    """Load and validate a bundle from a ``--model`` value (and its adapted graph if asked)."""
    path = resolve_model_path(value)
    if value not in (None, "") and lookup(path, ModelError) is None:   # name what the user gave
        given = Path(value)
        if given.suffix == ".onnx" and lookup(given, ModelError) is not None:
            raise ModelError(f"{value}: its model card {path} is missing")
        shipped = ", ".join(sorted(p.stem for p in MODELS_DIR.glob("*.json")))
        raise ModelError(f"{value}: no such model file, nor a shipped model ({shipped})")
    card = ModelCard.load(path)
    model = Model(card, adapt=adapt)
    log.info("model %s: %d labels, features %s (%d), window %.2fs hop %.2fs",
             model.id, len(card.labels), card.features.set, card.features.n_features,
             card.window_s, card.hop_s)
    return model
