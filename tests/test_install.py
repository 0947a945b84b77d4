"""The installed package (as `pip install .` leaves it) works outside the source tree."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).parent / "aerd"
CLIP = REPO / "tests" / "data" / "03-01-05-02-01-01-01.flac"


@pytest.mark.skipif(not SCRIPT.exists(), reason="aerd is not installed in this environment "
                    "(tools/test.sh installs it with pip install .)")
def test_installed_command_uses_packaged_models(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([sys.executable, "-c", "import aerd.model as m; print(m.MODELS_DIR)"],
                           capture_output=True, text=True, cwd=tmp_path, env=env, check=True)
    models = Path(where.stdout.strip())
    assert "site-packages" in models.parts, f"imported the source tree, not the installed package: {models}"
    assert (models / "default.json").exists() and (models / "default.onnx").exists()
    r = subprocess.run([str(SCRIPT), "classify", str(CLIP)], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["label"]


@pytest.mark.skipif(not SCRIPT.exists() or sys.prefix == sys.base_prefix,
                    reason="needs the virtualenv tools/test.sh makes, with aerd installed")
def test_quick_start_script_installs_and_runs_the_daemon(tmp_path):
    """README's quick start, tools/run.sh, into this test run's own virtualenv (everything is
    already there, so pip reinstalls aerd only), then `aerd run` with the options given."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["AERD_VENV"] = sys.prefix
    (tmp_path / "talk.flac").write_bytes(CLIP.read_bytes())   # a path relative to the caller
    args = [str(REPO / "tools" / "run.sh"), "--input", "talk.flac", "--fast",
            "--endpoint", "ipc://q.sock", "--state-dir", "state"]
    r = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "end of file" in r.stdout + r.stderr
    assert (tmp_path / "state").is_dir()

    # a restart with the checkout unchanged installs nothing, so it works without a package
    # index (pip's isolated build would need setuptools from it)
    offline = {**env, "PIP_NO_INDEX": "1"}
    r = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env=offline, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "up to date" in r.stdout and "installing" not in r.stdout
    assert "end of file" in r.stdout + r.stderr

    # a changed checkout (here: a fingerprint that no longer matches) is installed again
    (Path(sys.prefix) / ".aerd-source").write_text("an older checkout\n")
    r = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env=offline, timeout=120)
    assert "installing aerd" in r.stdout, r.stdout + r.stderr
    assert r.returncode != 0   # which pip cannot do offline; the installed aerd stays as it was
    assert not (Path(sys.prefix) / ".aerd-source").exists()
