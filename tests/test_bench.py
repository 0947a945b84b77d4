"""tools/bench.py runs end to end (4 minutes of audio, 2 runs: enough for the marginal CPU cost
to stand clear of start-up noise; figures are checked for sanity, not speed). The tools leave
nothing behind in the temporary directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def private_tmp(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """An empty directory and an environment whose TMPDIR it is."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    return tmp, dict(os.environ, TMPDIR=str(tmp))


@pytest.mark.timeout(300)
def test_bench_runs_side_by_side(tmp_path):
    pytest.importorskip("librosa", reason="the seed-style reference needs librosa (pip install '.[test]')")
    out = tmp_path / "bench.json"
    tmp, env = private_tmp(tmp_path)
    # no STATE_DIRECTORY, as by hand: the daemon runs must still leave the user's state alone
    env.pop("STATE_DIRECTORY", None)
    env["HOME"] = str(tmp_path / "home")
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "bench.py"), "--minutes", "4",
                        "--latency-seconds", "4", "--repeats", "2", "--models", "default,seed180",
                        "--out", str(out)], capture_output=True, text=True, timeout=280, cwd=ROOT,
                       env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not list(tmp.iterdir()), "bench.py left files behind"
    assert not (tmp_path / "home" / ".local" / "state" / "aerd").exists(), \
        "bench.py wrote the user's adaptation state"
    res = json.loads(out.read_text())
    names = [row["name"] for row in res["rows"]]
    assert names == ["aerd (default)", "aerd (seed180)", "seed-style (librosa+sklearn)"]
    for row in res["rows"]:
        assert row["cpu_ms_per_audio_s"] > 0 and row["rtf"] > 1
        assert 10 < row["peak_rss_mb"] < 1000 and 0 < row["ready_s"] < 60
    assert res["rows"][0]["peak_rss_mb"] < res["rows"][2]["peak_rss_mb"]   # no librosa in aerd
    assert res["latency"]["events"] >= 1 and res["latency"]["p99_ms"] > 0
    assert "x cheaper than the seed-style pipeline" in r.stdout


def test_stages_breakdown(tmp_path, clip):
    """tools/stages.py times each stage of a real --fast run; the stages fit inside the loop."""
    import numpy as np
    import soundfile as sf

    wav = tmp_path / "speech.wav"
    sf.write(wav, np.resize(np.asarray(clip, np.float32), 30 * 16000), 16000, subtype="PCM_16")
    tmp, env = private_tmp(tmp_path)
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "stages.py"), str(wav), "--model", "seed180"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not list(tmp.iterdir()), "stages.py left files behind"
    ms = {line[:40].strip(): float(line[40:]) for line in r.stdout.splitlines()[1:]}
    assert {"file reading", "model (onnxruntime)", "window statistics", "whole loop"} <= set(ms)
    parts = sum(v for k, v in ms.items() if k != "whole loop")
    assert 0 < parts <= ms["whole loop"]
    bad = subprocess.run([sys.executable, str(ROOT / "tools" / "stages.py"), str(tmp_path / "none.wav")],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert bad.returncode != 0 and "none.wav" in bad.stderr
