"""Tests for aerd.relay: fan-in of several daemons, clean stop, CURVE, bind errors."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest
import zmq

from aerd.errors import ConfigError
from aerd.relay import Relay, RelayConfig
from aerd.security import CurveClient, CurveServer, apply_curve_client, keygen


def _event(device: str) -> list[bytes]:
    return [b"emotion", json.dumps({"device_id": device, "label": "neutral"}).encode()]


class RelayThread:
    """Run a started Relay in a background thread; join within a timeout on exit."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.relay.run()
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            self.error = exc

    def __enter__(self) -> RelayThread:
        self.relay.start()
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.relay.stop()
        self.thread.join(timeout=2.0)
        self.relay.close(timeout=1.0)
        assert not self.thread.is_alive()
        assert self.error is None


def _collect(pubs: dict[str, zmq.Socket], sub: zmq.Socket, timeout: float) -> set[str]:
    """Keep sending from every daemon stand-in until ``sub`` saw all devices or timeout."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and seen != set(pubs):
        for device, pub in pubs.items():
            if device not in seen:
                pub.send_multipart(_event(device))
        while sub.poll(50):
            topic, payload = sub.recv_multipart()
            assert topic == b"emotion"
            seen.add(json.loads(payload)["device_id"])
    return seen


def _socket(ctx: zmq.Context, kind: int) -> zmq.Socket:
    sock = ctx.socket(kind)
    sock.linger = 0
    return sock


def _passes_an_event(ctx: zmq.Context, front: str, back: str) -> bool:
    """A daemon stand-in on ``front`` reaches a subscriber on ``back`` (within 10 s)."""
    pub, sub = _socket(ctx, zmq.PUB), _socket(ctx, zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    pub.connect(front)
    sub.connect(back)
    return _collect({"d1": pub}, sub, timeout=10) == {"d1"}


def test_relay_fans_in_two_daemons_and_stops_fast(tmp_path: Path) -> None:
    front, back = f"ipc://{tmp_path}/front.sock", f"ipc://{tmp_path}/back.sock"
    relay = Relay(RelayConfig(front, back, None, None, insecure=False, hwm=100))
    ctx = zmq.Context()
    try:
        with RelayThread(relay) as rt:
            pubs = {dev: _socket(ctx, zmq.PUB) for dev in ("a", "b")}
            for pub in pubs.values():
                pub.connect(front)
            sub = _socket(ctx, zmq.SUB)
            sub.setsockopt(zmq.SUBSCRIBE, b"emotion")
            sub.connect(back)
            assert _collect(pubs, sub, timeout=5.0) == {"a", "b"}
            t0 = time.monotonic()
            relay.stop()
            rt.thread.join(timeout=1.0)
            assert not rt.thread.is_alive(), "run() did not return within 1 s of stop()"
            assert time.monotonic() - t0 < 1.0
            relay.stop()  # idempotent
        # libzmq leaves ipc:// socket files behind; the relay removes the ones it made
        assert not (tmp_path / "front.sock").exists() and not (tmp_path / "back.sock").exists()
    finally:
        ctx.destroy(linger=0)


def test_stop_before_run_makes_run_return(tmp_path: Path) -> None:
    relay = Relay(RelayConfig(f"ipc://{tmp_path}/f", f"ipc://{tmp_path}/b", None, None, False))
    relay.start()
    relay.stop()
    done = threading.Event()
    thread = threading.Thread(target=lambda: (relay.run(), done.set()), daemon=True)
    thread.start()
    assert done.wait(1.0)
    relay.close(timeout=1.0)


def test_run_without_start_is_an_error(tmp_path: Path) -> None:
    relay = Relay(RelayConfig(f"ipc://{tmp_path}/f", f"ipc://{tmp_path}/b", None, None, False))
    with pytest.raises(RuntimeError):
        relay.run()
    relay.close()


def test_relay_curve_backend_only_serves_authorized(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    relay_pub, relay_sec = keygen(keys, "relay")
    a_pub, a_sec = keygen(keys, "a")
    _, b_sec = keygen(keys, "b")
    authorized = tmp_path / "authorized"
    authorized.mkdir()
    shutil.copy(a_pub, authorized / "a.key")
    front, back = f"ipc://{tmp_path}/front.sock", f"ipc://{tmp_path}/back.sock"
    cfg = RelayConfig(front, back, None, CurveServer(relay_sec, authorized), insecure=False)
    ctx = zmq.Context()
    try:
        with RelayThread(Relay(cfg)):
            pub = _socket(ctx, zmq.PUB)
            pub.connect(front)
            subs = {}
            for name, secret in (("a", a_sec), ("b", b_sec)):
                subs[name] = _socket(ctx, zmq.SUB)
                apply_curve_client(subs[name], CurveClient(relay_pub, secret))
                subs[name].setsockopt(zmq.SUBSCRIBE, b"")
                subs[name].connect(back)
            assert _collect({"x": pub}, subs["a"], timeout=5.0) == {"x"}
            assert _collect({"x": pub}, subs["b"], timeout=1.5) == set()
    finally:
        ctx.destroy(linger=0)


def test_relay_curve_both_sides_keep_separate_keys(tmp_path: Path) -> None:
    """Daemon -> relay XSUB (CURVE server, daemon keys) and relay XPUB -> listener (listener keys)."""
    keys = tmp_path / "keys"
    relay_pub, relay_sec = keygen(keys, "relay")
    d_pub, d_sec = keygen(keys, "daemon")
    l_pub, l_sec = keygen(keys, "listener")
    daemons, listeners = tmp_path / "daemons", tmp_path / "listeners"
    for directory, key in ((daemons, d_pub), (listeners, l_pub)):
        directory.mkdir()
        shutil.copy(key, directory / key.name)
    front, back = f"ipc://{tmp_path}/front.sock", f"ipc://{tmp_path}/back.sock"
    cfg = RelayConfig(front, back, CurveServer(relay_sec, daemons), CurveServer(relay_sec, listeners),
                      insecure=False)
    ctx = zmq.Context()
    try:
        with RelayThread(Relay(cfg)):
            good, bad = _socket(ctx, zmq.PUB), _socket(ctx, zmq.PUB)
            apply_curve_client(good, CurveClient(relay_pub, d_sec))
            apply_curve_client(bad, CurveClient(relay_pub, l_sec))  # listener key is no daemon key
            good.connect(front)
            bad.connect(front)
            sub = _socket(ctx, zmq.SUB)
            apply_curve_client(sub, CurveClient(relay_pub, l_sec))
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(back)
            assert _collect({"good": good}, sub, timeout=5.0) == {"good"}
            assert _collect({"bad": bad}, sub, timeout=1.5) == set()
    finally:
        ctx.destroy(linger=0)


def test_relay_refuses_remote_endpoint_without_curve(tmp_path: Path) -> None:
    cfg = RelayConfig("tcp://0.0.0.0:5599", f"ipc://{tmp_path}/b", None, None, insecure=False)
    with pytest.raises(ConfigError, match="--frontend.*CURVE.*--frontend-secret/--frontend-clients"):
        Relay(cfg).start()
    cfg = RelayConfig(f"ipc://{tmp_path}/f", "tcp://0.0.0.0:5599", None, None, insecure=False)
    with pytest.raises(ConfigError, match="--backend.*CURVE.*--backend-secret/--backend-clients"):
        Relay(cfg).start()


def test_relay_bind_in_use_port_names_endpoint(tmp_path: Path) -> None:
    ctx = zmq.Context()
    try:
        holder = _socket(ctx, zmq.PUB)
        holder.bind("tcp://127.0.0.1:*")
        busy = holder.last_endpoint.decode()
        relay = Relay(RelayConfig(f"ipc://{tmp_path}/f", busy, None, None, insecure=False))
        with pytest.raises(ConfigError) as err:
            relay.start()
        assert busy in str(err.value) and "--backend" in str(err.value)
    finally:
        ctx.destroy(linger=0)


def test_relay_refuses_an_ipc_path_another_process_listens_on(tmp_path: Path) -> None:
    """libzmq would silently take the path over (the other process's subscribers would be
    cut off): refused, like the daemon's own endpoint."""
    ctx = zmq.Context()
    try:
        holder = _socket(ctx, zmq.PUB)
        busy = f"ipc://{tmp_path}/busy.sock"
        holder.bind(busy)
        relay = Relay(RelayConfig(f"ipc://{tmp_path}/f", busy, None, None, insecure=False))
        try:
            with pytest.raises(ConfigError, match="--backend .*already in use by another process"):
                relay.start()
        finally:
            relay.close()
        assert (tmp_path / "busy.sock").is_socket()     # still the holder's
        assert not (tmp_path / "f").exists()            # the frontend's file is tidied up
    finally:
        ctx.destroy(linger=0)


