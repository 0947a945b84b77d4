"""The files behind ``ipc://`` endpoints (Unix-domain sockets).

libzmq replaces whatever file lies at an ipc:// path when it binds, steals the path from a
process already listening there, and leaves the socket file behind when the socket closes.
These checks run before a bind, and :class:`IpcFile` tidies up after one.
"""

from __future__ import annotations

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


def check_ipc_path(endpoint: str, option: str) -> None:
    """Before binding ``endpoint``: an ipc:// path that exists must be a socket (binding
    would replace a regular file) that no other process listens on (libzmq would take the
    path over from it). ConfigError naming ``option`` otherwise."""
    path = ipc_path(endpoint)
    if path is not None and os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ConfigError(f"{option} {endpoint}: {path} exists and is not a socket "
                              "(binding would replace it)")
        if _in_use(path):
            raise BusyError(f"{option} {endpoint}: already in use by another process")


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


def _in_use(path: str) -> bool:
    """True if another process is listening on the socket file ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()
