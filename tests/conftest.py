"""Shared fixtures for the test suite (keep this file small; add fixtures, not helpers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import zmq

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


@pytest.fixture(scope="session", autouse=True)
def _own_state_directory(tmp_path_factory):
    """Daemons the tests start without --state-dir keep their adaptation state in a
    directory of the test session, never in the user's ~/.local/state/aerd (whose state a
    test stream would overwrite, and the user's daemon then load). Subprocesses inherit it."""
    mp = pytest.MonkeyPatch()
    mp.setenv("STATE_DIRECTORY", str(tmp_path_factory.mktemp("state")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return ROOT


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """tests/data (RAVDESS clips at 16 kHz; see tests/data/LICENSE.md)."""
    return DATA


@pytest.fixture(scope="session")
def clip() -> np.ndarray:
    """A loud RAVDESS speech clip: float32 mono at 16 kHz (~4.1 s). Do not modify in place."""
    x, sr = sf.read(DATA / "03-01-05-02-01-01-01.flac", dtype="float32", always_2d=True)
    assert sr == 16000
    x = np.ascontiguousarray(x.mean(axis=1, dtype=np.float32))
    x.setflags(write=False)
    return x


@pytest.fixture
def ctx():
    """A ZeroMQ context for the test, terminated after it."""
    c = zmq.Context()
    yield c
    c.term()
