"""A bug inside the daemon's loop (not bad input: those are handled where they arise) ends the
process, but first says so: a traceback in the log, STOPPING=1 to systemd and a ``stopping``
status to subscribers, who would otherwise only notice the silence. Real model, real
publisher and subscriber; the source is the part that fails (sources are passed in)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from aerd.config import DecisionSettings
from aerd.daemon import Daemon
from aerd.model import load_model
from aerd.pipeline import Pipeline

from e2e_helpers import joined_publisher


class _FailingSource:
    """Gives audio twice, then fails as a buggy source would."""

    name = "failing"
    ended = False
    overflows = bad_frames = 0

    def __init__(self) -> None:
        self.state, self.detail, self.reads = "ok", "test", 0

    def read(self, timeout: float = 1.0) -> np.ndarray | None:
        self.reads += 1
        if self.reads > 2:
            raise RuntimeError("bug in a source")
        return np.zeros(1600, np.float32)


def test_an_internal_error_publishes_stopping_and_is_raised(tmp_path, caplog):
    with joined_publisher(tmp_path, b"status", "crash") as (sub, publisher):
        daemon = Daemon(_FailingSource(), Pipeline(load_model(None), DecisionSettings()),
                        publisher, "crash", status_interval=60.0)
        with caplog.at_level(logging.ERROR, logger="aerd.daemon"):
            with pytest.raises(RuntimeError, match="bug in a source"):
                daemon.run()
        states = []
        while sub.poll(2000):
            states.append(json.loads(sub.recv_multipart()[1])["state"])
            if states[-1] == "stopping":
                break
        assert states[0] == "starting" and states[-1] == "stopping", states
        assert any("internal error" in r.message and r.exc_info for r in caplog.records)
