"""The sd_notify protocol spoken directly (no systemd binding), plus a watchdog gate.

systemd passes ``NOTIFY_SOCKET`` (a path, or an abstract name if it starts with
``@``) and, with ``WatchdogSec=``, ``WATCHDOG_USEC``/``WATCHDOG_PID``.  Without
NOTIFY_SOCKET every call is a no-op; a failed send is logged and never raises.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

_FIELD = re.compile(r"[A-Z][A-Z0-9_]*\Z")


@dataclass(frozen=True)
class NotifyConfig:
    """What the environment told us: where to send, and the watchdog timeout."""

    address: str | None = None  # AF_UNIX address; abstract names start with "\0"
    watchdog_usec: int | None = None  # None: no watchdog for this process

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> NotifyConfig:
        """Read NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from *environ*."""
        raw = environ.get("NOTIFY_SOCKET", "")
        address = ("\0" + raw[1:] if raw.startswith("@") else raw) or None
        pid, raw_usec = environ.get("WATCHDOG_PID", "").strip(), environ.get("WATCHDOG_USEC", "")
        if not raw_usec.strip() or (pid and pid != str(os.getpid())):
            return cls(address=address)  # no watchdog, or it is meant for another process
        try:
            usec = int(raw_usec)
        except ValueError:
            log.warning("ignoring bad WATCHDOG_USEC=%r", raw_usec)
            return cls(address=address)
        return cls(address=address, watchdog_usec=usec if usec > 0 else None)


class Notifier:
    """Sends sd_notify datagrams over one lazily created, non-blocking socket."""

    def __init__(self, config: NotifyConfig) -> None:
        self.config = config
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        """A notifier configured from *environ* (default: the process environment)."""
        return cls(NotifyConfig.from_env(environ))

    @property
    def enabled(self) -> bool:
        """True when NOTIFY_SOCKET was given, i.e. sends go somewhere."""
        return self.config.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half of WATCHDOG_USEC), or None if off."""
        usec = self.config.watchdog_usec
        return usec / 2_000_000 if self.enabled and usec is not None else None

    def send(self, **fields: object) -> bool:
        """Send ``KEY=value`` lines in one datagram; True if the kernel took it.

        Keys must be upper-case sd_notify names (else ValueError); newlines in values
        become spaces so one field stays one line.  Never raises OSError.
        """
        if self.config.address is None or not fields:
            return False
        if bad := [key for key in fields if not _FIELD.match(key)]:
            raise ValueError(f"not an sd_notify field name: {bad[0]!r}")
        lines = (f"{k}={' '.join(str(v).splitlines()).strip()}" for k, v in fields.items())
        data = "\n".join(lines).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(data, self.config.address)
        except OSError as exc:
            level, self._warned = (logging.DEBUG if self._warned else logging.WARNING), True
            log.log(level, "sd_notify to %s failed: %s", self.config.address.replace("\0", "@"), exc)
            return False
        return True

    def ready(self) -> bool:
        """READY=1: startup (or a reload) is complete."""
        return self.send(READY=1)

    def status(self, text: str) -> bool:
        """STATUS=<text>, flattened to one line; shown by ``systemctl status``."""
        return self.send(STATUS=text)

    def watchdog(self) -> bool:
        """WATCHDOG=1 keep-alive; a no-op unless the watchdog applies to this process."""
        return self.watchdog_interval is not None and self.send(WATCHDOG=1)

    def stopping(self) -> bool:
        """STOPPING=1: shutdown has begun."""
        return self.send(STOPPING=1)

    def reloading(self) -> bool:
        """RELOADING=1 with MONOTONIC_USEC (systemd >= 253 wants it); call ready() after."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send(RELOADING=1, MONOTONIC_USEC=usec)

    def close(self) -> None:
        """Close the socket (it is recreated on the next send)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


class WatchdogGate:
    """Pings the watchdog only while the pipeline makes progress.

    The loop calls :meth:`progress` per block, and while a lost microphone is being retried
    (the daemon's own recovery, which a restart would not speed up); it calls :meth:`maybe_ping`
    often.  A ping goes out when *interval* (default: the notifier's) has passed since
    the last one AND progress was seen since, so a hung pipeline lets systemd's
    watchdog fire.  The first ping needs only progress."""

    def __init__(self, notifier: Notifier, interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.notifier = notifier
        self.interval = notifier.watchdog_interval if interval is None else interval
        self.clock = clock
        self._progressed = False
        self._last_ping: float | None = None

    def progress(self) -> None:
        """Record that a block went through the pipeline (cheap; any thread)."""
        self._progressed = True

    def maybe_ping(self, now: float | None = None) -> bool:
        """Send WATCHDOG=1 if due and progress was made; True if a ping was sent."""
        if self.interval is None or not self._progressed:
            return False
        now = self.clock() if now is None else now
        if self._last_ping is not None and now - self._last_ping < self.interval:
            return False
        self._progressed = False
        self._last_ping = now
        return self.notifier.watchdog()
