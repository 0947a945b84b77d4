"""`aerd listen`: a subscriber that prints events as JSON lines (or a live terminal view)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import zmq

from .config import PublishSettings
from .errors import ConfigError
from .events import EmotionEvent, EventError, from_frames, valid_text
from .ipcfiles import connect_problem
from .publisher import set_heartbeat
from .security import CurveClient, apply_curve_client, use_ipv6_if_needed


def _bar(p: float, width: int = 30) -> str:
    """``p`` as a bar of ``width``; a value outside 0..1 (from a rogue publisher) fills it or
    leaves it empty rather than making a line (or a MemoryError) of its size."""
    n = int(round(min(max(p, 0.0), 1.0) * width))
    return "#" * n + "." * (width - n)


def _shown(text: str) -> str:
    """A publisher's text made safe for a terminal line: control characters (newlines, escape
    sequences) and unpaired surrogates (which stdout cannot encode) escaped as in Python."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def render_pretty(ev: EmotionEvent) -> str:
    lines = [f"\x1b[H\x1b[2J{_shown(ev.device_id)}  {ev.start:8.1f}-{ev.end:.1f}s  "
             f"{_shown(ev.label.upper())}  {ev.confidence:.0%}"]
    for label, p in sorted(ev.probs.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {_shown(label):<10} {_bar(p)} {p:5.1%}")
    return "\n".join(lines)


class Seen(NamedTuple):
    missed: int = 0           # messages of this run lost just before this one
    restarted: bool = False   # this message is from a new run of a device heard from before
    previous: str = ""        # that device's run before it ("" if it sends none)


class SeqGaps:
    """Messages lost on the way, from gaps in ``seq``, which counts every message of one
    daemon run (both topics) from 1; a run is told by the events' ``run`` id, new at each
    start of the daemon, so a restart is no gap whatever ``seq`` the new run has reached
    (events without ``run``, from an older aerd: a ``seq`` not above the last is a restart).
    ZeroMQ drops a slow subscriber's messages without telling the publisher: only the
    subscriber can see them go.

    Bounded: past ``max_devices`` runs (and device names) the one heard from least recently
    is forgotten (a publisher inventing a name per message cannot grow the listener without
    limit; a forgotten run's next message counts as its first)."""

    MAX_DEVICES = 4096

    def __init__(self, max_devices: int = MAX_DEVICES) -> None:
        self._last: dict[tuple[str, str], int] = {}   # (device_id, run) -> last seq
        self._runs: dict[str, str] = {}               # device_id -> its latest run
        self._max = max_devices

    def _put(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        table[key] = value   # (popped first by the caller: the dict's order is recency)
        if len(table) > self._max:
            del table[next(iter(table))]

    def see(self, device_id: str, run: str, seq: int) -> Seen:
        """What this message of ``device_id``'s ``run`` says about the ones before it."""
        key = (device_id, run)
        last = self._last.pop(key, None)
        previous = self._runs.pop(device_id, None)
        self._put(self._runs, device_id, run)
        if last is None:   # the first message of this run seen
            self._put(self._last, key, seq)
            return Seen(restarted=previous is not None and previous != run,
                        previous=previous or "")
        if seq > last:
            self._put(self._last, key, seq)
            return Seen(missed=seq - last - 1)
        if not run:   # no run id: seq going back is the only sign of a restart
            self._put(self._last, key, seq)
            return Seen(restarted=True)
        self._put(self._last, key, last)   # a repeat within one run: nothing lost
        return Seen()


def _restart_line(device_id: str, seen: Seen, run: str, seq: int) -> str:
    if not run:
        return f"aerd listen: {_shown(device_id)}: the daemon restarted (seq went back to {seq})"
    before = f" after run {_shown(seen.previous[:32])}" if seen.previous else ""
    return (f"aerd listen: {_shown(device_id)}: the daemon restarted: run {_shown(run[:32])}"
            f"{before}; its first message seen is seq {seq}")


HEARTBEAT_S = PublishSettings.heartbeat_s


def listen(endpoint: str, count: int | None, timeout: float | None, topics: list[str],
           out: TextIO = sys.stdout, pretty: bool = False, curve: CurveClient | None = None,
           ctx: zmq.Context | None = None, heartbeat_s: float = HEARTBEAT_S) -> int:
    """Print events until ``count`` emotion events arrived (exit 0) or ``timeout`` passed (exit 1).
    Without ``count``, ``timeout`` is how long to listen: exit 0 if any emotion event came
    (any status event, when ``topics`` leave the emotion events out). A connection silent
    for three ``heartbeat_s`` is replaced (the device rebooted or dropped off the network)."""
    own = ctx is None
    ctx = ctx or zmq.Context()
    sock = ctx.socket(zmq.SUB)
    try:
        sock.rcvhwm = 10000
        sock.linger = 0
        set_heartbeat(sock, heartbeat_s)
        if curve is not None:
            apply_curve_client(sock, curve)
        for t in topics:
            sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        try:
            use_ipv6_if_needed(sock, endpoint)
            sock.connect(endpoint)
        except zmq.ZMQError as e:
            raise ConfigError(f"--endpoint {endpoint}: cannot connect ({e.strerror})") from None
        problem = connect_problem(endpoint)
        if problem:
            print(f"aerd listen: warning: --endpoint {endpoint}: {problem}; no event can come "
                  "until that changes", file=sys.stderr)
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = got = 0
        emotions = "emotion" in topics
        gaps = SeqGaps()   # restarts on any topic; gaps only with both (seq counts both)
        count_gaps = {"emotion", "status"} <= set(topics)
        while count is None or seen < count:
            wait = 1000 if deadline is None else int(max(0.0, deadline - time.monotonic()) * 1000)
            if deadline is not None and wait <= 0:
                if count is None and (seen if emotions else got):
                    return 0
                what = "emotion" if emotions else "status"
                print(f"aerd listen: timeout: {seen if emotions else got} of {count or 'any'} "
                      f"{what} events within {timeout:g} s", file=sys.stderr)
                return 1
            if not sock.poll(min(wait, 1000), zmq.POLLIN):
                continue
            frames = sock.recv_multipart()
            try:
                ev = from_frames(frames)
            except EventError as e:
                print(f"aerd listen: skipping a bad message: {e}", file=sys.stderr)
                continue
            gap = gaps.see(ev.device_id, ev.run, ev.seq)
            if gap.restarted:
                print(_restart_line(ev.device_id, gap, ev.run, ev.seq), file=sys.stderr)
            elif gap.missed and count_gaps:
                print(f"aerd listen: {_shown(ev.device_id)}: {gap.missed} message(s) missed "
                      f"before seq {ev.seq} (this subscriber fell behind, or reconnected)",
                      file=sys.stderr)
            got += 1
            if isinstance(ev, EmotionEvent):
                seen += 1
            if pretty and isinstance(ev, EmotionEvent):
                print(render_pretty(ev), file=out, flush=True)
            elif not pretty:
                # valid_text: another publisher's lone surrogates are no text for JSON readers
                line = valid_text({"topic": ev.topic.decode(), **ev.to_dict()})
                print(json.dumps(line), file=out, flush=True)
        return 0
    finally:
        sock.close()
        if own:
            ctx.term()


def curve_client_from_args(server_key: str | None, key: str | None) -> CurveClient | None:
    if not server_key and not key:
        return None
    if not (server_key and key):
        raise ConfigError("--server-key and --key must be given together for CURVE")
    return CurveClient(Path(server_key), Path(key))
