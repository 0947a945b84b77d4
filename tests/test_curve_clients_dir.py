"""The authorised-keys directory of a CURVE server socket, read again at each connection:
a key file added counts from the next connection, a key file removed refuses the next one;
hidden files are not keys; the directory's path is taken literally. Real CURVE sockets and a
real ZAP authenticator over loopback TCP."""

from __future__ import annotations

import json
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import zmq

from aerd.security import CurveClient, CurveServer, apply_curve_client, apply_curve_server, keygen


def _received(pub: zmq.Socket, sub: zmq.Socket, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pub.send_multipart([b"emotion", json.dumps({"device_id": "d"}).encode()])
        if sub.poll(100):
            sub.recv_multipart()
            return True
    return False


@contextmanager
def _server(keys: dict, clients: Path):
    """A CURVE PUB server on loopback TCP, ``clients`` its authorised-keys directory; yields
    (pub, sub), sub(name) connecting a CURVE subscriber with that name's key pair."""
    ctx = zmq.Context()
    auth = None
    try:
        pub = ctx.socket(zmq.PUB)
        pub.linger = 0
        auth = apply_curve_server(ctx, pub, CurveServer(keys["server"][1], clients))
        pub.bind("tcp://127.0.0.1:*")
        endpoint = pub.last_endpoint.decode()

        def sub(name: str) -> zmq.Socket:
            s = ctx.socket(zmq.SUB)
            s.linger = 0
            apply_curve_client(s, CurveClient(keys["server"][0], keys[name][1]))
            s.setsockopt(zmq.SUBSCRIBE, b"")
            s.connect(endpoint)
            return s

        yield pub, sub
    finally:
        if auth is not None:
            auth.stop()
        ctx.destroy(linger=0)


def test_keys_added_or_removed_count_from_the_next_connection(tmp_path: Path) -> None:
    keys = {n: keygen(tmp_path / "keys", n) for n in ("server", "a", "b")}
    clients = tmp_path / "clients [fleet]"   # (pyzmq's loader took "[...]" as a glob class)
    clients.mkdir()
    shutil.copy(keys["a"][0], clients / "a.key")
    shutil.copy(keys["b"][0], clients / ".b.key")   # hidden: an editor's or rsync's temporary
    with _server(keys, clients) as (pub, sub):
        first_a = sub("a")
        assert _received(pub, first_a, 5.0), "the listed key was refused"
        assert not _received(pub, sub("b"), 1.0), "a hidden file's key was accepted"
        shutil.copy(keys["b"][0], clients / "b.key")          # added while running
        assert _received(pub, sub("b"), 5.0), "a key added while running was refused"
        (clients / "a.key").unlink()                          # removed while running
        assert not _received(pub, sub("a"), 1.0), "a key removed while running was accepted"
        assert _received(pub, first_a, 5.0), "a connection made before the removal was cut"


def test_a_malformed_key_file_added_while_running_refuses_no_one_else(tmp_path: Path) -> None:
    """A key file whose ``public-key`` line has no ``=`` made pyzmq's loader raise IndexError
    in the ZAP thread: the thread died and no client was authenticated again."""
    keys = {n: keygen(tmp_path / "keys", n) for n in ("server", "a", "b")}
    clients = tmp_path / "clients"
    clients.mkdir()
    shutil.copy(keys["a"][0], clients / "a.key")
    with _server(keys, clients) as (pub, sub):
        (clients / "broken.key").write_text("metadata\ncurve\n    public-key\n")
        assert _received(pub, sub("a"), 5.0), "a malformed key file locked out a listed key"
        shutil.copy(keys["b"][0], clients / "b.key")
        assert _received(pub, sub("b"), 5.0), "a key added after a malformed one was refused"


def test_a_malformed_key_file_at_start_is_a_config_error(tmp_path: Path) -> None:
    import pytest

    from aerd.errors import ConfigError

    server = keygen(tmp_path / "keys", "server")
    clients = tmp_path / "clients"
    clients.mkdir()
    (clients / "broken.key").write_text("public-key\n")
    ctx = zmq.Context()
    try:
        pub = ctx.socket(zmq.PUB)
        pub.linger = 0
        with pytest.raises(ConfigError, match="broken.key"):
            apply_curve_server(ctx, pub, CurveServer(server[1], clients))
    finally:
        ctx.destroy(linger=0)
