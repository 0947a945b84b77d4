"""The daemon loop: source -> pipeline -> publisher, with health, signals and sd_notify.

One thread does the work; the microphone's PortAudio thread only fills a ring buffer.
The loop never waits on a subscriber (PUB drops at its high-water mark, sends are
non-blocking) and wakes at least every ``tick_s`` to publish status and feed the
systemd watchdog — which it feeds only while audio is actually being processed.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import time
from dataclasses import dataclass
from typing import Any, Callable

from .decision import round3, round4
from .events import EmotionEvent, StatusEvent
from .notify import Notifier, WatchdogGate
from .pipeline import Pipeline, Result
from .publisher import Publisher

log = logging.getLogger(__name__)


def _freeze_startup_objects() -> None:
    """Collect once, then move every object alive now (modules, model, pipeline: some 26 000,
    all kept for the process's life) out of the cyclic collector's sight.
    Its full collections otherwise walk them all again and again (about 1 % of the daemon's
    CPU on a long stream with seed180: 0.503 vs 0.508 ms per audio second, 5 paired runs)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


@dataclass
class Counters:
    rate: int = 16000   # of the samples below (the model's; a reload keeps it)
    samples: int = 0    # audio samples processed
    events: int = 0
    # what earlier pipelines (before a SIGHUP reload) contributed
    stream_offset_s: float = 0.0
    windows: int = 0
    speech_windows: int = 0
    bad_windows: int = 0
    save_errors: int = 0   # failed saves of the adaptation state in a row

    @property
    def audio_s(self) -> float:
        """Seconds of audio processed: a count of samples, not a sum of block lengths in
        seconds, whose rounding drifted (10 ms blocks: 9 ms after 30 days, 2 s after a year)."""
        return self.samples / self.rate


class Daemon:
    """Wires one source, one pipeline and one publisher. ``run()`` returns the exit status."""

    def __init__(self, source: Any, pipeline: Pipeline, publisher: Publisher, device_id: str,
                 status_interval: float = 5.0, notifier: Notifier | None = None,
                 reload: Callable[[Pipeline], Pipeline | None] | None = None,
                 persist: Callable[[Pipeline], bool] | None = None, persist_interval: float = 300.0,
                 tick_s: float = 0.25):
        self.source = source
        self.pipeline = pipeline
        self.publisher = publisher
        self.device_id = device_id
        self.status_interval = status_interval
        self.notifier = notifier or Notifier.from_env({})
        self.gate = WatchdogGate(self.notifier)
        self._reload = reload
        self._persist = persist
        self.persist_interval = persist_interval
        self._next_persist = time.monotonic() + persist_interval
        self.tick_s = tick_s
        self.counters = Counters(rate=pipeline.model.card.features.sample_rate)
        self._seq = 0
        # one per process start, not per reload (seq goes on across a reload too): a
        # subscriber tells a restart by it, whatever seq the new run has reached
        self.run_id = os.urandom(8).hex()   # (the secrets module loads libcrypto: +4 MB RSS)
        self._stop = False
        self._hup = False
        self._ready = False
        self._t0 = time.monotonic()
        self._next_status = 0.0
        self._input_state = ""

    # -- signals ------------------------------------------------------------------------
    def install_signal_handlers(self, pending: list[int] | None = None) -> None:
        """Handle SIGTERM/SIGINT (stop) and SIGHUP (reload); ``pending``: signals that came
        before (during start-up), acted on as if they came now."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_signal)
        for signum in list(pending or []):
            self._on_signal(signum, None)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if signum == signal.SIGHUP:
            self._hup = True
        else:
            self._stop = True

    def request_stop(self) -> None:
        self._stop = True

    @property
    def stop_requested(self) -> bool:
        """True once SIGTERM/SIGINT arrived or :meth:`request_stop` was called."""
        return self._stop

    # -- events -------------------------------------------------------------------------
    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def status_event(self, state: str = "running") -> StatusEvent:
        p, src, c = self.pipeline, self.source, self.counters
        return StatusEvent(
            seq=self._next_seq(), ts=round(time.time(), 3), device_id=self.device_id,
            run=self.run_id, state=state, input=src.state, detail=src.detail,
            uptime=round(time.monotonic() - self._t0, 3),
            audio_s=round(self.counters.audio_s, 3), windows=c.windows + p.windows,
            speech_windows=c.speech_windows + p.speech_windows, events=c.events,
            overflows=src.overflows, dropped=self.publisher.dropped,
            bad_frames=src.bad_frames + c.bad_windows + p.bad_windows, model=p.model.id,
            save_errors=c.save_errors, status_interval_s=round3(self.status_interval))

    def _publish_status(self, state: str = "running") -> None:
        ev = self.status_event(state)
        self.publisher.send(ev)
        unsaved = f"; {ev.save_errors} failed state saves" if ev.save_errors else ""
        self.notifier.status(f"{state}; input {ev.input}; {ev.windows} windows, {ev.events} events, "
                             f"{ev.overflows} overflows{unsaved}")
        self._next_status = time.monotonic() + self.status_interval

    def _publish_results(self, results: list[Result]) -> None:
        off = self.counters.stream_offset_s
        for r in results:
            if r.decision is None:
                continue
            d = r.decision
            self.publisher.send(EmotionEvent(
                seq=self._next_seq(), ts=round3(time.time()), device_id=self.device_id,
                run=self.run_id, start=round3(off + r.window.start),
                end=round3(off + r.window.end), label=d.label,
                confidence=round4(d.confidence), probs=d.probs, model=self.pipeline.model.id,
                speech=round3(r.window.speech), adapted=r.adapted))
            self.counters.events += 1

    # -- loop ---------------------------------------------------------------------------
    def _save_state(self) -> None:
        """Save the adaptation state (if the daemon has a ``persist``); a failed save (full
        disk, read-only state directory) is counted for the status events, the loop goes on."""
        if self._persist is not None:
            saved = self._persist(self.pipeline)
            self.counters.save_errors = 0 if saved else self.counters.save_errors + 1

    def _input_gap(self, dropped_s: float = 0.0) -> None:
        """The microphone is lost (however long until it is back), or its ring dropped
        ``dropped_s`` of audio: a gap in the audio. The stream's tail is scored, then windows
        and decision start afresh. Stream time goes on from the audio before the gap, plus
        the audio dropped (a loss captured none), so that start/end keep to the microphone's
        clock across an overflow."""
        p = self.pipeline
        self._publish_results(p.flush())
        self.counters.stream_offset_s += p.stream_s + dropped_s
        p.restart_stream()

    def _do_reload(self) -> None:
        self._hup = False
        if self._ready:   # (before it, systemd still waits for the first READY=1: audio flowing)
            self.notifier.reloading()
        new = None
        if self._reload is not None:
            self._save_state()   # first: the new pipeline loads this state
            new = self._reload(self.pipeline)
            if new is not None:
                old, c = self.pipeline, self.counters
                # stream time and counters go on across the reload; a model with other
                # features or windows starts its windows afresh (audio of a window in
                # progress is not scored), otherwise the window stream carries on
                if new.extractor is not old.extractor:
                    c.stream_offset_s += old.stream_s
                c.windows += old.windows
                c.speech_windows += old.speech_windows
                c.bad_windows += old.bad_windows
                self.pipeline = new
                del old
                _freeze_startup_objects()   # the old model's objects may be collected now
                log.info("reloaded: model %s", new.model.id)
        if self._ready:
            self.notifier.ready()
        self._publish_status("reloaded" if new is not None else "reload_failed")

    def run(self) -> int:
        src = self.source
        self._input_state = src.state
        self._publish_status("starting")
        _freeze_startup_objects()
        try:
            self._loop(src)
        except Exception:   # a bug, not bad input: say so to systemd and subscribers, then die
            log.exception("internal error; stopping (the service manager restarts aerd)")
            self.notifier.stopping()
            self._publish_status("stopping")
            raise
        self.notifier.stopping()
        self._publish_status("stopping")
        self._save_state()
        log.info("stopped after %.1f s of audio, %d windows, %d events", self.counters.audio_s,
                 self.counters.windows + self.pipeline.windows, self.counters.events)
        return 0

    def _loop(self, src: Any) -> None:
        while not self._stop:
            if self._hup:
                self._do_reload()
            block = src.read(timeout=self.tick_s)
            if block is not None and len(block):
                if getattr(src, "gap_s", 0.0) > 0:   # the microphone's ring overflowed
                    self._input_gap(src.gap_s)
                self.counters.samples += len(block)
                self._publish_results(self.pipeline.push(block))
                self.gate.progress()
                if not self._ready:
                    self._ready = True
                    self.notifier.ready()
                    log.info("audio flowing from %s", src.name)
            elif src.state == "lost":
                # the loop is alive and the source retries the device itself: not a hang
                self.gate.progress()
                if not self._ready:   # up, and waiting for a microphone missing at start
                    self._ready = True
                    self.notifier.ready()
            if src.state != self._input_state:
                if src.state == "lost":
                    self._input_gap()
                if self._input_state:   # the microphone logs its own losses (rate-limited)
                    log.log(logging.INFO if src.ended else logging.DEBUG, "input %s: %s",
                            src.state, src.detail)
                self._input_state = src.state
                self._publish_status()
            if src.ended:
                self._publish_results(self.pipeline.flush())
                break
            now = time.monotonic()
            if now >= self._next_status:
                self._publish_status()
            if self._persist is not None and now >= self._next_persist:
                self._save_state()   # survive a power cut, not only a clean stop
                self._next_persist = now + self.persist_interval
            self.publisher.poll_subscriptions()
            self.gate.maybe_ping(now)
