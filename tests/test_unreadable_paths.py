"""Files the user names behind a directory aerd may not enter: one line naming the file, not a
traceback. Under aerd.service this is what a path in /home is (`ProtectHome=yes` makes /home
inaccessible to the service): `[model] path = "/home/pi/my.json"` was a PermissionError
traceback from `Path.exists()` and exit 1, which `Restart=on-failure` repeated every 5 s."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from e2e_helpers import CLIPS, REPO, aerd_cmd, env, free_tcp_port

# as root, drop the capabilities that bypass file permissions (a service's dynamic user has none)
UNPRIVILEGED = (["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
                if os.geteuid() == 0 else [])


@pytest.fixture
def locked(tmp_path):
    """tmp_path/locked (mode 000) holding a model, a clip, a key pair and a keys directory;
    also a readable key pair in tmp_path/keys."""
    from aerd.security import keygen

    lk = tmp_path / "locked"
    (lk / "clients").mkdir(parents=True)
    for f in ("default.json", "default.onnx", "default.adapt.onnx"):
        shutil.copy(REPO / "models" / f, lk / f)
    shutil.copy(CLIPS[0], lk / "a.flac")
    keygen(lk, "s")
    shutil.copy(lk / "s.key", lk / "clients" / "s.key")
    keygen(tmp_path / "keys", "ok")
    lk.chmod(0)
    if UNPRIVILEGED and shutil.which(UNPRIVILEGED[0]) is None:
        lk.chmod(0o700)
        pytest.skip("as root, needs setpriv (util-linux) to run without the file permissions")
    works = subprocess.run([*UNPRIVILEGED, "true"]).returncode == 0
    if not works or subprocess.run([*UNPRIVILEGED, "test", "-r", str(lk / "a.flac")]).returncode == 0:
        lk.chmod(0o700)
        pytest.skip("cannot run without permission to read files here (setpriv refused)")
    yield lk
    lk.chmod(0o700)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*UNPRIVILEGED, *aerd_cmd(*args)], capture_output=True, text=True,
                          timeout=120, env=env(), cwd=REPO)


@pytest.mark.parametrize("case", [
    "run --input", "classify FILE", "run --model", "classify --model .onnx", "run --curve-secret",
    "run --curve-clients", "listen --server-key", "relay --frontend-clients", "keygen DIR"])
def test_a_path_behind_a_locked_directory_is_one_line(locked, tmp_path, case):
    ok = str(tmp_path / "keys" / "ok.key_secret")
    ep = f"tcp://127.0.0.1:{free_tcp_port()}"
    clip = str(CLIPS[0])
    args, named, code = {
        "run --input": (["run", "--input", f"{locked}/a.flac", "--fast", "--endpoint", ep],
                        "a.flac", 2),
        "classify FILE": (["classify", f"{locked}/a.flac"], "a.flac", 1),
        "run --model": (["run", "--model", f"{locked}/default.json", "--input", clip],
                        "default.json", 2),
        "classify --model .onnx": (["classify", "--model", f"{locked}/default.onnx", clip],
                                   "default.", 2),
        "run --curve-secret": (["run", "--input", clip, "--endpoint", ep, "--curve-secret",
                                f"{locked}/s.key_secret"], "s.key_secret", 2),
        "run --curve-clients": (["run", "--input", clip, "--endpoint", ep, "--curve-secret", ok,
                                 "--curve-clients", f"{locked}/clients"], "clients", 2),
        "listen --server-key": (["listen", "--endpoint", ep, "--timeout", "1", "--server-key",
                                 f"{locked}/s.key", "--key", ok], "s.key", 2),
        "relay --frontend-clients": (["relay", "--frontend", ep, "--backend",
                                      f"tcp://127.0.0.1:{free_tcp_port()}", "--frontend-secret",
                                      ok, "--frontend-clients", f"{locked}/clients"],
                                     "clients", 2),
        "keygen DIR": (["keygen", f"{locked}/new"], "new", 2),
    }[case]
    r = _run(*args)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == code and len(lines) == 1, r.stderr
    assert str(locked) in lines[0] and named in lines[0] and "ermission denied" in lines[0], lines
