"""The feature parameters a model was trained with, as stored in its model card."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import ModelError

FEATURE_SETS = ("seed180", "rich")


_NUMBERS = ("fmin", "fmax", "top_db", "f0_min", "f0_max", "voicing", "spectral_floor_db")
_OPTIONAL = ("fmax", "spectral_floor_db")   # None allowed


def is_number(v: Any) -> bool:
    """A finite int or float (not a bool): what a card's numeric fields and an event's must
    hold. NaN and Infinity (which Python's json accepts, and 1e400 becomes) are not JSON, and
    an integer beyond any float is no usable value."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


MODULATION_GROUPS = 8
"""Log-mel band groups of the modulation features (``n_mels`` must divide by it)."""
MODULATION_BANDS_HZ = ((0.5, 2.0), (2.0, 4.0), (4.0, 8.0), (8.0, 16.0))


@dataclass(frozen=True)
class VadParams:
    """Frame-level speech detection (energy + spectral flatness)."""

    floor_db: float = -65.0
    """Frames quieter than this (dBFS, mean square of the windowed frame) are never speech."""
    range_db: float = 35.0
    """Frames more than this below the loudest frame of the window are not speech."""
    max_flatness: float = 0.45
    """Frames whose mel-band spectral flatness is above this (noise-like) are not speech."""
    min_rise_db: float = 10.0
    """Frames must be this much louder than the window's background, its 10th-percentile
    frame energy: a steady sound (mains hum, a whine, a microphone's offset) is never speech
    however loud, while speech rises and falls with its syllables. 0: off (cards written
    before it)."""


@dataclass(frozen=True)
class FeatureSpec:
    """Everything that decides the feature values; stored under ``features`` in a model card."""

    set: str = "rich"
    sample_rate: int = 16000
    n_fft: int = 1024
    win_length: int = 512
    hop_length: int = 160
    center: bool = False
    n_mels: int = 40
    fmin: float = 60.0
    fmax: float | None = 8000.0
    n_mfcc: int = 20
    n_chroma: int = 12
    top_db: float = 80.0
    f0_min: float = 75.0
    f0_max: float = 400.0
    voicing: float = 0.45
    spectral_floor_db: float | None = -75.0
    """Rich set: the mel bands hold at least the power of white noise at this level (dBFS),
    as if every input had this noise floor: spectral detail below it, which no real
    microphone delivers (studio clips have digital silence), cannot steer the model.
    -75 dBFS, 10 dB under the VAD's ``floor_db`` (at -65 the floor hid too much of quiet
    speech: see the model card). None: no floor (seed180; cards written before the floor)."""
    voicing_clarity: bool = True
    """Rich set: two more features, the mean and deviation over speech frames of each
    frame's voicing clarity: the peak of its normalised autocorrelation over the pitch lags
    (the pitch detector's voicing strength; 1 = perfectly periodic, breathy or tense voices
    lower). False: not computed (cards written before it)."""
    remove_dc: bool = True
    """Rich set: each frame's mean (over the window's span) is subtracted before the window
    and the FFT, as Kaldi does by default, so a microphone's DC offset changes no feature
    and is not loudness to the VAD. False: not removed (seed180, like librosa; cards
    written before it)."""
    modulation: bool = True
    """Rich set: 32 more features, the rhythm of speech: the log10 power of the fluctuations
    of the log-mel envelope (8 groups of 5 bands, the window's speech frames; the others held
    at their mean) in 4 modulation bands, 0.5-2, 2-4, 4-8 and 8-16 Hz (phrases, words,
    syllables, fast articulation). False: not computed (cards written before it)."""
    vad: VadParams = field(default_factory=VadParams)

    @classmethod
    def seed180(cls, **over: Any) -> "FeatureSpec":
        """The seed prototype's set with a streaming-friendly grid (hop divides 0.5 s)."""
        base = dict(set="seed180", n_fft=2048, win_length=2048, hop_length=500, center=False,
                    n_mels=128, fmin=0.0, fmax=None, n_mfcc=40, spectral_floor_db=None,
                    voicing_clarity=False, remove_dc=False, modulation=False)
        base.update(over)
        return cls(**base)

    @property
    def n_features(self) -> int:
        """Length of the feature vector this spec produces."""
        if self.set == "seed180":
            return self.n_mfcc + self.n_chroma + self.n_mels
        return (3 * self.n_mels + 2 * (self.n_mfcc - 1) + self.n_mfcc + 14 + self.n_clarity
                + self.n_modulation)

    @property
    def n_modulation(self) -> int:
        """Modulation features at the very end of the vector (after the clarity) or none."""
        return MODULATION_GROUPS * len(MODULATION_BANDS_HZ) if self.modulation else 0

    @property
    def n_clarity(self) -> int:
        """Voicing-clarity features at the end of the vector (mean, deviation) or none."""
        return 2 if self.voicing_clarity else 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "features") -> "FeatureSpec":
        """Build from a model card's ``features`` table; errors name the field."""
        if not isinstance(data, dict):
            raise ModelError(f"{where}: expected a table of feature parameters")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(f"{where}.{unknown[0]}: unknown feature parameter")
        kw = dict(data)
        kw.setdefault("spectral_floor_db", None)   # cards from before the floor: none
        kw.setdefault("voicing_clarity", False)    # cards from before the clarity: none
        kw.setdefault("remove_dc", False)          # cards from before it: not removed
        kw.setdefault("modulation", False)         # cards from before it: none
        for name in _NUMBERS:
            if name in kw and not is_number(kw[name]) and not (kw[name] is None
                                                                 and name in _OPTIONAL):
                raise ModelError(f"{where}.{name}: must be a number, got {kw[name]!r}")
        vad = kw.get("vad", {})   # (a card without the table: the defaults, as before)
        vknown = {f.name for f in fields(VadParams)}
        if not isinstance(vad, dict) or set(vad) - vknown:
            raise ModelError(f"{where}.vad: expected a table with keys {sorted(vknown)}")
        for k, v in vad.items():
            if not is_number(v):
                raise ModelError(f"{where}.vad.{k}: must be a number, got {v!r}")
        kw["vad"] = VadParams(**{"min_rise_db": 0.0,   # cards from before it: off
                                 **{k: float(v) for k, v in vad.items()}})
        spec = cls(**kw)
        spec.validate(where)
        return spec

    def validate(self, where: str = "features") -> None:
        if self.set not in FEATURE_SETS:
            raise ModelError(f"{where}.set: {self.set!r} is not one of {', '.join(FEATURE_SETS)}")
        if not isinstance(self.center, bool):
            raise ModelError(f"{where}.center: must be true or false, got {self.center!r}")
        for name in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "n_mfcc",
                     "n_chroma"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ModelError(f"{where}.{name}: must be a positive integer, got {v!r}")
        if self.win_length > self.n_fft:
            raise ModelError(f"{where}.win_length: {self.win_length} exceeds n_fft {self.n_fft}")
        if self.n_mfcc > self.n_mels:
            raise ModelError(f"{where}.n_mfcc: {self.n_mfcc} exceeds n_mels {self.n_mels}")
        fmax = self.sample_rate / 2 if self.fmax is None else self.fmax
        if not 0 <= self.fmin < fmax <= self.sample_rate / 2:
            raise ModelError(f"{where}.fmax: need 0 <= fmin < fmax <= sample_rate/2")
        floor = self.spectral_floor_db
        if floor is not None and (isinstance(floor, bool) or not isinstance(floor, (int, float))
                                  or not -200.0 <= floor <= 0.0):
            raise ModelError(f"{where}.spectral_floor_db: must be a number of dBFS in "
                             f"[-200, 0] or absent, got {floor!r}")
        if floor is not None and self.set != "rich":
            raise ModelError(f"{where}.spectral_floor_db: only the rich set has a noise floor")
        for name in ("voicing_clarity", "remove_dc", "modulation"):
            v = getattr(self, name)
            if not isinstance(v, bool):
                raise ModelError(f"{where}.{name}: must be true or false, got {v!r}")
            if v and self.set != "rich":
                raise ModelError(f"{where}.{name}: only the rich set has it")
        if self.modulation and self.n_mels % MODULATION_GROUPS:
            raise ModelError(f"{where}.modulation: needs n_mels divisible by "
                             f"{MODULATION_GROUPS}, got {self.n_mels}")
        if not 0.0 <= self.vad.min_rise_db <= 100.0:
            raise ModelError(f"{where}.vad.min_rise_db: must be 0..100 dB, got {self.vad.min_rise_db!r}")
        if self.set == "rich" and not (self.sample_rate / self.f0_max >= 2
                                       and self.sample_rate / self.f0_min < self.n_fft // 2):
            raise ModelError(f"{where}.f0_min: pitch lags must fit in half of n_fft")
