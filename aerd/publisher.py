"""The ZeroMQ PUB socket: bind (default) or connect, CURVE when configured, never blocking.

A PUB socket drops messages for a subscriber whose queue holds ``sndhwm`` messages; sends
are non-blocking as well, so a slow or stuck subscriber can never stall the pipeline.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

import zmq

from .config import PublishSettings
from .errors import BusyError, ConfigError
from .events import Event
from .ipcfiles import IpcFile, check_ipc_path
from .security import (CurveClient, CurveServer, apply_curve_client, apply_curve_server,
                       check_endpoint, limit_message_size, use_ipv6_if_needed)

log = logging.getLogger(__name__)


def _check_curve_options(s: PublishSettings) -> None:
    """CURVE flags that only make sense together: refuse the others (not silently plain text,
    nor a server where a client was meant)."""
    if s.curve_clients and not s.curve_secret:
        raise ConfigError("--curve-clients ([publish] curve_clients) needs --curve-secret: "
                          "the socket's own key pair")
    if s.curve_server and not s.connect:
        raise ConfigError("--curve-server ([publish] curve_server) is the relay's key, for "
                          "--connect only")
    if s.curve_server and not s.curve_secret:
        raise ConfigError("--curve-server ([publish] curve_server) needs --curve-secret: "
                          "the daemon's own key pair")
    if s.connect and s.curve_secret and not s.curve_server:
        raise ConfigError("--connect with --curve-secret needs --curve-server: the relay's "
                          "public key")


def set_heartbeat(sock: zmq.Socket, seconds: float) -> None:
    """ZMTP heartbeats on ``sock``: a ping to each peer every ``seconds``; a peer silent for
    three intervals is disconnected (and reconnected, on a connecting socket). Without them a
    connection whose far end vanished (power cut, a NAT that forgot it) looks open for ever.
    0: off."""
    if seconds > 0:
        ms = max(1, round(seconds * 1000))
        sock.heartbeat_ivl = ms
        sock.heartbeat_timeout = 3 * ms
        # (no ZMQ_HEARTBEAT_TTL: with it set, libzmq 4.3.5 never timed out a silent peer)


class Publisher:
    """Owns one PUB socket. ``send(event)`` never blocks; drops are counted in ``dropped``."""

    def __init__(self, settings: PublishSettings, ctx: zmq.Context | None = None):
        s = settings
        curve = bool(s.curve_secret)
        option = "--connect" if s.connect else "--endpoint"
        _check_curve_options(s)
        check_endpoint(s.endpoint, curve=curve, insecure=s.insecure, option=option,
                       curve_hint=("--curve-secret and --curve-server" if s.connect
                                   else "--curve-secret/--curve-clients"))
        self.endpoint = s.endpoint
        self._own_ctx = ctx is None
        self.ctx = ctx or zmq.Context()
        self.dropped = 0
        self.sent = 0
        self._auth = None
        self.subscribers = 0
        self._ipc_file: IpcFile | None = None
        # XPUB = PUB that also reports subscriptions, so `wait_for_subscriber` can work.
        self.sock = self.ctx.socket(zmq.XPUB)
        try:
            self.sock.sndhwm = s.sndhwm
            self.sock.linger = s.linger_ms
            self.sock.rcvhwm = 1000
            set_heartbeat(self.sock, s.heartbeat_s)
            if curve:
                if s.connect and s.curve_server:
                    apply_curve_client(self.sock, CurveClient(Path(s.curve_server), Path(s.curve_secret)))
                else:
                    self._auth = apply_curve_server(self.ctx, self.sock, CurveServer(
                        Path(s.curve_secret), Path(s.curve_clients) if s.curve_clients else None))
            use_ipv6_if_needed(self.sock, s.endpoint)
            if s.connect:
                self.sock.connect(s.endpoint)
            else:
                check_ipc_path(s.endpoint, option)
                limit_message_size(self.sock)
                self.sock.bind(s.endpoint)
                self._ipc_file = IpcFile.after_bind(s.endpoint)
        except zmq.ZMQError as e:
            self.close()
            verb = "connect to" if s.connect else "bind"
            raise BusyError.or_config(e.errno, f"{option} {s.endpoint}: cannot {verb} it "
                                      f"({e.strerror})") from None
        except ConfigError:
            self.close()
            raise
        where = s.endpoint if s.connect else self.sock.last_endpoint.decode()   # tcp://...:* -> port
        log.info("publishing on %s (%s%s)", where, "connect" if s.connect else "bind",
                 ", CURVE" if curve else "")

    def send(self, event: Event) -> bool:
        try:
            self.sock.send_multipart(event.to_frames(), flags=zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            return False
        self.sent += 1
        return True

    MAX_DRAIN = 1000
    """Subscription messages read per call: a subscriber flooding the socket cannot hold the
    daemon's loop (and the audio) in here; the rest waits for the next call."""

    def poll_subscriptions(self) -> int:
        """Drain subscription messages (at most MAX_DRAIN); returns the subscription count."""
        for _ in range(self.MAX_DRAIN):
            try:
                msg = self.sock.recv(flags=zmq.NOBLOCK)
            except zmq.Again:
                break
            if msg[:1] == b"\x01":
                self.subscribers += 1
            elif msg[:1] == b"\x00":
                self.subscribers = max(0, self.subscribers - 1)
        return self.subscribers

    def wait_for_subscriber(self, timeout: float,
                            stop: Callable[[], bool] = lambda: False) -> bool:
        """Block up to ``timeout`` s until someone subscribes (files: so no event is missed),
        looking at ``stop`` (e.g. a SIGTERM seen) every 0.2 s."""
        deadline = time.monotonic() + timeout
        while not self.poll_subscriptions() and not stop():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.poll(int(min(left, 0.2) * 1000) + 1, zmq.POLLIN)
        return self.subscribers > 0

    def close(self) -> None:
        if not self.sock.closed:
            self.sock.close()
        if self._ipc_file is not None:
            self._ipc_file.remove()
            self._ipc_file = None
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._own_ctx:
            self.ctx.term()
