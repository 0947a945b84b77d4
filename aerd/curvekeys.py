"""The authorised-keys directory of a CURVE server socket (``--curve-clients``,
``--frontend-clients``, ``--backend-clients``): every ``*.key`` public-key file in it.

The directory is read again at each connection's ZAP check, so a key file added counts from
the next connection on and a key file removed refuses the next one (connections already
made stay). Hidden files (``.name.key``, editors' and copy tools' temporaries) are not keys,
and the directory's path is taken literally (pyzmq's own loader globs it: a ``[`` in the
path hid every key). A key file that is invalid at start is a config error; one that turns
up while running is skipped with one warning.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import zmq.auth
from zmq.utils import z85

log = logging.getLogger(__name__)


def valid_key(key: bytes | None) -> bool:
    """True if ``key`` is a z85-encoded 32-byte CURVE key."""
    try:
        return key is not None and len(key) == 40 and len(z85.decode(key)) == 32
    except (ValueError, KeyError, TypeError):
        return False


def load_key_file(path: Path) -> tuple[bytes, bytes | None]:
    """(public, secret or None) of a zmq.auth key file, with every malformed file a
    ValueError: pyzmq's parser raises IndexError for a ``public-key`` or ``secret-key`` line
    without ``=``."""
    try:
        return zmq.auth.load_certificate(path)
    except IndexError:
        raise ValueError(f"a key line without '=' in {path}") from None


def key_files(directory: Path) -> list[Path]:
    """The ``*.key`` files of ``directory`` that are not hidden, sorted (OSError if unreadable)."""
    with os.scandir(directory) as entries:
        return sorted(Path(e.path) for e in entries
                      if e.name.endswith(".key") and not e.name.startswith(".")
                      and e.is_file())


class AuthorizedKeys:
    """The keys of one directory, read at each :meth:`allows`."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._reported: set[tuple[Path, int]] = set()   # bad files warned about (path, mtime)

    def read(self) -> set[bytes]:
        try:
            files = key_files(self.directory)
        except OSError as e:
            self._warn_once(self.directory, f"cannot list the authorised keys ({e}); "
                                            "refusing clients until it can")
            return set()
        keys = set()
        for f in files:
            try:
                public, _ = load_key_file(f)
            except (OSError, ValueError) as e:
                self._warn_once(f, f"not a usable public key ({e}); skipped")
                continue
            if valid_key(public):
                keys.add(public)
            else:
                self._warn_once(f, "holds no valid public-key; skipped")
        return keys

    def allows(self, client_key: bytes) -> bool:
        """Is the client's public key (32 raw bytes, as ZAP gives it) in the directory now?"""
        try:
            return z85.encode(client_key) in self.read()
        except Exception:   # noqa: BLE001 -- raised in the ZAP thread it would end it: refuse
            log.exception("%s: checking a client key failed; refused", self.directory)
            return False

    def _warn_once(self, path: Path, what: str) -> None:
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            stamp = -1
        if (path, stamp) not in self._reported:
            if len(self._reported) > 1000:
                self._reported.clear()
            self._reported.add((path, stamp))
            log.warning("%s: %s", path, what)
