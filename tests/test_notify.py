"""sd_notify over real AF_UNIX datagram sockets, and the watchdog gate."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid

import pytest

from aerd.notify import Notifier, NotifyConfig, WatchdogGate


@pytest.fixture
def listener(tmp_path):
    """A bound datagram socket standing in for systemd; yields (sock, path)."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    yield sock, str(path)
    sock.close()


def recv(sock: socket.socket) -> bytes:
    return sock.recv(4096)


def nothing_pending(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(4096)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(2)
    return False


def env(path: str, **extra: str) -> dict[str, str]:
    return {"NOTIFY_SOCKET": path, **extra}


def test_exact_datagrams(listener):
    sock, path = listener
    n = Notifier.from_env(env(path, WATCHDOG_USEC="10000000"))
    assert n.enabled
    assert n.ready() is True
    assert recv(sock) == b"READY=1"
    n.status("loading model\nstep 2\r\n")
    assert recv(sock) == b"STATUS=loading model step 2"
    n.watchdog()
    assert recv(sock) == b"WATCHDOG=1"
    n.stopping()
    assert recv(sock) == b"STOPPING=1"
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    n.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    lines = recv(sock).decode().split("\n")
    assert lines[0] == "RELOADING=1"
    key, _, value = lines[1].partition("=")
    assert key == "MONOTONIC_USEC" and len(lines) == 2
    assert before <= int(value) <= after
    n.send(STATUS="x", ERRNO=5)
    assert recv(sock) == b"STATUS=x\nERRNO=5"
    n.close()


def test_abstract_socket():
    name = f"aerd-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        n = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert n.config.address == "\0" + name
        assert n.ready()
        assert recv(sock) == b"READY=1"
    finally:
        sock.close()


def test_noop_without_notify_socket(monkeypatch):
    n = Notifier.from_env({"WATCHDOG_USEC": "1000000"})
    assert not n.enabled
    assert n.watchdog_interval is None

    def boom(*a, **k):
        raise AssertionError("socket must not be created")

    monkeypatch.setattr(socket, "socket", boom)
    assert n.ready() is False
    assert n.status("x") is False
    assert n.watchdog() is False
    assert n.stopping() is False
    assert n.reloading() is False


def test_from_env_defaults_to_process_environment(monkeypatch, listener):
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert Notifier.from_env().ready()
    assert recv(sock) == b"READY=1"


def test_watchdog_interval_math(listener):
    _, path = listener
    assert Notifier.from_env(env(path, WATCHDOG_USEC="30000000")).watchdog_interval == 15.0
    assert Notifier.from_env(env(path, WATCHDOG_USEC="1")).watchdog_interval == 5e-7
    own = env(path, WATCHDOG_USEC="4000000", WATCHDOG_PID=str(os.getpid()))
    assert Notifier.from_env(own).watchdog_interval == 2.0
    assert Notifier.from_env(env(path)).watchdog_interval is None
    assert Notifier.from_env(env(path, WATCHDOG_USEC="0")).watchdog_interval is None
    assert Notifier.from_env(env(path, WATCHDOG_USEC="soon")).watchdog_interval is None


def test_watchdog_pid_mismatch_disables_watchdog(listener):
    sock, path = listener
    n = Notifier.from_env(env(path, WATCHDOG_USEC="4000000", WATCHDOG_PID=str(os.getpid() + 1)))
    assert n.watchdog_interval is None
    assert n.watchdog() is False
    assert nothing_pending(sock)
    n.ready()  # other notifications still go out
    assert recv(sock) == b"READY=1"


def test_vanished_socket_does_not_raise(listener, caplog):
    sock, path = listener
    n = Notifier.from_env(env(path))
    assert n.ready()
    sock.close()
    os.unlink(path)
    with caplog.at_level(logging.DEBUG, logger="aerd.notify"):
        assert n.ready() is False
        assert n.status("still alive") is False
        assert n.stopping() is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert path in warnings[0].getMessage()


def test_nonexistent_socket_from_start_does_not_raise(tmp_path):
    n = Notifier(NotifyConfig(address=str(tmp_path / "missing.sock")))
    assert n.ready() is False


def test_bad_field_name_rejected(listener):
    _, path = listener
    with pytest.raises(ValueError):
        Notifier.from_env(env(path)).send(ready=1)


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_watchdog_gate_needs_progress_and_interval(listener):
    sock, path = listener
    n = Notifier.from_env(env(path, WATCHDOG_USEC="10000000"))  # ping every 5 s
    clock = FakeClock()
    gate = WatchdogGate(n, clock=clock)
    assert gate.interval == 5.0

    assert gate.maybe_ping() is False  # no progress yet
    assert nothing_pending(sock)
    gate.progress()
    assert gate.maybe_ping() is True  # first ping needs only progress
    assert recv(sock) == b"WATCHDOG=1"

    gate.progress()
    clock.t += 4.9
    assert gate.maybe_ping() is False  # interval not elapsed
    clock.t += 0.1
    assert gate.maybe_ping() is True
    assert recv(sock) == b"WATCHDOG=1"

    clock.t += 60  # pipeline hung: no progress, however long we wait
    assert gate.maybe_ping() is False
    assert gate.maybe_ping(now=clock.t + 1000) is False
    assert nothing_pending(sock)

    gate.progress()  # recovered
    assert gate.maybe_ping() is True
    assert recv(sock) == b"WATCHDOG=1"


def test_watchdog_gate_explicit_now_and_disabled(listener):
    sock, path = listener
    n = Notifier.from_env(env(path, WATCHDOG_USEC="2000000"))
    gate = WatchdogGate(n, clock=lambda: pytest.fail("clock must not be read"))
    gate.progress()
    assert gate.maybe_ping(now=10.0) is True
    gate.progress()
    assert gate.maybe_ping(now=10.5) is False
    assert gate.maybe_ping(now=11.0) is True
    assert recv(sock) == b"WATCHDOG=1" and recv(sock) == b"WATCHDOG=1"

    off = WatchdogGate(Notifier.from_env(env(path)))
    off.progress()
    assert off.interval is None
    assert off.maybe_ping(now=1e9) is False
    assert nothing_pending(sock)
