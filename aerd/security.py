"""Transport security for aerd's ZeroMQ sockets: endpoint checks and CURVE.

Endpoints reachable from other hosts (anything but ipc://, inproc:// or a
loopback tcp:// address) are refused unless CURVE is on or --insecure is
given.  Key files use the zmq.auth certificate format: ``name.key`` is the
public key, ``name.key_secret`` holds both keys.  The functions are
role-agnostic: whichever socket binds (daemon PUB, relay XPUB or XSUB) is
usually the CURVE server.  Each CURVE server socket gets its own ZAP domain,
so a relay's frontend and backend on one context keep separate key sets (each an
authorised-keys directory, aerd.curvekeys, read at each connection).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import stat
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zmq
import zmq.auth

if TYPE_CHECKING:  # zmq.auth.thread pulls in asyncio (~6 MB RSS): imported only for CURVE
    from zmq.auth.thread import ThreadAuthenticator

from aerd.curvekeys import AuthorizedKeys, key_files, load_key_file, valid_key
from aerd.errors import ConfigError, lookup

log = logging.getLogger(__name__)

_LOCAL_SCHEMES = frozenset({"ipc", "inproc"})
_HOST_SCHEMES = frozenset({"tcp", "udp", "ws", "wss"})
_REMOTE_SCHEMES = frozenset({"pgm", "epgm", "norm", "tipc", "vmci"})
_ALLOW_ANY_DOMAIN = "aerd:allow-any"
_ZAP_ENFORCE_DOMAIN = getattr(zmq, "ZAP_ENFORCE_DOMAIN", 93)
MAX_MESSAGE_BYTES = 65536
"""Largest frame a bound socket accepts (events are a few KB at most). Without a limit libzmq
allocates whatever size a peer announces, even before CURVE authentication."""


def limit_message_size(sock: zmq.Socket) -> None:
    """Cut off a peer that sends a frame over MAX_MESSAGE_BYTES. For bound sockets only: a
    connecting socket would drop the link for good (libzmq does not reconnect then)."""
    sock.maxmsgsize = MAX_MESSAGE_BYTES


def _split_host(endpoint: str, scheme: str, rest: str) -> str:
    """Return the (remote) host part of a tcp/udp/ws address, or raise ConfigError."""
    rest = rest.split("/", 1)[0] if scheme in ("ws", "wss") else rest
    rest = rest.rsplit(";", 1)[-1]  # "source;destination": the destination matters
    if rest.startswith("["):
        host, sep, port = rest[1:].partition("]")
        sep, port = (sep and port[:1] == ":"), port[1:]
    else:
        host, sep, port = rest.rpartition(":")
    if not sep or not host or not (port.isdigit() or port in ("*", "!")):
        raise ConfigError(f"malformed endpoint {endpoint!r}: expected host:port")
    if port.isdigit() and not 0 < int(port) < 65536:
        raise ConfigError(f"malformed endpoint {endpoint!r}: port {port} is not 1..65535")
    return host


def use_ipv6_if_needed(sock: zmq.Socket, endpoint: str) -> None:
    """ZeroMQ sockets are IPv4-only unless told: turn IPv6 on for a ``tcp://[addr]:port``."""
    if "://[" in endpoint or ";[" in endpoint:
        sock.ipv6 = True


def is_local_endpoint(endpoint: str) -> bool:
    """True if ``endpoint`` cannot be reached from another host.

    ipc:// and inproc:// are local; tcp:// (also udp/ws/wss) is local when the
    host is a loopback address (127.0.0.0/8, ::1, [::1], localhost).  Wildcards
    (``*``), interface names and other host names count as not local.
    Raises ConfigError for a malformed endpoint.
    """
    scheme, sep, rest = endpoint.strip().partition("://")
    scheme = scheme.lower()
    if not sep or not rest:
        raise ConfigError(f"malformed endpoint {endpoint!r}: expected transport://address")
    if scheme in _LOCAL_SCHEMES:
        return True
    if scheme in _REMOTE_SCHEMES:
        return False
    if scheme not in _HOST_SCHEMES:
        raise ConfigError(f"malformed endpoint {endpoint!r}: unknown transport {scheme!r}")
    host = _split_host(endpoint, scheme, rest)
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return False  # wildcard, interface name or DNS name: assume reachable
    mapped = getattr(addr, "ipv4_mapped", None)
    return bool(addr.is_loopback or (mapped is not None and mapped.is_loopback))


