"""The sdist and wheel built from the checkout's tracked files, and the wheel installed with
the lowest dependency versions pyproject.toml allows, run from outside the source tree.
Slow, and needs the package index: run by hand with `tools/test.sh -m slow tests/test_packaging.py`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CLIPS = sorted((REPO / "tests" / "data").glob("*.flac"))
MODELS = ("default", "default-int8", "seed180")
NOT_SHIPPED = {"tests", "tools", ".ci", "systemd", "cache", ".venv", "venv", "build"}
TRAINING = {"librosa", "numba", "scikit-learn", "skl2onnx", "onnx", "scipy", "matplotlib"}

pytestmark = pytest.mark.slow


def lowest_versions() -> dict[str, str]:
    """name -> the lower bound of each runtime dependency (all are written `name>=version`)."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    found = [re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", d) for d in deps]
    assert all(found), f"a dependency without a plain lower bound: {deps}"
    return {m[1]: m[2] for m in found}


def release(version: str) -> tuple[int, ...]:
    """"1.26.0" and "1.26" alike."""
    parts = [int(p) for p in version.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def run(cmd: list[str], cwd: Path, timeout: float = 900, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                       timeout=timeout, env={**env, **kw.pop("env", {})}, **kw)
    assert r.returncode == 0, f"{cmd}: exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """A copy of the tracked files (a clean clone, with uncommitted edits), its sdist and wheel."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout")
    top = tmp_path_factory.mktemp("pkg")
    clone = top / "clone"
    tracked = run(["git", "ls-files", "-z"], REPO).stdout.split("\0")
    for f in filter(None, tracked):
        (clone / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, clone / f)
    tools = top / "tools-venv"
    run([sys.base_prefix + "/bin/python3", "-m", "venv", tools], top)
    run([tools / "bin" / "python", "-m", "pip", "install", "-q", "build"], top)
    run([tools / "bin" / "python", "-m", "build", "--outdir", top / "dist", clone], top)
    return {"top": top, "sdist": next((top / "dist").glob("*.tar.gz")),
            "wheel": next((top / "dist").glob("*.whl"))}


def test_sdist_holds_the_package_and_models_only(built):
    with tarfile.open(built["sdist"]) as t:
        names = [n.split("/", 1)[1] for n in t.getnames() if "/" in n]
    assert not [n for n in names if n.split("/")[0] in NOT_SHIPPED], names
    for stem in MODELS:
        assert {f"models/{stem}.onnx", f"models/{stem}.json"} <= set(names)
    assert "models/MODEL_CARD.md" in names and "pyproject.toml" in names and "LICENSE" in names
    assert {f"aerd/{p.name}" for p in (REPO / "aerd").glob("*.py")} <= set(names)


def test_wheel_holds_the_package_and_models_only(built):
    names = zipfile.ZipFile(built["wheel"]).namelist()
    assert {n.split("/")[0] for n in names} == {"aerd", built["wheel"].name.split("-py3")[0] + ".dist-info"}
    for stem in MODELS:
        assert {f"aerd/models/{stem}.onnx", f"aerd/models/{stem}.json"} <= set(names)
    assert "aerd/models/MODEL_CARD.md" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names   # the MIT text
    assert {f"aerd/{p.name}" for p in (REPO / "aerd").glob("*.py")} <= set(names)


def test_wheel_with_the_lowest_dependencies_runs_outside_the_source_tree(built):
    top = built["top"]
    venv, elsewhere = top / "lowest", top / "elsewhere"
    elsewhere.mkdir()
    pins = top / "lowest.txt"
    pins.write_text("".join(f"{n}=={v}\n" for n, v in lowest_versions().items()))
    run([sys.base_prefix + "/bin/python3", "-m", "venv", venv], top)
    run([venv / "bin" / "python", "-m", "pip", "install", "-q", "-c", pins, built["wheel"]], top)
    listed = json.loads(run([venv / "bin" / "python", "-m", "pip", "list", "--format", "json"],
                            top).stdout)
    installed = {p["name"].lower(): p["version"] for p in listed}
    assert not TRAINING & set(installed), installed
    for name, version in lowest_versions().items():
        assert release(installed[name.lower()]) == release(version), (name, installed)

    aerd = venv / "bin" / "aerd"
    assert "classify" in run([aerd, "--help"], elsewhere).stdout
    where = run([venv / "bin" / "python", "-c", "import aerd; print(aerd.__file__)"], elsewhere)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout
    for model in MODELS:
        lines = run([aerd, "classify", "--model", model, *CLIPS], elsewhere).stdout.splitlines()
        results = [json.loads(line) for line in lines]
        assert len(results) == len(CLIPS) and all(r["label"] and r["windows"] for r in results)
        r = run([aerd, "run", "--input", CLIPS[0], "--fast", "--model", model,
                 "--endpoint", f"ipc://{elsewhere}/{model}.sock", "--state-dir", "state"], elsewhere)
        assert "end of file" in r.stdout + r.stderr
    # the config's loopback host by name (libzmq before 4.3.5 cannot bind it: exit 75 and a
    # restart every 5 s under systemd)
    r = run([aerd, "run", "--input", CLIPS[0], "--fast", "--endpoint", "tcp://localhost:*",
             "--state-dir", "state"], elsewhere)
    assert "publishing on tcp://127.0.0.1:" in r.stdout + r.stderr
