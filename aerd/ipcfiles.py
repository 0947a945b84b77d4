"""The files behind ``ipc://`` endpoints (Unix-domain sockets).

libzmq replaces whatever file lies at an ipc:// path when it binds, steals the path from a
process already listening there, and leaves the socket file behind when the socket closes.
These checks run before a bind, and :class:`IpcFile` tidies up after one.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
from dataclasses import dataclass

from .errors import BusyError, ConfigError

log = logging.getLogger(__name__)


def ipc_path(endpoint: str) -> str | None:
    """The file-system path of an ``ipc://`` endpoint (None: another transport, or an
    abstract ``ipc://@name`` socket, which has no file)."""
    if not endpoint.startswith("ipc://"):
        return None
    path = endpoint[len("ipc://"):]
    return path if path and not path.startswith("@") else None


def _existing(endpoint: str) -> tuple[str, bool, int | None] | None:
    """The file at an ``ipc://`` endpoint's path: ``(path, is a socket, connect outcome)``
    (:func:`_probe`'s, for a socket; None if it is not one), or None if there is none."""
    path = ipc_path(endpoint)
    if path is None or not os.path.lexists(path):
        return None
    if not stat.S_ISSOCK(os.lstat(path).st_mode):
        return path, False, None
    return path, True, _probe(path)


def check_ipc_path(endpoint: str, option: str) -> None:
    """Before binding ``endpoint``: an ipc:// path that exists must be a socket (binding
    would replace a regular file) that no other process listens on (libzmq would take the
    path over from it). ConfigError naming ``option`` otherwise; a socket file this user may
    not connect to (another user's, in use or not) is left alone too."""
    found = _existing(endpoint)
    if found is not None:
        path, is_socket, err = found
        if not is_socket:
            raise ConfigError(f"{option} {endpoint}: {path} exists and is not a socket "
                              "(binding would replace it)")
        if err is None:
            raise BusyError(f"{option} {endpoint}: already in use by another process")
        if err not in _STALE:
            raise ConfigError(f"{option} {endpoint}: {path} exists and this user cannot tell "
                              f"whether a process listens on it ({os.strerror(err)}); "
                              "not replacing it: remove it or choose another path")


def connect_problem(endpoint: str) -> str | None:
    """Why a subscriber can never connect to ``endpoint`` as things stand, or None: an
    ipc:// path that is not a socket, or a socket file this user may not connect to
    (another user's, mode 0700). libzmq retries such a connect in silence for ever."""
    found = _existing(endpoint)
    if found is None:
        return None   # (not there yet: a daemon that starts later makes it)
    path, is_socket, err = found
    if not is_socket:
        return f"{path} is not a socket"
    if err in (errno.EACCES, errno.EPERM):
        return f"{path}: {os.strerror(err)} (the daemon's user, or its umask, keeps others out)"
    return None


@dataclass(frozen=True)
class IpcFile:
    """The socket file an ``ipc://`` bind made. libzmq leaves it behind when the socket
    closes; :meth:`remove` deletes it then, but only while it is still that same file."""

    path: str
    dev: int
    ino: int

    @classmethod
    def after_bind(cls, endpoint: str) -> IpcFile | None:
        """Call right after a successful bind; None for other transports."""
        path = ipc_path(endpoint)
        if path is None:
            return None
        try:
            st = os.lstat(path)
        except OSError:
            return None
        return cls(path, st.st_dev, st.st_ino)

    def remove(self) -> None:
        """Delete the file if it is still this bind's socket (another process may have
        replaced it since); idempotent."""
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == (self.dev, self.ino) and stat.S_ISSOCK(st.st_mode):
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("could not remove the socket file %s: %s", self.path, e.strerror)


_STALE = frozenset({errno.ECONNREFUSED, errno.ENOENT})
"""Connect errors that show nobody listens on a socket file (so a bind may replace it).
Any other (EACCES: another user's socket) says nothing about it: libzmq would still unlink a
live process's socket and take its path, if the directory lets this user."""


def _probe(path: str) -> int | None:
    """Connect to the socket file ``path``: None if a process listens there, else the errno
    (a timeout, a full backlog: counted as listening)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(path)
        return None
    except (TimeoutError, BlockingIOError):
        return None
    except OSError as e:
        return e.errno if e.errno is not None else errno.EIO
    finally:
        probe.close()
