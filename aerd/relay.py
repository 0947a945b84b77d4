"""A ZeroMQ XSUB/XPUB relay that fans events from many aerd daemons out to subscribers.

Daemons connect their PUB sockets to the relay's frontend (XSUB, bound);
listeners connect SUB sockets to the backend (XPUB, bound).  Subscriptions
flow upstream, so daemons only send topics someone wants.  Either side may be
a CURVE server (see :mod:`aerd.security`); non-local endpoints without CURVE
are refused unless ``insecure`` is set.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from dataclasses import dataclass

import zmq
from zmq.auth.thread import ThreadAuthenticator

from aerd.config import PublishSettings
from aerd.errors import BusyError, ConfigError
from aerd.ipcfiles import IpcFile, check_ipc_path, ipc_path
from aerd.publisher import set_heartbeat
from aerd.security import (CurveServer, apply_curve_server, check_endpoint, is_local_endpoint,
                           limit_message_size, use_ipv6_if_needed)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RelayConfig:
    """Relay endpoints, optional CURVE server settings per side, and high-water mark."""

    frontend: str
    backend: str
    frontend_curve: CurveServer | None = None
    backend_curve: CurveServer | None = None
    insecure: bool = False
    hwm: int = 10000
    heartbeat_s: float = PublishSettings.heartbeat_s
    """ZMTP pings to every peer (daemons and subscribers); a peer silent for three is dropped."""


def _tcp_port(endpoint: str) -> str | None:
    scheme, _, rest = endpoint.partition("://")
    return rest.rpartition(":")[2] if scheme.lower() == "tcp" else None


class Relay:
    """XSUB (frontend) -> XPUB (backend) proxy, stoppable from another thread.

    Typical use (``aerd relay``)::

        with Relay(cfg) as relay:      # start(): bind both sides
            proxy = threading.Thread(target=relay.run)   # blocks until stop()
            proxy.start()
            ...                        # wait for SIGTERM in the main thread
            relay.stop()

    Do not rely on a signal handler while ``run()`` blocks the main thread: a signal that
    lands while libzmq is between two polls is only seen after the next message, so the
    process can ignore SIGTERM indefinitely (seen in the fleet test).
    """

    def __init__(self, cfg: RelayConfig, ctx: zmq.Context | None = None) -> None:
        if cfg.hwm < 0:
            raise ConfigError(f"relay hwm {cfg.hwm} must be >= 0")
        self.cfg = cfg
        self._own_ctx = ctx is None
        self._ctx = zmq.Context() if ctx is None else ctx
        self._sockets: list[zmq.Socket] = []
        self._ipc_files: list[IpcFile] = []
        self._bound: list[str] = []   # the endpoints as bound, frontend first
        self._front: zmq.Socket | None = None
        self._back: zmq.Socket | None = None
        self._control: zmq.Socket | None = None  # proxy side, used only by run()
        self._stopper: zmq.Socket | None = None  # stop() side
        self._auths: list[ThreadAuthenticator] = []
        self._lock = threading.RLock()
        self._running = threading.Event()
        self._done = threading.Event()
        self._stopped = False

    def _bind(self, kind: int, endpoint: str, curve: CurveServer | None, option: str) -> zmq.Socket:
        """Create, configure and bind one side; ConfigError names the endpoint on failure."""
        sock = self._ctx.socket(kind)
        self._sockets.append(sock)
        sock.linger = 0
        sock.sndhwm = sock.rcvhwm = self.cfg.hwm
        limit_message_size(sock)
        set_heartbeat(sock, self.cfg.heartbeat_s)
        if curve is not None:
            auth = apply_curve_server(self._ctx, sock, curve)
            if auth is not None and auth not in self._auths:
                self._auths.append(auth)
        check_ipc_path(endpoint, option)
        use_ipv6_if_needed(sock, endpoint)
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            raise BusyError.or_config(exc.errno, f"{option} {endpoint!r}: cannot bind: "
                                      f"{exc.strerror}") from exc
        made = IpcFile.after_bind(endpoint)
        if made is not None:
            self._ipc_files.append(made)
        self._bound.append(sock.last_endpoint.decode())   # a wildcard port or path resolved
        log.info("relay %s bound on %s%s", option.lstrip("-"), self._bound[-1],
                 " (CURVE)" if curve is not None else "")
        return sock

    @property
    def endpoints(self) -> tuple[str, str]:
        """(frontend, backend) as bound: a wildcard (``tcp://host:*``, ``ipc://*``) resolved
        to the port or path it got (read at bind: run() owns the sockets afterwards)."""
        if len(self._bound) != 2:
            raise RuntimeError("relay not started (call start() first)")
        return self._bound[0], self._bound[1]

    def start(self) -> None:
        """Check and bind the frontend (XSUB) and backend (XPUB); ConfigError on failure."""
        cfg = self.cfg
        if self._sockets:
            raise RuntimeError("relay already started")
        try:
            check_endpoint(cfg.frontend, curve=cfg.frontend_curve is not None,
                           insecure=cfg.insecure, option="--frontend",
                           curve_hint="--frontend-secret/--frontend-clients")
            check_endpoint(cfg.backend, curve=cfg.backend_curve is not None,
                           insecure=cfg.insecure, option="--backend",
                           curve_hint="--backend-secret/--backend-clients")
            if (cfg.frontend_curve is not None and cfg.frontend_curve.authorized_dir is None
                    and not is_local_endpoint(cfg.frontend)):
                log.warning("--frontend %s: CURVE without --frontend-clients: any host with a "
                            "key of its own can publish events (any device_id) to every "
                            "subscriber; list the daemons' public keys there", cfg.frontend)
            front_file = ipc_path(cfg.frontend)
            wildcard = _tcp_port(cfg.frontend) in ("*", "0") or front_file == "*"
            if not wildcard and (cfg.frontend == cfg.backend or (
                    front_file is not None and front_file == ipc_path(cfg.backend))):
                raise ConfigError(f"--backend {cfg.backend!r}: the same endpoint as --frontend")
            self._front = self._bind(zmq.XSUB, cfg.frontend, cfg.frontend_curve, "--frontend")
            try:
                self._back = self._bind(zmq.XPUB, cfg.backend, cfg.backend_curve, "--backend")
            except BusyError as e:   # held by our own frontend: no exit 75, it never passes
                front = self._front.last_endpoint.decode()
                if _tcp_port(cfg.backend) is None or _tcp_port(cfg.backend) != _tcp_port(front):
                    raise
                raise ConfigError(f"{e}: the port of --frontend ({front})") from None
            addr = f"inproc://aerd-relay-control-{id(self)}"
            self._control = self._ctx.socket(zmq.PAIR)
            self._control.linger = 0
            self._control.bind(addr)
            self._stopper = self._ctx.socket(zmq.PAIR)
            self._stopper.linger = 0
            self._stopper.connect(addr)
        except BaseException:
            self.close()
            raise

    def run(self) -> None:
        """Forward messages until stop() is called; then close the proxy sockets."""
        if self._control is None:
            raise RuntimeError("relay not started (call start() first)")
        self._running.set()
        try:
            zmq.proxy_steerable(self._front, self._back, None, self._control)
        finally:
            self._close_sockets()
            self._done.set()
            log.info("relay stopped")

    def stop(self) -> None:
        """Ask run() to return; safe from another thread or a signal handler, idempotent."""
        with self._lock:
            if self._stopped or self._stopper is None:
                return
            self._stopped = True
            try:
                self._stopper.send(b"TERMINATE", zmq.NOBLOCK)
            except zmq.ZMQError as exc:
                log.warning("relay stop: could not signal the proxy: %s", exc)

    def close(self, timeout: float = 5.0) -> None:
        """Stop, wait up to ``timeout`` s for run() to finish, release sockets and authenticators.

        The ZAP authenticator is shared per context (see aerd.security), so it
        is stopped here even when the caller supplied ``ctx``.
        """
        self.stop()
        if self._running.is_set() and not self._done.wait(timeout):
            log.warning("relay: run() did not finish within %.1f s", timeout)
            return  # sockets still in use by run(); leave them alone
        self._close_sockets()
        with self._lock:
            if self._stopper is not None:
                self._stopper.close(linger=0)
                self._stopper = None
        for auth in self._auths:
            auth.stop()
        self._auths.clear()
        if self._own_ctx:
            self._ctx.term()

    def _close_sockets(self) -> None:
        """Close the frontend, backend and proxy-side control sockets; remove the socket
        files their ipc:// binds made."""
        for sock in [*self._sockets, self._control]:
            if sock is not None and not sock.closed:
                sock.close(linger=0)
        for made in self._ipc_files:
            made.remove()

    def __enter__(self) -> Relay:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def curve_side(side: str, secret: str | None, clients: str | None) -> CurveServer | None:
    """One side's CURVE server from ``aerd relay``'s ``--<side>-secret``/``-clients`` flags."""
    if clients and not secret:
        raise ConfigError(f"--{side}-clients needs --{side}-secret: the relay's own key "
                          f"pair for its {side}")
    return CurveServer(Path(secret), Path(clients) if clients else None) if secret else None


def serve(cfg: RelayConfig) -> int:
    """``aerd relay``: run the proxy until SIGTERM/SIGINT (0), or until it stops by itself
    (1, a failure for ``Restart=on-failure``)."""
    with Relay(cfg) as relay:
        # the proxy blocks in libzmq, so it runs in its own thread; the main thread only
        # waits for SIGTERM/SIGINT (a timed wait, so the handler always gets to run)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        proxy = threading.Thread(target=relay.run, name="aerd-relay-proxy", daemon=True)
        proxy.start()
        log.info("relay: daemons -> %s, subscribers <- %s", *relay.endpoints)
        while not stop.is_set() and proxy.is_alive():
            stop.wait(0.5)
        relay.stop()
        proxy.join(timeout=5)
    if not stop.is_set():
        log.error("relay: the proxy stopped unexpectedly")
        return 1
    return 0
