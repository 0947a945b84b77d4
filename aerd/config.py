"""Settings: frozen nested dataclasses, loaded from TOML and overridden by CLI flags.

Every field is documented here and in systemd/aerd.toml. Errors name the field
(``[section].key``) and the file it came from.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints

from .errors import ConfigError


@dataclass(frozen=True)
class InputSettings:
    source: str = "mic"
    """``mic``, a path to an audio file (wav/flac/ogg/mp3: anything libsndfile reads), or ``-`` for raw s16le PCM on stdin."""
    device: str = ""
    """Microphone: an index or a name substring; empty = the system default input."""
    rate: int = 16000
    """Sample rate of stdin PCM (Hz)."""
    channels: int = 1
    """Channels of stdin PCM (interleaved; downmixed to mono)."""
    fast: bool = False
    """Files: process as fast as possible instead of at real-time pace."""
    buffer_s: float = 10.0
    """Capacity of the capture ring buffer, seconds (at least two blocks); audio beyond it is
    dropped and counted."""
    block_s: float = 0.05
    """Size of the blocks audio is read in, seconds."""


@dataclass(frozen=True)
class ModelSettings:
    path: str = ""
    """Model card (.json) or .onnx path, or a shipped model name; empty = the shipped default."""


@dataclass(frozen=True)
class DecisionSettings:
    min_speech: float = 0.2
    """Fraction of a window's frames that must be speech for an emotion event (the adaptation
    learns from windows of at least ``aerd.adapt.MIN_SPEECH``, whatever this is)."""
    smoothing: int = 1
    """Average probabilities over this many recent speech windows. 1: each window on its own
    (its 3 s already span six hops). Averaging 3 cost 1.9 points of 8-class accuracy with
    adaptation off and 2.3 with it on, on held-out streams whose emotion changes with every
    utterance (`tools/evaluate.py`, the daemon's events); set 3 for steadier labels."""
    hysteresis: float = 0.1
    """A new label must beat the current one by this much (smoothed probability) to replace it."""
    reset_after: int = 4
    """Forget the smoothing after this many windows without speech."""


@dataclass(frozen=True)
class AdaptSettings:
    enabled: bool = True
    """Per-device running feature normalisation (daemon only; `aerd classify --adapt`)."""
    persist: bool = True
    """Save the running statistics in the state directory and load them at start."""


@dataclass(frozen=True)
class PublishSettings:
    endpoint: str = "tcp://127.0.0.1:5556"
    """ZeroMQ endpoint of the PUB socket."""
    connect: bool = False
    """Connect to ``endpoint`` (e.g. an `aerd relay` frontend) instead of binding it."""
    device_id: str = ""
    """Identifies this device in every event; empty = the host name."""
    sndhwm: int = 1000
    """Send high-water mark: messages queued per subscriber before new ones are dropped."""
    linger_ms: int = 500
    """How long unsent messages may delay shutdown."""
    status_interval: float = 5.0
    """Seconds between status events."""
    heartbeat_s: float = 10.0
    """Seconds between ZeroMQ heartbeats (ZMTP pings) to each peer; a peer that does not
    answer within three of them is disconnected: a subscriber whose host lost power no
    longer holds a queue of ``sndhwm`` messages for ever, and in connect mode the relay is
    reconnected. 0: off."""
    curve_secret: str = ""
    """CURVE secret key file of this socket (enables CURVE)."""
    curve_clients: str = ""
    """Directory of authorised client public keys (bind mode); empty = any key, still encrypted."""
    curve_server: str = ""
    """Public key file of the server to connect to (connect mode with CURVE)."""
    insecure: bool = False
    """Allow a non-loopback TCP endpoint without CURVE (not recommended)."""


@dataclass(frozen=True)
class ServiceSettings:
    state_dir: str = ""
    """Where adaptation state is kept; empty = $STATE_DIRECTORY or ~/.local/state/aerd."""
    log_level: str = "info"
    """debug, info, warning or error."""


@dataclass(frozen=True)
class Settings:
    input: InputSettings = field(default_factory=InputSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    decision: DecisionSettings = field(default_factory=DecisionSettings)
    adapt: AdaptSettings = field(default_factory=AdaptSettings)
    publish: PublishSettings = field(default_factory=PublishSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)


AUDIO_RATES = (1000, 384000)
"""Sample rates aerd takes anywhere, Hz: ``[input] rate``, an audio file's header (a header's
1 Hz made seconds of samples hours of audio), a model card's ``sample_rate``."""

LOG_LEVELS = ("debug", "info", "warning", "error")
"""The levels ``[service] log_level`` (and ``aerd relay --log-level``) accept."""

def in_process(endpoint: str) -> bool:
    """An inproc:// endpoint: ZeroMQ's transport within one process, which nothing outside
    this one could reach (refused for every endpoint aerd is given)."""
    return endpoint.strip().lower().startswith("inproc://")


_CHECKS: dict[str, tuple[Any, str]] = {
    "input.source": (lambda v: v.strip() != "", "must be mic, - (stdin) or an audio file path"),
    "input.rate": (lambda v: AUDIO_RATES[0] <= v <= AUDIO_RATES[1],
                   f"must be {AUDIO_RATES[0]}..{AUDIO_RATES[1]}"),
    "input.channels": (lambda v: 1 <= v <= 32, "must be 1..32"),
    "input.buffer_s": (lambda v: 0.5 <= v <= 600, "must be 0.5..600"),
    "input.block_s": (lambda v: 0.001 <= v <= 1.0, "must be 0.001..1.0"),
    "decision.min_speech": (lambda v: 0.0 <= v <= 1.0, "must be 0..1"),
    "decision.smoothing": (lambda v: 1 <= v <= 100, "must be 1..100"),
    "decision.hysteresis": (lambda v: 0.0 <= v < 1.0, "must be from 0 to below 1"),
    "decision.reset_after": (lambda v: 1 <= v <= 10000, "must be 1..10000"),
    "publish.sndhwm": (lambda v: 1 <= v <= 1_000_000, "must be 1..1000000"),
    "publish.linger_ms": (lambda v: 0 <= v <= 60000, "must be 0..60000"),
    "publish.status_interval": (lambda v: 0.1 <= v <= 3600, "must be 0.1..3600"),
    "publish.device_id": (lambda v: len(v) <= 200 and v.isprintable(),
                           "must be at most 200 printable characters"),
    "publish.heartbeat_s": (lambda v: v == 0 or 0.1 <= v <= 3600, "must be 0 (off) or 0.1..3600"),
    "publish.endpoint": (lambda v: "://" in v and not in_process(v),
                         "must look like tcp://HOST:PORT or ipc://PATH"),
    "service.log_level": (lambda v: v in LOG_LEVELS,
                          "must be debug, info, warning or error"),
}


_PATHS = frozenset({"input.source", "model.path", "publish.curve_secret", "publish.curve_clients",
                    "publish.curve_server", "service.state_dir"})
"""Settings that name a file or directory: a leading ``~`` is the home directory (TOML expands
none, nor does the shell in ``--state-dir=~/x``)."""


def _coerce(value: Any, kind: Any, name: str, origin: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:
                pass
    elif kind is str:
        if isinstance(value, str) and "\0" not in value:
            return value
    raise ConfigError(f"{origin}: {name} must be {kind.__name__}, got {type(value).__name__} {value!r:.60}")


def apply(settings: Settings, values: dict[str, Any], origin: str,
          names: dict[str, str] | None = None) -> Settings:
    """Return ``settings`` with dotted ``section.key`` values replaced, each checked. Errors
    name a value by ``names`` (e.g. its command-line flag) if given there, else as
    ``[section] key``."""
    sections: dict[str, dict[str, Any]] = {}
    for dotted, value in values.items():
        section, _, key = dotted.partition(".")
        sub = getattr(settings, section, None) if section in _SECTIONS else None
        if sub is None or key not in _FIELDS[section]:
            raise ConfigError(f"{origin}: unknown setting [{section}] {key}".rstrip())
        if dotted == "input.device" and type(value) is int and value >= 0:
            value = str(value)   # an index, as `aerd devices` lists it: device = 2
        name = (names or {}).get(dotted, f"[{section}] {key}")
        v = _coerce(value, _FIELDS[section][key], name, origin)
        if dotted in _PATHS:
            v = os.path.expanduser(v)
        check = _CHECKS.get(dotted)
        if check and not check[0](v):
            raise ConfigError(f"{origin}: {name} {check[1]}, got {v!r}")
        sections.setdefault(section, {})[key] = v
    return replace(settings, **{s: replace(getattr(settings, s), **kv) for s, kv in sections.items()})


_SECTIONS = [f.name for f in fields(Settings)]
_FIELDS = {s: get_type_hints(type(getattr(Settings(), s))) for s in _SECTIONS}


def load(path: str | Path | None, overrides: dict[str, Any] | None = None,
         flags: dict[str, str] | None = None, again: bool = False) -> Settings:
    """Defaults, then the TOML file (if any), then CLI overrides (dotted keys; ``flags``: the
    option each came from, for error messages). ``again`` (a reload): a pipe that gives nothing
    (``--config <(...)``, read to its end at start) is refused, not read as the defaults."""
    settings = Settings()
    if path:
        p = Path(path).expanduser()
        try:
            text = p.read_text(encoding="utf-8")
            if again and not text and not p.is_file():
                raise ConfigError(f"{p}: empty at this reload and not a regular file (a pipe, "
                                  "--config <(...), is read once); restart to change the settings")
            data = tomllib.loads(text)
        except FileNotFoundError:
            raise ConfigError(f"{p}: config file not found") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: cannot read config ({e})") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: not valid TOML ({e})") from None
        except (RecursionError, ValueError) as e:  # absurd nesting or integer literals
            raise ConfigError(f"{p}: not a usable config ({type(e).__name__}: {str(e)[:80]})") from None
        flat: dict[str, Any] = {}
        for section, table in data.items():
            if not isinstance(table, dict):
                raise ConfigError(f"{p}: {section} must be a [section] table")
            if section not in _SECTIONS:   # also an empty one: a misspelt heading
                raise ConfigError(f"{p}: unknown section [{section}] "
                                  f"(sections: {', '.join(_SECTIONS)})")
            flat.update({f"{section}.{k}": v for k, v in table.items()})
        settings = apply(settings, flat, str(p))
    settings = apply(settings, overrides or {}, "command line", flags)
    for k in ("input.rate", "input.channels"):   # (ignored: what did the user mean?)
        if k in (overrides or {}) and settings.input.source != "-":
            raise ConfigError(f"command line: {(flags or {}).get(k, k)} describes raw PCM on "
                              "stdin (--input -); a file's or microphone's own is used")
    if "input.device" in (overrides or {}) and settings.input.source != "mic":   # (ignored)
        where = ((flags or {}).get("input.source", "--input") if "input.source" in overrides
                 else f"[input] source in {path}")
        raise ConfigError(f"command line: {(flags or {}).get('input.device', '--device')} chooses "
                          f"a microphone, and the input is {settings.input.source!r} ({where}), "
                          "not mic")
    buffer_s, block_s = settings.input.buffer_s, settings.input.block_s
    if buffer_s < 2 * block_s:   # the ring would drop part of every block (or all of it)
        on_line = {"input.buffer_s", "input.block_s"} & set(overrides or {})
        name = {k: (flags or {}).get(k, f"[input] {k[6:]}") for k in ("input.buffer_s", "input.block_s")}
        raise ConfigError(f"{'command line' if on_line or not path else path}: "
                          f"{name['input.buffer_s']} ({buffer_s:g} s) must hold at least two "
                          f"blocks of {name['input.block_s']} ({block_s:g} s)")
    return settings
