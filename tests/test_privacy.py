"""Nothing leaves the process or lands on disk behind the user's back: classifying a clip
with the real onnxruntime writes no file under $HOME or $TMPDIR (onnxruntime's telemetry,
on by default in its Linux wheels since 1.29, would write a device id, an event queue and a
session file there before uploading)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "tests" / "data" / "03-01-05-02-01-01-01.flac"


def test_classify_writes_nothing_to_home_or_tmp(tmp_path):
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    # a user's shell: none of the variables that also silence onnxruntime's telemetry
    env = {k: v for k, v in os.environ.items()
           if k not in ("CI", "ORT_RUNNING_UNIT_TESTS", "ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), TMPDIR=str(tmp), PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "aerd", "classify", str(CLIP)], env=env,
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["label"]
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
                  if p not in (home, tmp))
    assert left == [], left
