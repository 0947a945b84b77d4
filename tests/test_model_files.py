"""The files a model card names are read only if they are regular files of a sane size: a
FIFO (or a device) would block the daemon for ever, at start or in a reload that should
leave the old model running, and /dev/zero would be read until memory runs out."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_helpers import CLIPS, REPO, run  # noqa: E402

from aerd.errors import ModelError  # noqa: E402
from aerd.model import MAX_ONNX_BYTES, load_model  # noqa: E402

BASE = json.loads((REPO / "models" / "default.json").read_text())
BASE["onnx"] = str(REPO / "models" / BASE["onnx"])


def _card(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "card.json"
    path.write_text(json.dumps({**BASE, **changes}))
    return path


@pytest.mark.parametrize("where", ["card", "onnx", "adaptation"])
def test_a_fifo_is_refused_at_once(tmp_path, where):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    if where == "card":
        card = tmp_path / "fifo.json"
        os.mkfifo(card)
    elif where == "onnx":
        card = _card(tmp_path, onnx=str(fifo))
    else:
        card = _card(tmp_path, adaptation={**BASE["adaptation"], "onnx": str(fifo)})
    r = run("classify", "--adapt", "--model", str(card), str(CLIPS[0]), timeout=30)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "not a regular file" in lines[0] and ("fifo" in lines[0]), lines[0]


def test_an_oversized_onnx_file_is_refused_unread(tmp_path):
    huge = tmp_path / "huge.onnx"
    with open(huge, "wb") as f:     # sparse: no disk space, and never read
        f.truncate(MAX_ONNX_BYTES + 1)
    with pytest.raises(ModelError, match=rf"^{huge}: the ONNX model is {MAX_ONNX_BYTES + 1} "
                                         "bytes, over"):
        load_model(_card(tmp_path, onnx=str(huge)))
    with pytest.raises(ModelError, match=r"^/dev/zero: the ONNX model is not a regular file"):
        load_model(_card(tmp_path, onnx="/dev/zero"))


def test_a_model_whose_output_is_not_finite_is_refused(tmp_path):
    """A graph whose weights went NaN (a diverged fit): its NaN probabilities went into
    every emotion event as `"confidence":NaN`, which is no JSON (subscribers in other
    languages refuse it, aerd listen skipped them all) and into classify's line; the model
    is now refused at start, one line naming its file, exit 2."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(REPO / "models" / "default.onnx")
    last = graph.graph.initializer[-1]
    weights = numpy_helper.to_array(last).copy()
    weights[:] = float("nan")
    last.CopyFrom(numpy_helper.from_array(weights, last.name))
    bad = tmp_path / "diverged.onnx"
    onnx.save(graph, bad)
    card = _card(tmp_path, onnx=str(bad), onnx_sha256="")
    with pytest.raises(ModelError, match=rf"^{bad}: output \[\[nan, .* is not the 8 finite "
                                         "probabilities the card lists$"):
        load_model(card)
    r = run("run", "--model", str(card), "--no-adapt", "--input", str(CLIPS[0]), "--fast", timeout=60)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and str(bad) in lines[-1] and "finite" in lines[-1], r.stderr
