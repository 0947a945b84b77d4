"""Tests for aerd.security: endpoint classification, the CURVE guard, keygen and real CURVE."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import stat
import tempfile
import time
from pathlib import Path

import pytest
import zmq

from aerd.errors import ConfigError
from aerd.security import (
    CurveClient,
    CurveServer,
    apply_curve_client,
    apply_curve_server,
    check_endpoint,
    is_local_endpoint,
    keygen,
)

LOCAL = [
    "ipc:///tmp/aerd.sock",
    "inproc://events",
    "tcp://127.0.0.1:5556",
    "tcp://127.1.2.3:5556",
    "tcp://localhost:5556",
    "tcp://LOCALHOST:5556",
    "tcp://[::1]:5556",
    "tcp://::1:5556",
    "tcp://127.0.0.1:*",
    "tcp://[::ffff:127.0.0.1]:5556",
    "tcp://eth0;127.0.0.1:5556",
]
REMOTE = [
    "tcp://*:5556",
    "tcp://0.0.0.0:5556",
    "tcp://192.0.2.1:5556",
    "tcp://[2001:db8::1]:5556",
    "tcp://[::]:5556",
    "tcp://eth0:5556",
    "tcp://example.com:5556",
    "tcp://127.0.0.1;192.0.2.1:5556",
    "epgm://eth0;239.192.1.1:5555",
]
MALFORMED = ["", "127.0.0.1:5556", "tcp://", "tcp://127.0.0.1", "tcp://:5556",
             "tcp://[::1]5556", "tcp://host:port", "bogus://x:1"]


@pytest.mark.parametrize("endpoint", LOCAL)
def test_local_endpoints(endpoint: str) -> None:
    assert is_local_endpoint(endpoint) is True


@pytest.mark.parametrize("endpoint", REMOTE)
def test_remote_endpoints(endpoint: str) -> None:
    assert is_local_endpoint(endpoint) is False


@pytest.mark.parametrize("endpoint", MALFORMED)
def test_malformed_endpoint_names_it(endpoint: str) -> None:
    with pytest.raises(ConfigError) as err:
        is_local_endpoint(endpoint)
    assert repr(endpoint) in str(err.value)


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:5556", "tcp://*:5556", "tcp://192.0.2.1:5556"])
def test_check_endpoint_refuses_remote_without_curve(endpoint: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_endpoint(endpoint, curve=False, insecure=False, option="--publish")
    msg = str(err.value)
    assert "CURVE" in msg and "--publish" in msg and endpoint in msg and "--insecure" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:5556", "tcp://*:5556", "tcp://192.0.2.1:5556"])
def test_check_endpoint_allows_remote_with_curve_or_insecure(
    endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="aerd.security"):
        check_endpoint(endpoint, curve=True, insecure=False)
        assert not caplog.records
        check_endpoint(endpoint, curve=False, insecure=True)
    assert any(r.levelno == logging.WARNING and endpoint in r.getMessage() for r in caplog.records)


def test_check_endpoint_local_needs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="aerd.security"):
        check_endpoint("tcp://127.0.0.1:5556", curve=False, insecure=False)
        check_endpoint("ipc:///tmp/x", curve=False, insecure=False)
    assert not caplog.records


def test_keygen_modes_and_refuses_overwrite(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    public, secret = keygen(keys, "daemon")
    assert (public, secret) == (keys / "daemon.key", keys / "daemon.key_secret")
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) & 0o077 in (0o044, 0o000)
    assert "secret-key" in secret.read_text() and "secret-key" not in public.read_text()
    assert sorted(p.name for p in keys.iterdir()) == ["daemon.key", "daemon.key_secret"]
    before = secret.read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        keygen(keys, "daemon")
    assert secret.read_bytes() == before
    public.unlink()  # half a pair is still refused
    with pytest.raises(ConfigError, match="daemon.key_secret"):
        keygen(keys, "daemon")
    with pytest.raises(ConfigError):
        keygen(keys, "../evil")


def test_bad_key_files_name_the_file(tmp_path: Path) -> None:
    public, secret = keygen(tmp_path / "k", "srv")
    garbage = tmp_path / "garbage.key_secret"
    garbage.write_text("this is not a certificate\n")
    missing = tmp_path / "missing.key_secret"
    ctx = zmq.Context()
    try:
        with ctx.socket(zmq.PUB) as sock:
            for bad in (garbage, missing, public):  # public file has no secret key
                with pytest.raises(ConfigError) as err:
                    apply_curve_server(ctx, sock, CurveServer(bad, None))
                assert str(bad) in str(err.value)
            with pytest.raises(ConfigError) as err:
                apply_curve_server(ctx, sock, CurveServer(secret, tmp_path / "nodir"))
            assert str(tmp_path / "nodir") in str(err.value)
            bad_dir = tmp_path / "clients"
            bad_dir.mkdir()
            (bad_dir / "x.key").write_text("curve\n    public-key = \"short\"\n")
            with pytest.raises(ConfigError) as err:
                apply_curve_server(ctx, sock, CurveServer(secret, bad_dir))
            assert str(bad_dir / "x.key") in str(err.value)
        with ctx.socket(zmq.SUB) as sock:
            with pytest.raises(ConfigError) as err:
                apply_curve_client(sock, CurveClient(public, garbage))
            assert str(garbage) in str(err.value)
            with pytest.raises(ConfigError) as err:
                apply_curve_client(sock, CurveClient(missing, secret))
            assert str(missing) in str(err.value)
    finally:
        ctx.destroy(linger=0)


def _publish_until(pub: zmq.Socket, sub: zmq.Socket, timeout: float) -> list[bytes] | None:
    """Send an emotion event repeatedly until ``sub`` receives one or ``timeout`` passes."""
    payload = json.dumps({"device_id": "a", "label": "happy"}).encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pub.send_multipart([b"emotion", payload])
        if sub.poll(100):
            return sub.recv_multipart()
    return None


@pytest.fixture()
def curve_keys(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    """Server key pair, client A (authorized), client B (unknown); authorized dir holds A."""
    keys = {name: keygen(tmp_path / "keys", name) for name in ("server", "a", "b")}
    authorized = tmp_path / "authorized"
    authorized.mkdir()
    (authorized / "a.key").write_bytes(keys["a"][0].read_bytes())
    keys["authorized"] = (authorized, authorized)
    return keys


def _sub(ctx: zmq.Context, endpoint: str, server_public: Path, secret: Path) -> zmq.Socket:
    sub = ctx.socket(zmq.SUB)
    sub.linger = 0
    apply_curve_client(sub, CurveClient(server_public, secret))
    sub.setsockopt(zmq.SUBSCRIBE, b"emotion")
    sub.connect(endpoint)
    return sub


def test_real_curve_authorized_and_unknown_client(curve_keys: dict) -> None:
    ctx = zmq.Context()
    auth = None
    try:
        pub = ctx.socket(zmq.PUB)
        pub.linger = 0
        server = CurveServer(curve_keys["server"][1], curve_keys["authorized"][0])
        auth = apply_curve_server(ctx, pub, server)
        assert auth is not None and auth.is_alive()
        assert pub.curve_server
        pub.bind("tcp://127.0.0.1:*")
        endpoint = pub.last_endpoint.decode()
        assert endpoint.startswith("tcp://127.0.0.1:")
        server_public = curve_keys["server"][0]
        sub_a = _sub(ctx, endpoint, server_public, curve_keys["a"][1])
        sub_b = _sub(ctx, endpoint, server_public, curve_keys["b"][1])
        got = _publish_until(pub, sub_a, timeout=5.0)
        assert got is not None, "authorized client A received nothing"
        assert got[0] == b"emotion" and json.loads(got[1])["device_id"] == "a"
        assert _publish_until(pub, sub_b, timeout=1.5) is None, "unknown client B got events"
        # a client that does not speak CURVE at all gets nothing either
        plain = ctx.socket(zmq.SUB)
        plain.linger = 0
        plain.setsockopt(zmq.SUBSCRIBE, b"")
        plain.connect(endpoint)
        assert _publish_until(pub, plain, timeout=1.0) is None
        # a second server socket on the same context without an authorized dir
        # accepts any key (its own ZAP domain), while the first still refuses B
        pub2 = ctx.socket(zmq.PUB)
        pub2.linger = 0
        assert apply_curve_server(ctx, pub2, CurveServer(curve_keys["server"][1], None)) is None
        pub2.bind("tcp://127.0.0.1:*")
        sub_b2 = _sub(ctx, pub2.last_endpoint.decode(), server_public, curve_keys["b"][1])
        assert _publish_until(pub2, sub_b2, timeout=5.0) is not None
        assert _publish_until(pub, sub_b, timeout=0.5) is None
    finally:
        if auth is not None:
            auth.stop()
        ctx.destroy(linger=0)


def test_authorized_socket_fails_closed_without_authenticator(curve_keys: dict) -> None:
    ctx = zmq.Context()
    try:
        pub = ctx.socket(zmq.PUB)
        pub.linger = 0
        server = CurveServer(curve_keys["server"][1], curve_keys["authorized"][0])
        auth = apply_curve_server(ctx, pub, server)
        assert auth is not None
        auth.stop()
        pub.bind("tcp://127.0.0.1:*")
        sub_a = _sub(ctx, pub.last_endpoint.decode(), curve_keys["server"][0], curve_keys["a"][1])
        assert _publish_until(pub, sub_a, timeout=1.5) is None
    finally:
        ctx.destroy(linger=0)


@pytest.mark.parametrize("kw, needle", [
    (dict(curve_clients="clients"), "--curve-clients ([publish] curve_clients) needs --curve-secret"),
    (dict(curve_server="relay.key"), "is the relay's key, for --connect only"),
    (dict(connect=True, curve_server="relay.key"), "--curve-server ([publish] curve_server) needs"),
    (dict(connect=True, curve_secret="dev.key_secret"), "needs --curve-server"),
], ids=["clients-without-secret", "server-key-when-binding", "server-key-without-secret",
        "connect-secret-without-server-key"])
def test_curve_options_that_do_not_go_together_are_refused(tmp_path, kw, needle):
    """Refused before any socket exists: not plain text where CURVE was asked for, nor a
    CURVE server where the relay expects a client."""
    from aerd.config import PublishSettings
    from aerd.publisher import Publisher

    with pytest.raises(ConfigError) as e:
        Publisher(PublishSettings(endpoint=f"ipc://{tmp_path}/c.sock", **kw))
    assert needle in str(e.value)
    assert not (tmp_path / "c.sock").exists()


def test_an_ipc_endpoint_never_replaces_a_regular_file(tmp_path):
    from aerd.config import PublishSettings
    from aerd.publisher import Publisher
    from aerd.relay import Relay, RelayConfig

    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    ep = f"ipc://{precious}"
    with pytest.raises(ConfigError, match="exists and is not a socket"):
        Publisher(PublishSettings(endpoint=ep))
    with pytest.raises(ConfigError, match="--backend .*exists and is not a socket"):
        Relay(RelayConfig(f"ipc://{tmp_path}/front.sock", ep, None, None, insecure=False)).start()
    assert precious.read_text() == "keep me\n"


def _as_another_user(fn):
    """``fn()``'s text as a user that may not connect to this user's 0700 socket files: as
    root (who may connect to any), in a child process turned into nobody; else in this one."""
    if os.getuid() != 0:
        return fn()
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:   # child: never back into pytest
        try:
            os.setgid(65534)
            os.setuid(65534)
            os.write(wfd, fn().encode())
        finally:
            os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as r:
        text = r.read().decode()
    os.waitpid(pid, 0)
    return text


def test_an_ipc_socket_of_another_user_is_not_taken_over():
    """A live socket this user may not connect to (another user's: EACCES) passed for a stale
    one: libzmq unlinked it and bound the path, and the other daemon's subscribers reached it
    no more. The probe only calls a file stale when the connection is refused."""
    from aerd.config import PublishSettings
    from aerd.publisher import Publisher

    shared = Path(tempfile.mkdtemp(prefix="aerd-shared-", dir="/tmp"))
    try:
        shared.chmod(0o777)   # a directory both users may write (no sticky bit)
        path = shared / "d.sock"
        holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        holder.bind(str(path))
        holder.listen()
        path.chmod(0o700 if os.getuid() == 0 else 0o500)   # the owner's; not even it writes
        inode = path.stat().st_ino

        def bind() -> str:
            try:
                Publisher(PublishSettings(endpoint=f"ipc://{path}")).close()
            except ConfigError as e:
                return str(e)
            return "bound"

        said = _as_another_user(bind)
        holder.close()
        assert said.startswith(f"--endpoint ipc://{path}: {path} exists and this user cannot "
                               "tell whether a process listens on it (Permission denied)"), said
        assert path.stat().st_ino == inode   # still the holder's
        if os.getuid() != 0:
            path.chmod(0o700)
        # the holder gone, its file is stale: its owner's next bind replaces it, as before
        Publisher(PublishSettings(endpoint=f"ipc://{path}")).close()
        assert not path.exists()
    finally:
        shutil.rmtree(shared)


def test_a_publisher_removes_its_socket_file_but_not_a_newer_one(tmp_path):
    """libzmq leaves an ipc:// socket file behind; the publisher removes its own on close,
    but not one that another bind has put there since."""
    from aerd.config import PublishSettings
    from aerd.publisher import Publisher

    path = tmp_path / "ev.sock"
    first = Publisher(PublishSettings(endpoint=f"ipc://{path}"))
    assert path.is_socket()
    first.close()
    assert not path.exists()

    first = Publisher(PublishSettings(endpoint=f"ipc://{path}"))
    path.unlink()                      # e.g. an operator cleaning up; then a new daemon binds
    second = Publisher(PublishSettings(endpoint=f"ipc://{path}"))
    first.close()
    assert path.is_socket(), "closing the first publisher removed the second one's socket"
    second.close()
    assert not path.exists()


def test_curve_messages_name_what_is_wrong(tmp_path):
    """A connecting daemon's hint names its own flags; a clients "directory" that is a file
    is said to be one."""
    from aerd.config import PublishSettings
    from aerd.publisher import Publisher

    with pytest.raises(ConfigError, match=r"--connect .*\(--curve-secret and --curve-server\)"):
        Publisher(PublishSettings(endpoint="tcp://10.1.2.3:5683", connect=True))
    with pytest.raises(ConfigError, match=r"--endpoint .*\(--curve-secret/--curve-clients\)"):
        Publisher(PublishSettings(endpoint="tcp://0.0.0.0:5683"))
    pub, sec = keygen(tmp_path, "server")
    with pytest.raises(ConfigError, match="directory .* is not a directory"):
        Publisher(PublishSettings(endpoint=f"ipc://{tmp_path}/c.sock", curve_secret=str(sec),
                                  curve_clients=str(pub)))
    with pytest.raises(ConfigError, match="directory .* does not exist"):
        Publisher(PublishSettings(endpoint=f"ipc://{tmp_path}/c.sock", curve_secret=str(sec),
                                  curve_clients=str(tmp_path / "nowhere")))


def test_listen_says_when_it_may_not_connect_to_an_ipc_socket():
    """A daemon's socket file another user may not connect to (the unit's UMask=0077): libzmq
    retries the connect in silence, so `aerd listen` waited out its timeout without a word.
    It now says why no event can come."""
    import contextlib
    import io

    from aerd.listen import listen

    shared = Path(tempfile.mkdtemp(prefix="aerd-shared-", dir="/tmp"))
    try:
        shared.chmod(0o777)
        path = shared / "d.sock"
        holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        holder.bind(str(path))
        holder.listen()
        path.chmod(0o700 if os.getuid() == 0 else 0o500)

        def run() -> str:
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                code = listen(f"ipc://{path}", None, 0.2, ["emotion", "status"], out=io.StringIO())
            return f"{code}\n{err.getvalue()}"

        said = _as_another_user(run)
        holder.close()
        assert said.startswith("1\n"), said
        assert (f"aerd listen: warning: --endpoint ipc://{path}: {path}: Permission denied"
                in said), said
        # the owner itself is told nothing
        if os.getuid() != 0:
            path.chmod(0o700)
        assert "warning" not in run()
    finally:
        shutil.rmtree(shared)