def test_relay_refuses_the_same_endpoint_on_both_sides(tmp_path: Path) -> None:
    for front, back in ((f"ipc://{tmp_path}/x", f"ipc://{tmp_path}/x"),
                        ("tcp://127.0.0.1:5599", "tcp://127.0.0.1:5599")):
        relay = Relay(RelayConfig(front, back, None, None, insecure=False))
        try:
            with pytest.raises(ConfigError, match="--backend .*the same endpoint as --frontend"):
                relay.start()
        finally:
            relay.close()
    assert not (tmp_path / "x").exists()


def test_both_sides_on_wildcard_ports_are_two_endpoints(tmp_path: Path) -> None:
    """`tcp://127.0.0.1:*` on both sides binds two ports (as ipc://* two paths): it was
    refused as "the same endpoint as --frontend" because the text is the same."""
    relay = Relay(RelayConfig("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", None, None))
    ctx = zmq.Context()
    try:
        with RelayThread(relay):
            front, back = relay.endpoints
            assert front != back
            assert _passes_an_event(ctx, front, back)
    finally:
        ctx.destroy(linger=0)


def test_relay_sides_on_one_port_are_a_config_error_not_busy(tmp_path: Path) -> None:
    """Both sides on one TCP port, written differently (the same-endpoint check compares the
    text): the backend's bind fails on the relay's own frontend. That is no endpoint "another
    process holds" that may pass (exit 75, restarted), but a config that fails every time."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for front, back in ((f"tcp://127.0.0.1:{port}", f"tcp://localhost:{port}"),
                        (f"tcp://*:{port}", f"tcp://127.0.0.1:{port}")):
        relay = Relay(RelayConfig(front, back, None, None, insecure=True))
        try:
            with pytest.raises(ConfigError, match="--backend .*the port of --frontend") as e:
                relay.start()
            assert e.value.exit_code == 2, (front, back)
        finally:
            relay.close()
    ctx = zmq.Context()   # a backend another process holds stays exit 75, tcp or ipc
    try:
        holder = _socket(ctx, zmq.PUB)
        holder.bind(f"tcp://127.0.0.1:{port}")
        held_ipc = f"ipc://{tmp_path}/held.sock"
        ipc_holder = _socket(ctx, zmq.PUB)
        ipc_holder.bind(held_ipc)
        for back in (f"tcp://127.0.0.1:{port}", held_ipc):
            relay = Relay(RelayConfig(f"ipc://{tmp_path}/f", back, None, None, insecure=True))
            try:
                with pytest.raises(ConfigError, match="in use") as e:
                    relay.start()
                assert e.value.exit_code == 75, back
            finally:
                relay.close()
    finally:
        ctx.destroy(linger=0)


def test_a_frontend_open_to_any_key_is_warned_about(tmp_path: Path, caplog) -> None:
    """CURVE on a reachable frontend without --frontend-clients lets any host with a key of
    its own publish events (any device_id) to every subscriber: said in the log."""
    _, secret = keygen(tmp_path / "keys", "relay")
    authorized = tmp_path / "authorized"
    authorized.mkdir()
    shutil.copy(keygen(tmp_path / "keys", "d")[0], authorized / "d.key")
    back = f"ipc://{tmp_path}/back.sock"
    for clients, warned in ((None, True), (authorized, False)):
        caplog.clear()
        relay = Relay(RelayConfig("tcp://0.0.0.0:*", back, CurveServer(secret, clients), None))
        relay.start()
        relay.close()
        said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert any("--frontend-clients" in m and "any" in m for m in said) == warned, said


@pytest.mark.parametrize("side", ["frontend", "backend"])
def test_the_relay_drops_a_peer_gone_silent(tmp_path: Path, side: str) -> None:
    """A daemon or a subscriber whose host lost power leaves a TCP connection that looks open
    for ever (and, for a subscriber, a queue of up to hwm messages): the relay's heartbeats
    find it silent and close it."""
    from e2e_helpers import free_tcp_port
    from tcp_blackhole import Blackhole

    port = free_tcp_port()
    ep = f"tcp://127.0.0.1:{port}"
    other = f"ipc://{tmp_path}/other.sock"
    cfg = (RelayConfig(ep, other, heartbeat_s=0.3) if side == "frontend"
           else RelayConfig(other, ep, heartbeat_s=0.3))
    relay = Relay(cfg)
    ctx = zmq.Context()
    try:
        with RelayThread(relay):
            hole = Blackhole(port)
            peer = _socket(ctx, zmq.PUB if side == "frontend" else zmq.SUB)   # no heartbeats
            if side == "backend":
                peer.setsockopt(zmq.SUBSCRIBE, b"")
            peer.connect(hole.endpoint)
            assert hole.wait_connected()
            time.sleep(0.3)   # the handshake is through
            t_cut = hole.cut()
            while not hole.upstream_closed and time.monotonic() < t_cut + 10:
                time.sleep(0.05)
            hole.close()
            assert hole.upstream_closed and hole.upstream_closed[0] - t_cut < 3
    finally:
        ctx.destroy(linger=0)


def test_the_relay_says_where_a_wildcard_endpoint_was_bound(tmp_path: Path) -> None:
    """`aerd relay --frontend tcp://127.0.0.1:* ...`: the log named the endpoints as given,
    so no daemon or subscriber could learn the ports the relay got; it names them as bound,
    and they are the ones that carry events."""
    import queue
    import signal

    from e2e_helpers import spawn

    relay = spawn("relay", "--frontend", "tcp://127.0.0.1:*", "--backend", "tcp://localhost:*")
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in relay.stdout], daemon=True).start()
    ctx = zmq.Context()
    try:
        line, deadline = "", time.monotonic() + 20
        while "relay: daemons ->" not in line and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                pass
        front, _, back = line.rstrip("\n").partition("daemons -> ")[2].partition(
            ", subscribers <- ")
        for ep in (front, back):
            assert ep.startswith("tcp://127.0.0.1:") and ep[16:].isdigit(), line
        assert _passes_an_event(ctx, front, back)
    finally:
        ctx.destroy(linger=0)
        relay.send_signal(signal.SIGTERM)
        relay.wait(timeout=10)
    assert relay.returncode == 0