def check_endpoint(endpoint: str, *, curve: bool, insecure: bool, option: str = "--endpoint",
                   curve_hint: str = "--curve-secret/--curve-clients") -> None:
    """Refuse a non-local ``endpoint`` without CURVE unless ``insecure`` is set.

    Raises ConfigError naming ``option`` and the endpoint; with ``insecure``
    a loud warning is logged and the endpoint is allowed.
    """
    try:
        local = is_local_endpoint(endpoint)
    except ConfigError as e:
        raise ConfigError(f"{option}: {e}") from None
    if curve or local:
        return
    if insecure:
        log.warning("INSECURE: %s %s is reachable from other hosts and CURVE is off; "
                    "events travel unencrypted and unauthenticated", option, endpoint)
        return
    raise ConfigError(
        f"{option} {endpoint!r} is reachable from other hosts but CURVE is not configured: "
        f"configure CURVE ({curve_hint}) or pass --insecure"
    )


@dataclass(frozen=True)
class CurveServer:
    """CURVE server side: own secret key file, optional dir of authorized client public keys."""

    secret_key_file: Path
    authorized_dir: Path | None = None


@dataclass(frozen=True)
class CurveClient:
    """CURVE client side: the server's public key file and the client's own secret key file."""

    server_public_file: Path
    secret_key_file: Path


def _load_cert(path: Path, *, need_secret: bool) -> tuple[bytes, bytes | None]:
    """Load a zmq.auth certificate, raising ConfigError naming ``path``."""
    st = lookup(path, ConfigError, f"CURVE key file {str(path)!r}")
    if st is None or not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"CURVE key file {str(path)!r} does not exist or is not a file")
    try:
        public, secret = load_key_file(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"CURVE key file {str(path)!r} is unreadable or invalid: {exc}") from exc
    if not valid_key(public):
        raise ConfigError(f"CURVE key file {str(path)!r} holds no valid public-key")
    if need_secret and not valid_key(secret):
        raise ConfigError(
            f"CURVE key file {str(path)!r} holds no valid secret-key (use the .key_secret file)"
        )
    mode = Path(path).stat().st_mode & 0o777
    if need_secret and mode & 0o077 and not _systemd_credential(path):
        log.warning("CURVE secret key %s can be read by other users (mode %o): chmod 600 it",
                    path, mode)
    return public, secret


def _systemd_credential(path: Path) -> bool:
    """A file systemd handed over (LoadCredential=): it is 0400 with an ACL entry for the
    service's user, whose mask stat shows as group bits (mode 440), and read-only."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    return bool(creds) and Path(path).resolve().parent == Path(creds).resolve()


def _authenticator_class() -> type:
    """ThreadAuthenticator that also accepts any client key in aerd's allow-any ZAP domain."""
    from zmq.auth.thread import ThreadAuthenticator

    class _AerdAuthenticator(ThreadAuthenticator):
        aerd_keys: dict[str, AuthorizedKeys]   # ZAP domain -> its directory, read per check

        async def _authenticate_curve(self, domain: str, client_key: bytes) -> tuple[bool, bytes]:
            if domain == _ALLOW_ANY_DOMAIN:
                return True, b"OK"
            keys = self.aerd_keys.get(domain)
            if keys is not None:
                return (True, b"OK") if keys.allows(client_key) else (False, b"Unknown key")
            return await super()._authenticate_curve(domain, client_key)

    return _AerdAuthenticator


_auth_lock = threading.Lock()
_authenticators: dict[int, Any] = {}


def _authenticator_for(ctx: zmq.Context) -> Any:
    """Return the running authenticator of ``ctx``, starting one if needed."""
    with _auth_lock:
        for key, old in list(_authenticators.items()):
            if not old.is_alive():  # stopped by its owner: forget it (and its context)
                del _authenticators[key]
        auth = _authenticators.get(id(ctx))
        if auth is None or auth.context is not ctx:
            auth = _authenticator_class()(ctx, log=logging.getLogger(__name__ + ".zap"))
            auth.aerd_keys = {}
            auth.start()
            _authenticators[id(ctx)] = auth
        return auth


