"""Persistence of the per-device adaptation state in the state directory.

One JSON file per model name (``adapt-<name>.json``), written atomically and only when the
statistics changed since they were last loaded or saved (a device that hears nothing for days
does not rewrite its SD card every 5 minutes); a missing or unreadable file starts a fresh
adapter (logged), it never stops the daemon.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from .config import AdaptSettings
from .errors import ModelError
from .featurespec import FeatureSpec, is_number
from .model import Model

log = logging.getLogger(__name__)


_PARAMETERS = {   # name: (whole number?, ok, what); FeatureNormalizer.from_card casts them
    "warmup_windows": (True, lambda v: v >= 1, "a whole number from 1"),
    "max_count": (True, lambda v: v >= 1, "a whole number from 1"),
    "min_std": (False, lambda v: v > 0, "a number above 0"),   # (it keeps the divisor above 0)
    "clip": (False, lambda v: v > 0, "a number above 0"),
    "prior_count": (False, lambda v: v >= 0, "a number from 0"),
}


def new_adapter(card: Any) -> Any:
    """A fresh per-device normaliser with the parameters in the model card (a bad
    ``adaptation`` table is a ModelError naming the card)."""
    from .adapt import FeatureNormalizer

    table = card.adaptation
    try:
        for key, (whole, ok, what) in _PARAMETERS.items():
            v = table.get(key)   # (left out: FeatureNormalizer.from_card's default)
            if key in table and not (((type(v) is int) if whole else is_number(v)) and ok(v)):
                raise ValueError(f"{key} must be {what}, got {v!r:.40}")
        adapter = FeatureNormalizer.from_card(table, card.features.n_features)
        if (adapter.ref_std < 0).any():
            raise ValueError("ref_std must hold no negative deviation")
        return adapter
    except (ValueError, TypeError, IndexError, OverflowError) as e:
        raise ModelError(f"model {card.name}: bad 'adaptation' table in its card ({e})") from None


class AdaptStore:
    LOUD_FAILURES = 3
    """Failed saves in a row logged as warnings; later ones (every 5 minutes while the disk
    stays full or read-only) are debug lines until a save works again."""

    def __init__(self, directory: Path, settings: AdaptSettings):
        self.directory = Path(directory)
        self.settings = settings
        self._on_disk: dict[Path, dict[str, Any]] = {}   # the state each file holds, as far as known
        self._absent: set[Path] = set()   # files that did not exist when loaded
        self._saved_once = False
        self._failures = 0   # failed saves in a row

    STALE_TMP_S = 3600.0
    """Temporary files (``.adapt-*``) older than this are left from a kill or power cut during
    a save (a save takes milliseconds) and are removed at load; younger ones may be another
    daemon's save in progress in a shared directory."""

    def _remove_stale_temporaries(self) -> None:
        try:
            old = [t for t in self.directory.glob(".adapt-*")
                   if time.time() - t.stat().st_mtime > self.STALE_TMP_S]
            for t in old:
                t.unlink(missing_ok=True)
                log.info("removed %s, left by an interrupted save", t)
        except OSError as e:   # (the load that follows reports an unusable directory)
            log.debug("%s: could not tidy temporary files: %s", self.directory, e)

    def path(self, model: Model) -> Path:
        return self.directory / f"adapt-{model.card.name}.json"

    def load(self, model: Model) -> Any:
        """A fresh adapter for ``model``, with the saved statistics if there are any."""
        if not self.settings.enabled or not model.can_adapt:
            return None
        adapter = new_adapter(model.card)
        p = self.path(model)
        if self.settings.persist:
            self._remove_stale_temporaries()
            try:   # (no exists() first: it raises too, e.g. in a directory we may not search)
                state = json.loads(p.read_text(encoding="utf-8"))
                saved_for = state.get("features") if isinstance(state, dict) else None
                if saved_for is not None and not _describes(saved_for, model):
                    raise ValueError("saved for other features or windows: the model changed")
                adapter.load_state_dict(state)
                self._on_disk[p] = {**adapter.state_dict(), "features": _features(model)}
                log.info("adaptation state loaded from %s", p)
            except FileNotFoundError:
                self._absent.add(p)   # the first run
            except (OSError, ValueError, KeyError, TypeError, RecursionError,
                    ArithmeticError) as e:   # (a number beyond float64: OverflowError)
                log.warning("%s: ignoring unusable adaptation state (%s)", p, e)
                adapter = new_adapter(model.card)
        return adapter

    def save(self, model: Model, adapter: Any) -> bool:
        """Write the state durably (synced before it replaces the old file, so a power cut
        leaves the old or the new state, never a torn one). A failed write (disk full, read-only)
        is logged and leaves the old file and no temporary file behind; the daemon goes on.
        Statistics the file already holds are not written again. False if the write failed
        (the daemon counts those in its status events), else True."""
        if not self.settings.persist:
            return True
        p = self.path(model)
        state = {**adapter.state_dict(), "features": _features(model)}
        if self._on_disk.get(p) == state or (p in self._absent and adapter.n == 0):
            return True   # nothing new: the file holds it, or there is none and nothing was heard
        tmp = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".adapt-")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(state, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
            tmp = None
            self._on_disk[p] = state
            _sync_dir(self.directory)
        except OSError as e:
            self._failures += 1
            quiet = self._failures > self.LOUD_FAILURES
            log.log(logging.DEBUG if quiet else logging.WARNING,
                    "%s: cannot save adaptation state (%s)", p, e)
            if self._failures == self.LOUD_FAILURES + 1:
                log.warning("%s: saving keeps failing; retrying at every save, quietly (debug "
                            "lines) until it works again", p)
            return False
        else:
            if self._failures:
                log.info("adaptation state saved to %s again after %d failed attempts", p,
                         self._failures)
            else:   # the first save says where; the periodic ones after it are debug lines
                log.log(logging.DEBUG if self._saved_once else logging.INFO,
                        "adaptation state saved to %s", p)
            self._saved_once, self._failures = True, 0
            return True
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)


def same_features(a: Model, b: Model) -> bool:
    """Whether statistics learned on ``a``'s features and windows describe ``b``'s too (the
    rule a state file is read by)."""
    return _describes(_features(a), b)


def _features(model: Model) -> dict[str, Any]:
    """What the saved statistics describe: the card's feature parameters and windows (a model
    of the same name whose features changed, e.g. after an upgrade, must not inherit them)."""
    card = model.card
    spec = {**card.features.to_dict(), "window_s": card.window_s, "hop_s": card.hop_s}
    return json.loads(json.dumps(spec))   # as read back from the file (tuples are lists)


def _describes(saved_for: Any, model: Model) -> bool:
    """Whether the features a state file was saved for are ``model``'s, read as a card is
    read: a feature parameter added later with its old behaviour as the default for cards
    without it does not make an older file look foreign."""
    if not isinstance(saved_for, dict):
        return False
    rest = dict(saved_for)
    windows = (rest.pop("window_s", None), rest.pop("hop_s", None))
    try:
        spec = FeatureSpec.from_dict(rest)
    except (ModelError, TypeError, ArithmeticError):   # (f0_min 0, a rate beyond float64)
        return False
    return spec == model.card.features and windows == (model.card.window_s, model.card.hop_s)


def _sync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
