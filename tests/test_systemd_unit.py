"""systemd/aerd.service: required directives, and `systemd-analyze verify` is clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "aerd.service"
EXEC_START = "ExecStart=/opt/aerd/bin/aerd run --config /etc/aerd/aerd.toml"


def parse(text: str) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> values in order; comments and blanks skipped."""
    out: dict[tuple[str, str], list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {raw!r}"
        out.setdefault((section, key.strip()), []).append(value.strip())
    return out


@pytest.fixture(scope="module")
def directives() -> dict[tuple[str, str], list[str]]:
    return parse(UNIT.read_text())


EXPECTED = {
    "Type": "notify",
    "NotifyAccess": "main",
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "WatchdogSec": "30",
    "Restart": "on-failure",
    "RestartSec": "5",
    "RestartPreventExitStatus": "2",
    "TimeoutStopSec": "10",
    "DynamicUser": "yes",
    "SupplementaryGroups": "audio",
    "StateDirectory": "aerd",
    "ConfigurationDirectory": "aerd",
    "UMask": "0077",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "no",
    "DevicePolicy": "closed",
    "DeviceAllow": "char-alsa rw",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    "SystemCallFilter": "@system-service",
    "SystemCallArchitectures": "native",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
}


def test_restart_prevented_for_lasting_errors_only(directives):
    """Errors that would come back at every start are not restarted; a busy endpoint is."""
    from aerd.errors import AerdError, AudioError, BusyError, ConfigError, ModelError

    prevented = {int(v) for v in directives[("Service", "RestartPreventExitStatus")][0].split()}
    assert {e.exit_code for e in (AerdError, ConfigError, ModelError, AudioError)} <= prevented
    assert BusyError.exit_code not in prevented and issubclass(BusyError, ConfigError)


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_service_directive(directives, key):
    assert directives.get(("Service", key)) == [EXPECTED[key]]


def test_exec_start_and_install(directives):
    assert directives[("Service", "ExecStart")] == [EXEC_START.partition("=")[2]]
    assert directives[("Install", "WantedBy")] == ["multi-user.target"]
    assert directives[("Service", "RestrictRealtime")][0] in {"yes", "no"}


def test_environment(directives):
    words = " ".join(directives[("Service", "Environment")]).split()
    for item in ("OMP_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1", "PYTHONUNBUFFERED=1"):
        assert item in words


def test_no_memory_deny_write_execute(directives):
    assert not any(key == "MemoryDenyWriteExecute" for _, key in directives)
    # ...and the reason is written down next to where it would go.
    assert "MemoryDenyWriteExecute" in UNIT.read_text() and "cffi" in UNIT.read_text()


def runnable_exec_start() -> str:
    """ExecStart pointing at something that exists on this machine."""
    script = Path(sys.executable).parent / "aerd"
    found = str(script) if script.exists() else shutil.which("aerd")
    cmd = found if found else f"{sys.executable} -m aerd"
    return f"ExecStart={cmd} run --config /etc/aerd/aerd.toml"


def verify(unit_text: str, tmp_path: Path, dropin: str | None = None) -> list[str]:
    """Run `systemd-analyze verify` on *unit_text* (with *dropin* as its aerd.service.d/
    drop-in); return the problems found."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    unit = tmp_path / "aerd.service"
    unit.write_text(unit_text)
    if dropin is not None:
        (tmp_path / "aerd.service.d").mkdir()
        (tmp_path / "aerd.service.d" / "curve.conf").write_text(dropin)
    helptext = subprocess.run([tool, "verify", "--help"], capture_output=True, text=True).stdout
    cmd = [tool, "verify"] + (["--man=no"] if "--man" in helptext else []) + [str(unit)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    output = (proc.stdout + proc.stderr).splitlines()
    problems = [line for line in output if "aerd.service" in line]
    if proc.returncode != 0:
        problems.append(f"exit status {proc.returncode}: {output}")
    return problems


def localized(text: str) -> str:
    """The unit with only ExecStart rewritten; every other line identical."""
    lines = text.splitlines(keepends=True)
    assert sum(line.rstrip("\n") == EXEC_START for line in lines) == 1
    return "".join(runnable_exec_start() + "\n" if line.rstrip("\n") == EXEC_START else line
                   for line in lines)


def test_systemd_analyze_verify(tmp_path):
    assert verify(localized(UNIT.read_text()), tmp_path) == []


def test_verify_harness_catches_mistakes(tmp_path):
    broken = localized(UNIT.read_text()).replace("WatchdogSec=30", "WatchdogSecs=30")
    assert any("WatchdogSecs" in p for p in verify(broken, tmp_path))


DROPIN = UNIT.parent / "curve.conf"


def localized_dropin(text: str) -> str:
    """The CURVE drop-in with its ExecStart's program made runnable here."""
    prog = EXEC_START.removeprefix("ExecStart=").split(" run ")[0]
    here = runnable_exec_start().removeprefix("ExecStart=").split(" run ")[0]
    assert text.count(prog) == 1
    return text.replace(prog, here)


def test_curve_dropin_hands_the_secret_key_over_as_a_credential(tmp_path):
    d = parse(DROPIN.read_text())
    assert d[("Service", "LoadCredential")] == ["server.key_secret:/etc/aerd/keys/server.key_secret"]
    reset, cmd = d[("Service", "ExecStart")]
    assert reset == "" and "--curve-secret %d/server.key_secret" in cmd
    assert "--curve-clients /etc/aerd/clients" in cmd and "--endpoint tcp://0.0.0.0:" in cmd
    assert verify(localized(UNIT.read_text()), tmp_path, localized_dropin(DROPIN.read_text())) == []
    broken = localized_dropin(DROPIN.read_text()).replace("LoadCredential=", "LoadCredentials=")
    other = tmp_path / "broken"
    other.mkdir()
    assert any("LoadCredentials" in p for p in verify(localized(UNIT.read_text()), other, broken))
