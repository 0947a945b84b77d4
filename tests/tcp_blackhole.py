"""A loopback TCP forwarder whose existing connections can be made silent: ``cut()`` drops
their bytes in both directions without closing anything, as a peer that lost power or a NAT
that forgot the flow looks from either end. New connections are forwarded normally."""

from __future__ import annotations

import select
import socket
import threading
import time


class Blackhole:
    def __init__(self, target_port: int) -> None:
        self._listen = socket.socket()
        self._listen.bind(("127.0.0.1", 0))
        self._listen.listen(8)
        self.port = self._listen.getsockname()[1]
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self._target = target_port
        self._cut: set[int] = set()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self.upstream_closed: list[float] = []   # monotonic times the target closed a connection
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self._listen.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listen.accept()
            except OSError:   # (the timeout, or closed)
                continue
            try:
                pair = (client, socket.create_connection(("127.0.0.1", self._target)))
            except OSError:   # the target is not listening (yet): the client retries
                client.close()
                continue
            self._pairs.append(pair)
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _pump(self, pair: tuple[socket.socket, socket.socket]) -> None:
        client, upstream = pair
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([client, upstream], [], [], 0.2)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        if s is upstream:
                            self.upstream_closed.append(time.monotonic())
                        return
                    if id(pair) not in self._cut:
                        (upstream if s is client else client).sendall(data)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()

    def wait_connected(self, timeout: float = 5.0) -> bool:
        """Wait until a connection is being forwarded."""
        deadline = time.monotonic() + timeout
        while not self._pairs and time.monotonic() < deadline:
            time.sleep(0.05)
        return bool(self._pairs)

    def cut(self) -> float:
        """Silence every connection open now; returns the monotonic time of the cut."""
        for pair in self._pairs:
            self._cut.add(id(pair))
        return time.monotonic()

    def close(self) -> None:
        self._stop.set()
        self._listen.close()
