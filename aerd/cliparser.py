"""The `aerd` command line's arguments: every subcommand and flag, and which setting each
``aerd run`` flag overrides (parsing only; aerd/cli.py wires the commands)."""

from __future__ import annotations

import argparse
from typing import Any, Callable, NoReturn

from . import __version__, config

# CLI flag -> (dotted setting, argparse kwargs)
RUN_FLAGS: dict[str, tuple[str, dict[str, Any]]] = {
    "--input": ("input.source", dict(help="mic (default), an audio file, or - for s16le PCM on stdin")),
    "--device": ("input.device", dict(help="microphone index or name substring (see `aerd devices`)")),
    "--rate": ("input.rate", dict(type=int, help="sample rate of stdin PCM (default 16000)")),
    "--channels": ("input.channels", dict(type=int, help="channels of stdin PCM (default 1)")),
    "--fast": ("input.fast", dict(action="store_const", const=True, help="files: as fast as possible")),
    "--model": ("model.path", dict(help="model card (.json), .onnx, or shipped model name")),
    "--endpoint": ("publish.endpoint", dict(help="ZeroMQ endpoint to bind (default tcp://127.0.0.1:5556)")),
    "--device-id": ("publish.device_id", dict(help="device id in every event (default: host name)")),
    "--status-interval": ("publish.status_interval", dict(type=float, help="seconds between status events")),
    "--sndhwm": ("publish.sndhwm", dict(type=int, help="send high-water mark (messages)")),
    "--curve-secret": ("publish.curve_secret", dict(help="CURVE secret key file of this socket")),
    "--curve-clients": ("publish.curve_clients", dict(help="directory of authorised client public keys")),
    "--curve-server": ("publish.curve_server", dict(help="public key file of the relay to connect to")),
    "--insecure": ("publish.insecure", dict(action="store_const", const=True,
                                            help="allow a non-loopback endpoint without CURVE")),
    "--no-adapt": ("adapt.enabled", dict(action="store_const", const=False,
                                         help="no per-device feature adaptation")),
    "--state-dir": ("service.state_dir", dict(help="adaptation state directory (default $STATE_DIRECTORY, else "
                                            "~/.local/state/aerd)")),
    "--log-level": ("service.log_level", dict(help="debug, info, warning or error")),
}


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (the usage is for --help, not for every typo)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def number_type(cast: Callable[[str], float], ok: Callable[[float], bool],
            what: str) -> Callable[[str], float]:
    """An argparse ``type``: ``cast`` of the text, refused unless ``ok`` (NaN never is)."""

    def parse(text: str) -> float:
        try:
            v = cast(text)
        except ValueError:
            v = None
        if v is None or v != v or not ok(v):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v

    return parse


_fraction = number_type(float, lambda v: 0.0 <= v <= 1.0, "a number from 0 to 1")
WHOLE_FROM_1 = number_type(int, lambda v: v >= 1, "a whole number from 1 up")
POSITIVE_SECONDS = number_type(float, lambda v: 0.0 < v < float("inf"), "a positive number of seconds")
SECONDS_FROM_0 = number_type(float, lambda v: 0.0 <= v < float("inf"), "a number of seconds from 0 up")


def build_parser() -> argparse.ArgumentParser:
    """The `aerd` command line (its subcommands and flags); errors are one line."""
    p = _Parser(prog="aerd", description="Audio emotion recognition daemon.")
    p.add_argument("--version", action="version", version=f"aerd {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", help="TOML config file; flags override it")
    for flag, (_, kw) in RUN_FLAGS.items():
        run.add_argument(flag, default=None, **kw)
    run.add_argument("--connect", metavar="ENDPOINT", default=None,
                     help="connect the PUB socket to ENDPOINT (an `aerd relay` frontend) instead of binding")
    run.add_argument("--wait-subscriber", type=SECONDS_FROM_0, default=0.0, metavar="S",
                     help="before reading the input, wait up to S seconds for a subscriber")

    cl = sub.add_parser("classify", help="classify audio files, one JSON line each")
    cl.add_argument("files", nargs="+", metavar="FILE")
    cl.add_argument("--model", default=None, help="model card (.json), .onnx, or shipped model name")
    cl.add_argument("--adapt", action="store_true", help="adapt to the files' speaker(s) in order")
    cl.add_argument("--min-speech", type=_fraction, default=config.DecisionSettings.min_speech,
                    help="fraction of speech frames a window needs to count (0..1)")

    li = sub.add_parser("listen", help="print events as JSON lines")
    li.add_argument("--endpoint", default=config.PublishSettings.endpoint,
                    help=f"the daemon's or relay's endpoint (default {config.PublishSettings.endpoint})")
    li.add_argument("--count", type=WHOLE_FROM_1, default=None, help="exit 0 after N emotion events")
    li.add_argument("--timeout", type=POSITIVE_SECONDS, default=None, help="exit 1 if they did not arrive in S s")
    li.add_argument("--topic", action="append", choices=["emotion", "status"],
                    help="only these topics (default both)")
    li.add_argument("--pretty", action="store_true", help="live terminal view")
    li.add_argument("--server-key", help="CURVE: the daemon's (or relay's) public key file")
    li.add_argument("--key", help="CURVE: this subscriber's secret key file")

    sub.add_parser("devices", help="list input devices")

    kg = sub.add_parser("keygen", help="make a CURVE key pair")
    kg.add_argument("directory", help="where to write them (made, mode 700, if missing)")
    kg.add_argument("--name", default="aerd", help="NAME.key (public), NAME.key_secret (default aerd)")

    re = sub.add_parser("relay", help="XSUB/XPUB proxy for a fleet of daemons")
    re.add_argument("--frontend", required=True, help="endpoint daemons --connect to")
    re.add_argument("--backend", required=True, help="endpoint subscribers connect to")
    re.add_argument("--frontend-secret", help="CURVE secret key for the frontend")
    re.add_argument("--frontend-clients", help="authorised daemon public keys (directory)")
    re.add_argument("--backend-secret", help="CURVE secret key for the backend")
    re.add_argument("--backend-clients", help="authorised subscriber public keys (directory)")
    re.add_argument("--insecure", action="store_true",
                    help="allow an endpoint other hosts reach without CURVE")
    re.add_argument("--log-level", default="info", choices=config.LOG_LEVELS)
    return p
