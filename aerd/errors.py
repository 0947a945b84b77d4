"""The one exception type that reaches the user as a single line."""

import errno
import os


class AerdError(Exception):
    """A user-facing error: printed as one line naming the thing at fault; exit non-zero."""

    exit_code = 2


class ConfigError(AerdError):
    """A bad option or config field; the message names the field."""


class BusyError(ConfigError):
    """An endpoint another process holds, or an address or interface not there yet: it may
    pass by itself, so exit 75 (EX_TEMPFAIL), which the systemd unit restarts; every other
    error exits 2, which it does not (it would fail the same way every 5 s)."""

    exit_code = 75

    #: ZeroMQ bind errors (errno) that are BusyError rather than ConfigError
    ERRNOS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.ENODEV})

    @classmethod
    def or_config(cls, err: int | None, message: str) -> ConfigError:
        """The error for a failed bind or connect with errno ``err``: BusyError if it may
        pass, ConfigError otherwise."""
        return (cls if err in cls.ERRNOS else ConfigError)(message)


class ModelError(AerdError):
    """A missing, corrupt or mismatched model bundle."""


class AudioError(AerdError):
    """An unreadable, empty or too short audio input, or an unusable device."""


def lookup(path: "str | os.PathLike[str]", error: type[AerdError],
           name: str | None = None) -> os.stat_result | None:
    """``os.stat(path)``, or None if there is no such file. Any other failure (a directory on
    its way this user may not enter, as /home is under aerd.service's ``ProtectHome=``) is
    ``error`` naming ``name`` (default: the path): Python 3.11's ``Path.exists()`` raises
    PermissionError there, which was a traceback instead of a line."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise error(f"{name or path}: cannot reach it ({e.strerror or e})") from None
