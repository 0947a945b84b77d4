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
from pathlib import Path
from typing import Any

from .config import AdaptSettings
from .errors import ModelError
from .model import Model

log = logging.getLogger(__name__)


def new_adapter(card: Any) -> Any:
    """A fresh per-device normaliser with the parameters in the model card (a bad
    ``adaptation`` table is a ModelError naming the card)."""
    from .adapt import FeatureNormalizer

    try:
        return FeatureNormalizer.from_card(card.adaptation, card.features.n_features)
    except (ValueError, TypeError, IndexError, OverflowError) as e:
        raise ModelError(f"model {card.name}: bad 'adaptation' table in its card ({e})") from None


class AdaptStore:
    def __init__(self, directory: Path, settings: AdaptSettings):
        self.directory = Path(directory)
        self.settings = settings
        self._on_disk: dict[Path, dict[str, Any]] = {}   # the state each file holds, as far as known

    def path(self, model: Model) -> Path:
        return self.directory / f"adapt-{model.card.name}.json"

    def load(self, model: Model) -> Any:
        """A fresh adapter for ``model``, with the saved statistics if there are any."""
        if not self.settings.enabled or not model.can_adapt:
            return None
        adapter = new_adapter(model.card)
        p = self.path(model)
        if self.settings.persist and p.exists():
            try:
                state = json.loads(p.read_text(encoding="utf-8"))
                adapter.load_state_dict(state)
                self._on_disk[p] = adapter.state_dict()
                log.info("adaptation state loaded from %s", p)
            except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
                log.warning("%s: ignoring unreadable adaptation state (%s)", p, e)
                adapter = new_adapter(model.card)
        return adapter

    def save(self, model: Model, adapter: Any) -> None:
        """Write the state durably (synced before it replaces the old file, so a power cut
        leaves the old or the new state, never a torn one). A failed write (disk full, read-only)
        is logged and leaves the old file and no temporary file behind; the daemon goes on.
        Statistics the file already holds are not written again."""
        if not self.settings.persist:
            return
        p = self.path(model)
        state = adapter.state_dict()
        if self._on_disk.get(p) == state:
            return
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
            log.info("adaptation state saved to %s", p)
        except OSError as e:
            log.warning("%s: cannot save adaptation state (%s)", p, e)
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)


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
