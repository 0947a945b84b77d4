"""Typed events and their ZeroMQ wire form: multipart ``[topic, utf-8 JSON]``.

Schema version ``v`` is 1. Fields are documented in README.md ("Event protocol"); a
reader must ignore fields it does not know, so new optional fields do not bump ``v``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from .featurespec import is_number
from .security import MAX_MESSAGE_BYTES

SCHEMA_VERSION = 1
_ENCODER = json.JSONEncoder(separators=(",", ":"))
"""One compact encoder (json.dumps with arguments builds a new encoder per call)."""


class EventError(ValueError):
    """A frame sequence that is not a valid aerd event."""


@dataclass(frozen=True)
class Event:
    topic: ClassVar[bytes] = b""
    seq: int
    ts: float
    device_id: str
    run: str = ""
    """Random id of the daemon process that sent it (16 hex digits, new at each start, kept
    across a reload): ``seq`` is unique per (device_id, run). "" from an aerd before it."""

    def to_dict(self) -> dict[str, Any]:
        # shallow on purpose: dataclasses.asdict deep-copies (probs) and costs ~0.1 ms an event;
        # the instance dict holds exactly the fields, in field order (set by __init__)
        return {"v": SCHEMA_VERSION, **self.__dict__}

    def to_frames(self) -> list[bytes]:
        text = _ENCODER.encode(self.to_dict())
        if "\\ud" in text:   # a surrogate: a pair (emoji), or a lone one (see valid_text)
            text = _ENCODER.encode(valid_text(self.to_dict()))
        return [self.topic, text.encode()]

    @classmethod
    def from_frames(cls, frames: list[bytes]) -> "Event":
        """Parse a received multipart message; on a subclass, it must be of that type."""
        ev = from_frames(frames)
        if not isinstance(ev, cls):
            raise EventError(f"expected a {cls.topic.decode()} event, got {ev.topic.decode()}")
        return ev

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Event":
        v = data.get("v")
        if not _CHECKS["int"](v) or v != SCHEMA_VERSION:   # not true or 1.0, which == 1
            raise EventError(f"unsupported schema version {v!r:.60}")
        names = {f.name for f in fields(cls)}
        missing = sorted(n for n in names if n not in data and _required(cls, n))
        if missing:
            raise EventError(f"{cls.topic.decode()} event lacks field {missing[0]!r}")
        kept = {k: v for k, v in data.items() if k in names}
        for f in fields(cls):
            if f.name in kept and not _CHECKS[f.type](kept[f.name]):
                raise EventError(f"{cls.topic.decode()} event field {f.name!r} is not "
                                 f"of type {f.type}: {kept[f.name]!r:.60}")
        return cls(**kept)


_CHECKS = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": is_number,
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "dict[str, float]": lambda v: isinstance(v, dict) and all(
        isinstance(k, str) and is_number(x) for k, x in v.items()),
}
"""Type checks by annotation (the annotations are strings here): a subscriber gets typed
events or an EventError, never a field of the wrong type."""


def valid_text(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings made U+FFFD. A file name's bytes
    that are not UTF-8 (os.fsdecode) became ``\\udcff`` in the JSON: no Unicode text, which
    strict readers (Rust's serde_json, for one) refuse, losing the whole event."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, dict):
        return {valid_text(k): valid_text(v) for k, v in value.items()}
    return value


def _required(cls: type, name: str) -> bool:
    from dataclasses import MISSING

    f = next(f for f in fields(cls) if f.name == name)
    return f.default is MISSING and f.default_factory is MISSING


@dataclass(frozen=True)
class EmotionEvent(Event):
    """One decision per window hop while speech lasts."""

    topic: ClassVar[bytes] = b"emotion"
    start: float = 0.0
    end: float = 0.0
    label: str = ""
    confidence: float = 0.0
    probs: dict[str, float] = field(default_factory=dict)
    model: str = ""
    speech: float = 0.0
    adapted: bool = False


@dataclass(frozen=True)
class StatusEvent(Event):
    """Health, every ``status_interval`` seconds and whenever the input state changes."""

    topic: ClassVar[bytes] = b"status"
    state: str = "running"
    input: str = "ok"
    detail: str = ""
    uptime: float = 0.0
    audio_s: float = 0.0
    windows: int = 0
    speech_windows: int = 0
    events: int = 0
    overflows: int = 0
    dropped: int = 0
    bad_frames: int = 0
    model: str = ""
    save_errors: int = 0
    status_interval_s: float = 0.0
    """The daemon's ``status_interval``: the longest it goes without a status event (0: an
    aerd before this field, which did not say)."""


TOPICS: dict[bytes, type[Event]] = {EmotionEvent.topic: EmotionEvent, StatusEvent.topic: StatusEvent}


def _as_bytes(frame: Any) -> bytes:
    """A frame's bytes: ``bytes``, or any buffer (``recv_multipart(copy=False)`` gives
    zmq.Frame objects, which had raised TypeError here); anything else is an EventError."""
    if isinstance(frame, bytes):
        return frame
    try:
        return memoryview(frame).tobytes()
    except TypeError:
        raise EventError(f"a frame of type {type(frame).__name__}, not bytes") from None


def from_frames(frames: list[bytes]) -> Event:
    """Parse a received multipart message into its typed event; EventError if it is none."""
    try:
        frames = [_as_bytes(f) for f in frames]
    except TypeError:   # not a sequence at all
        raise EventError(f"expected a list of 2 frames, got {type(frames).__name__}") from None
    if len(frames) != 2:
        raise EventError(f"expected 2 frames, got {len(frames)}")
    cls = TOPICS.get(frames[0])
    if cls is None:
        raise EventError(f"unknown topic {frames[0][:32]!r}")
    if len(frames[1]) > MAX_MESSAGE_BYTES:   # (events are a few KB at most; a relay cuts these off)
        raise EventError(f"payload of {len(frames[1])} bytes, over {MAX_MESSAGE_BYTES}")
    try:
        # decoded here: json.loads(bytes) also takes UTF-16/32 and a BOM, which the protocol
        # (UTF-8 JSON) does not allow and readers in other languages refuse
        data = json.loads(frames[1].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EventError(f"bad JSON payload ({e})") from None
    except RecursionError:
        raise EventError("bad JSON payload (nested too deep)") from None
    except ValueError as e:   # e.g. an integer of more digits than Python converts
        raise EventError(f"bad JSON payload ({e})") from None
    if not isinstance(data, dict):
        raise EventError("payload is not a JSON object")
    return cls.from_dict(data)

