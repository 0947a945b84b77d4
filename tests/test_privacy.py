"""Nothing leaves the process or lands on disk behind the user's back: classifying a clip, or
running the daemon on one, with the real onnxruntime writes no file under $HOME or $TMPDIR
(onnxruntime's telemetry, on by default in its Linux wheels since 1.29, would write a device
id, an event queue and a session file there before uploading); the daemon writes only its
adaptation state, in its state directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "tests" / "data" / "03-01-05-02-01-01-01.flac"


def run_aerd(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m aerd ARGS`` as a user's shell would run it (none of the variables that
    also silence onnxruntime's telemetry), with $HOME and $TMPDIR empty directories."""
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("CI", "ORT_RUNNING_UNIT_TESTS", "ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), TMPDIR=str(tmp), PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "aerd", *args], env=env, capture_output=True,
                       text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return r


def files_under(*dirs: Path) -> list[str]:
    return sorted(str(p) for d in dirs for p in d.rglob("*"))


def test_classify_writes_nothing_to_home_or_tmp(tmp_path):
    r = run_aerd(tmp_path, "classify", str(CLIP))
    assert json.loads(r.stdout)["label"]
    assert files_under(tmp_path / "home", tmp_path / "tmp") == []


def test_daemon_writes_only_its_state(tmp_path):
    state, sock = tmp_path / "state", tmp_path / "sock"
    sock.mkdir()
    run_aerd(tmp_path, "run", "--fast", "--input", str(CLIP), "--state-dir", str(state),
             "--endpoint", f"ipc://{sock}/pub", "--log-level", "warning")
    assert files_under(tmp_path / "home", tmp_path / "tmp") == []
    assert [p.name for p in state.iterdir()] == ["adapt-default.json"]
