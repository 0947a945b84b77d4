"""Per-device online adaptation: a running normaliser of the features a device has heard.

:class:`FeatureNormalizer` keeps a running mean and variance of the feature vectors of the
speech windows a device has heard, and maps new vectors to ``(x - mean) / std``. Until
``warmup`` windows have been seen it is not :attr:`ready` and the daemon uses the cold
model; afterwards the model card's adaptation graph (trained on features normalised the
same way, per training speaker, in streaming order) takes the normalised vectors.

Update rule (per dimension), with ``n`` the number of windows seen so far including ``x``
and rate ``r = max(1/n, 1/max_count)``::

    d = x - mean;  mean += r * d;  var = (1 - r) * (var + r * d**2)

For ``n <= max_count`` this is exactly Welford's running (population) mean and variance;
after that it is an exponential forgetting average whose memory is about ``max_count``
windows, so the statistics keep following the device (new room, new speakers) over months
while never getting noisier than a ``max_count``-window estimate.

The standard deviation used by :meth:`transform` is bounded per dimension to
``[std_bounds[0], std_bounds[1]] * ref_std`` (``ref_std``: typical per-speaker deviation in
training, from the card) and never below ``min_std``, so a device that hears one monotonous
voice, or pure noise that passes the speech gate, cannot blow features up. Outputs are
clipped to ``+-clip``.

Shrinkage toward the population (optional, ``prior_count`` > 0): with few windows heard,
the statistics are pulled toward the training population's, as if ``prior_count`` windows
of a typical speaker (mean ``prior_mean``, deviation ``ref_std``) had been heard first::

    m = min(n, max_count)
    mean_eff = (m * mean + prior_count * prior_mean) / (m + prior_count)
    var_eff  = (m * var  + prior_count * ref_std**2) / (m + prior_count)

so the normalised features move smoothly from population to device statistics instead of
switching hard at the end of the warm-up, and a short warm-up is safe.

Numpy only; ``state_dict()`` / ``load_state_dict()`` give a JSON-serialisable state so the
statistics survive restarts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

STATE_VERSION = 1
MIN_SPEECH = 0.2
"""Speech fraction of the windows the statistics are learned from: the training's (the card's
``method``), whatever threshold the decision uses for its events (windows of less speech hold
the near-constant features of silence, which would replace the device's statistics)."""


class FeatureNormalizer:
    """Running per-device feature normaliser (see the module docstring)."""

    def __init__(self, dim: int, warmup: int = 30, max_count: int = 2000,
                 ref_std: np.ndarray | list[float] | None = None,
                 std_bounds: tuple[float, float] = (0.25, 4.0), min_std: float = 1e-4,
                 clip: float = 10.0, prior_mean: np.ndarray | list[float] | None = None,
                 prior_count: float = 0.0):
        if dim <= 0 or warmup < 1 or max_count < 1:
            raise ValueError("dim, warmup and max_count must be positive")
        if not 0 < std_bounds[0] <= std_bounds[1]:
            raise ValueError("std_bounds must satisfy 0 < low <= high")
        self.dim = int(dim)
        self.warmup = int(warmup)
        self.max_count = int(max_count)
        self.ref_std = (np.ones(dim) if ref_std is None
                        else np.asarray(ref_std, dtype=np.float64).reshape(-1))
        if self.ref_std.shape != (dim,) or not np.all(np.isfinite(self.ref_std)):
            raise ValueError(f"ref_std must be {dim} finite values")
        self.std_bounds = (float(std_bounds[0]), float(std_bounds[1]))
        self.min_std = float(min_std)
        self.clip = float(clip)
        self.prior_count = float(prior_count)
        if self.prior_count < 0 or not np.isfinite(self.prior_count):
            raise ValueError("prior_count must be finite and >= 0")
        self.prior_mean = (np.zeros(dim) if prior_mean is None
                           else np.asarray(prior_mean, dtype=np.float64).reshape(-1))
        if self.prior_mean.shape != (dim,) or not np.all(np.isfinite(self.prior_mean)):
            raise ValueError(f"prior_mean must be {dim} finite values")
        if self.prior_count > 0 and prior_mean is None:
            raise ValueError("prior_count > 0 needs prior_mean")
        lo = np.maximum(self.std_bounds[0] * self.ref_std, self.min_std)
        self._bounds = (lo, np.maximum(self.std_bounds[1] * self.ref_std, lo))
        self.reset()

    @classmethod
    def from_card(cls, adaptation: dict[str, Any], dim: int) -> "FeatureNormalizer":
        """Build from a model card's ``adaptation`` table."""
        return cls(dim, warmup=int(adaptation.get("warmup_windows", 30)),
                   max_count=int(adaptation.get("max_count", 2000)),
                   ref_std=adaptation.get("ref_std"),
                   std_bounds=tuple(adaptation.get("std_bounds", (0.25, 4.0))),
                   min_std=float(adaptation.get("min_std", 1e-4)),
                   clip=float(adaptation.get("clip", 10.0)),
                   prior_mean=adaptation.get("prior_mean"),
                   prior_count=float(adaptation.get("prior_count", 0.0)))

    def reset(self) -> None:
        self.n = 0
        self.mean = np.zeros(self.dim)
        self.var = np.zeros(self.dim)
        self._cached: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def ready(self) -> bool:
        """True once ``warmup`` windows have been seen (use the adaptation graph)."""
        return self.n >= self.warmup

    def update(self, x: np.ndarray) -> None:
        """Add one feature vector (or rows of vectors, in order). Non-finite rows are ignored."""
        rows = np.asarray(x, dtype=np.float64)
        if rows.shape[-1] != self.dim:
            raise ValueError(f"expected {self.dim} features, got {rows.shape[-1]}")
        for row in (rows,) if rows.ndim == 1 else rows:
            if not np.isfinite(row).all():
                continue
            self.n += 1
            # 1 / min(n, max_count) = max(1/n, 1/max_count), without turning n into a float:
            # a saved count beyond float64 (10**400 in a state file) raised OverflowError
            r = 1.0 / (self.n if self.n < self.max_count else self.max_count)
            d = row - self.mean
            rd = r * d
            self.mean += rd
            rd *= d
            rd += self.var
            rd *= 1.0 - r
            self.var = rd         # (1 - r) * (var + r * d * d)
        self._cached = None

    def _effective(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, variance) used by :meth:`transform`: shrunk toward the prior if any."""
        if self.prior_count <= 0:
            return self.mean, self.var
        m = float(min(self.n, self.max_count))
        w = m / (m + self.prior_count)
        return (w * self.mean + (1.0 - w) * self.prior_mean,
                w * self.var + (1.0 - w) * self.ref_std ** 2)

    def _mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """(effective mean, bounded std), computed once per update (the daemon transforms
        every speech window)."""
        if self._cached is None:
            mean, var = self._effective()
            lo, hi = self._bounds
            std = np.sqrt(np.maximum(var, 0.0))
            self._cached = (mean, np.minimum(np.maximum(std, lo, out=std), hi, out=std))
        return self._cached

    def std(self) -> np.ndarray:
        """The bounded standard deviation used by :meth:`transform`."""
        return self._mean_std()[1]

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Normalised float32 copy of ``x`` (one vector or rows)."""
        arr = np.asarray(x, dtype=np.float64)
        if arr.shape[-1] != self.dim:
            raise ValueError(f"expected {self.dim} features, got {arr.shape[-1]}")
        mean, std = self._mean_std()
        z = arr - mean
        z /= std
        np.minimum(np.maximum(z, -self.clip, out=z), self.clip, out=z)
        return z.astype(np.float32)

    # -- persistence ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (statistics and parameters)."""
        return {"version": STATE_VERSION, "dim": self.dim, "n": int(self.n),
                "mean": [float(v) for v in self.mean], "var": [float(v) for v in self.var],
                "warmup": self.warmup, "max_count": self.max_count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore statistics saved by :meth:`state_dict`; ValueError if they do not fit.

        Parameters (warm-up, memory, bounds) stay as constructed: they come from the card."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError("not a normaliser state (version mismatch)")
        if state.get("dim") != self.dim:
            raise ValueError(f"state has {state.get('dim')} features, model has {self.dim}")
        n = state.get("n")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError("state: n must be a non-negative integer")
        mean = np.asarray(state.get("mean"), dtype=np.float64)
        var = np.asarray(state.get("var"), dtype=np.float64)
        if mean.shape != (self.dim,) or var.shape != (self.dim,):
            raise ValueError("state: mean/var have the wrong length")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(var)) and np.all(var >= 0)):
            raise ValueError("state: mean/var must be finite, var >= 0")
        self.n, self.mean, self.var = n, mean, var
        self._cached = None

    def __repr__(self) -> str:
        return f"FeatureNormalizer(dim={self.dim}, n={self.n}, ready={self.ready})"


def normalise_stream(rows: np.ndarray, norm: FeatureNormalizer) -> tuple[np.ndarray, np.ndarray]:
    """Causal normalisation of speech-window rows in stream order: each row is added to the
    statistics, then transformed with them (as a device would). Returns (z, ready flags)."""
    z = np.empty(rows.shape, np.float32)
    ready = np.zeros(len(rows), bool)
    for i, row in enumerate(rows):
        norm.update(row)
        z[i] = norm.transform(row)
        ready[i] = norm.ready
    return z, ready