def apply_curve_server(ctx: zmq.Context, socket: zmq.Socket,
                       server: CurveServer) -> ThreadAuthenticator | None:
    """Make ``socket`` a CURVE server; call before bind/connect.

    With ``server.authorized_dir`` only clients whose public key (``*.key``)
    is in that directory are accepted, via a ZAP authenticator thread shared
    by all sockets of ``ctx`` (returned; the caller stops it once every socket
    using it is closed).  Without it any client key is accepted but traffic is
    still encrypted, and None is returned.  Errors raise ConfigError.
    """
    public, secret = _load_cert(server.secret_key_file, need_secret=True)
    auth: ThreadAuthenticator | None = None  # None: any key is accepted
    if server.authorized_dir is not None:
        directory = Path(server.authorized_dir)
        st = lookup(directory, ConfigError, f"CURVE authorized-keys directory {str(directory)!r}")
        if st is None or not stat.S_ISDIR(st.st_mode):
            why = "does not exist" if st is None else "is not a directory"
            raise ConfigError(f"CURVE authorized-keys directory {str(directory)!r} {why}")
        try:
            files = key_files(directory)
        except OSError as exc:
            raise ConfigError(f"CURVE authorized-keys directory {str(directory)!r}: {exc}") from exc
        for key_file in files:
            _load_cert(key_file, need_secret=False)
        if not files:
            raise ConfigError(f"CURVE authorized-keys directory {str(directory)!r} "
                              "holds no *.key public keys")
        domain = f"aerd:{directory.resolve()}"
        auth = _authenticator_for(ctx)
        auth.aerd_keys[domain] = AuthorizedKeys(directory)   # read again at each connection
        try:  # fail closed (refuse clients) if the ZAP thread is gone
            socket.setsockopt(_ZAP_ENFORCE_DOMAIN, 1)
        except zmq.ZMQError as exc:
            log.debug("ZAP_ENFORCE_DOMAIN unsupported by this libzmq: %s", exc)
        log.info("CURVE: accepting %d client key(s) from %s (read again at each connection)",
                 len(files), directory)
    else:
        domain = _ALLOW_ANY_DOMAIN
    socket.zap_domain = domain.encode()
    socket.curve_secretkey, socket.curve_publickey, socket.curve_server = secret, public, True
    return auth


def apply_curve_client(socket: zmq.Socket, client: CurveClient) -> None:
    """Make ``socket`` a CURVE client of the server whose public key is given; call before connect."""
    server_public, _ = _load_cert(client.server_public_file, need_secret=False)
    public, secret = _load_cert(client.secret_key_file, need_secret=True)
    socket.curve_serverkey, socket.curve_publickey, socket.curve_secretkey = (
        server_public, public, secret)


def keygen(directory: Path, name: str) -> tuple[Path, Path]:
    """Create ``directory/name.key`` (public, 0644) and ``name.key_secret`` (0600).

    The directory is created with mode 0700 if missing.  An existing key pair
    is never overwritten (ConfigError).  Returns (public_file, secret_file).
    """
    if not name or name.startswith(".") or "/" in name or os.sep in name:
        raise ConfigError(f"key name {name!r} must be a plain file name")
    directory = Path(directory)
    public_file, secret_file = directory / f"{name}.key", directory / f"{name}.key_secret"
    for path in (public_file, secret_file):
        if lookup(path, ConfigError, f"key file {str(path)!r}") is not None:
            raise ConfigError(f"key file {str(path)!r} already exists; refusing to overwrite")
    # private 0700 temp dir: the secret is never world-readable; os.link never overwrites
    linked: list[Path] = []
    tmp: Path | None = None
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".aerd-keygen-", dir=directory))
        tmp_public, tmp_secret = (Path(p) for p in zmq.auth.create_certificates(tmp, name))
        tmp_secret.chmod(0o600)
        tmp_public.chmod(0o644)
        for src, dst in ((tmp_secret, secret_file), (tmp_public, public_file)):
            os.link(src, dst)
            linked.append(dst)
    except OSError as exc:
        for path in linked:
            path.unlink(missing_ok=True)
        raise ConfigError(f"cannot write key pair {str(secret_file)!r}: {exc}") from exc
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("wrote CURVE key pair %s and %s", public_file, secret_file)
    return public_file, secret_file
