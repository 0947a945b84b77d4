"""The installed package (as `pip install .` leaves it) works outside the source tree."""

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
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


def _script_checkout(tmp_path):
    """A checkout with tools/test.sh, tools/source-fingerprint.sh, a stand-in apt-install.sh
    and small stand-ins for the files an install takes; its path has a space."""
    checkout = tmp_path / "a checkout"
    (checkout / "tools").mkdir(parents=True)
    for f in ("test.sh", "source-fingerprint.sh"):
        (checkout / "tools" / f).write_bytes((REPO / "tools" / f).read_bytes())
    (checkout / "tools" / "apt-install.sh").write_text("#!/bin/sh\nexit 0\n")
    for f in ("test.sh", "source-fingerprint.sh", "apt-install.sh"):
        (checkout / "tools" / f).chmod(0o755)
    for f in ("pyproject.toml", "README.md", "LICENSE", "aerd/__init__.py", "models/default.json"):
        (checkout / f).parent.mkdir(parents=True, exist_ok=True)
        (checkout / f).write_text(f)
    return checkout


def _logging_venv(venv, log):
    """A stand-in virtualenv whose python logs its arguments (pip and pytest calls)."""
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    (venv / "bin" / "python").write_text(f'#!/bin/sh\necho "venv $*" >>"{log}"\n')
    (venv / "bin" / "python").chmod(0o755)


def test_test_script_reinstalls_only_when_the_checkout_changed(tmp_path):
    """A re-run of tools/test.sh over an up-to-date .venv installs nothing (so it works
    offline; it upgraded pip and reinstalled at every run); a changed source file reinstalls."""
    checkout = _script_checkout(tmp_path)
    log = tmp_path / "calls.log"
    _logging_venv(checkout / ".venv", log)

    def run_and_calls():
        log.write_text("")
        r = subprocess.run(["bash", str(checkout / "tools" / "test.sh"), "-k", "nothing"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        return [c for c in log.read_text().splitlines() if "pip install" in c]

    assert run_and_calls() != []          # first run: installs
    assert run_and_calls() == []          # nothing changed
    (checkout / "aerd" / "__init__.py").write_text("changed")
    assert any(".[test]" in c for c in run_and_calls())


def test_test_script_makes_again_a_virtualenv_without_pip(tmp_path):
    """tools/test.sh re-run over a .venv left without pip (an interrupted or failed
    `python3 -m venv`) makes it again instead of failing on it at every run. The checkout's
    path has a space; apt-get and the new virtualenv are stand-ins (no network)."""
    checkout = _script_checkout(tmp_path)
    subprocess.run([sys.base_prefix + "/bin/python3", "-m", "venv", "--without-pip",
                    str(checkout / ".venv")], check=True, timeout=120)
    log = tmp_path / "calls.log"
    fake = tmp_path / "fake-python3"   # `-m venv --clear .venv`: a .venv whose python logs
    fake.write_text(f"""#!/bin/sh
echo "python3 $*" >>"{log}"
rm -rf .venv && mkdir -p .venv/bin
printf '#!/bin/sh\\necho "venv $*" >>"{log}"\\n' >.venv/bin/python
chmod +x .venv/bin/python
""")
    fake.chmod(0o755)
    r = subprocess.run(["bash", str(checkout / "tools" / "test.sh"), "-k", "nothing"],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHON": str(fake)})
    assert r.returncode == 0, r.stdout + r.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "python3 -m venv --clear .venv", calls
    assert calls[-1].startswith("venv -m pytest") and calls[-1].endswith("-k nothing"), calls


@pytest.mark.parametrize("script", ["run.sh", "test.sh"])
def test_scripts_stop_on_build_files_they_cannot_remove(tmp_path, script):
    """The service install (`sudo pip install .`) leaves root's build/ and aerd.egg-info/ in
    the checkout; pip run by the user then failed on them with a traceback (and run.sh went
    on after a warning). Now the script stops before pip, naming the directory and the fix.
    Here the directory cannot be removed because it is not writable, for a user other than
    root (as root the scripts run as nobody)."""
    base = Path(tempfile.mkdtemp(prefix="aerd-install-")) if os.geteuid() == 0 else tmp_path
    try:
        base.chmod(0o755)
        checkout = _script_checkout(base)
        (checkout / "tools" / "run.sh").write_bytes((REPO / "tools" / "run.sh").read_bytes())
        (checkout / "tools" / "run.sh").chmod(0o755)
        log = base / "calls.log"
        venv = checkout / ".venv"
        _logging_venv(venv, log)
        log.write_text("")
        stale = checkout / "aerd.egg-info"
        stale.mkdir()
        (stale / "PKG-INFO").write_text("root's\n")
        cmd, env = ["bash", str(checkout / "tools" / script)], {**os.environ, "AERD_VENV": str(venv)}
        if os.geteuid() == 0:
            if shutil.which("setpriv") is None:
                pytest.skip("running as root without setpriv to run the script as another user")
            nobody = pwd.getpwnam("nobody")
            for p in [base, *base.rglob("*")]:
                os.lchown(p, nobody.pw_uid, nobody.pw_gid)
            cmd = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                   "--clear-groups", *cmd]
        stale.chmod(0o555)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=base)
        stale.chmod(0o755)
        assert r.returncode == 1, r.stdout + r.stderr
        assert f"cannot remove {stale} " in r.stderr and "sudo rm -rf it" in r.stderr, r.stderr
        assert "pip install" not in log.read_text()
    finally:
        if base != tmp_path:
            shutil.rmtree(base)
