"""Microphone capture with sounddevice (PortAudio), imported only when a microphone is used.

The PortAudio callback only copies the block into a bounded :class:`RingBuffer` and
counts overflows. The consumer watches the stream: if it stops (``stream.active`` turns
False, as it does when the sound server or device goes away) or its callbacks stall for
``stall_s``, the input is marked lost and reopened with capped exponential backoff.

Retries: 0.5 s, doubling to ``max_backoff_s`` (8 s); after ``long_trouble_s`` (5 min) of
trouble, every ``long_backoff_s`` (60 s). A device that opens but never delivers counts as
trouble too: the backoff is only reset after ``healthy_s`` (30 s) of audio. A reopen
re-initialises PortAudio to find new devices, and PortAudio/ALSA leak about 12 KB per
re-initialisation (measured): at one a minute, 17 MB a day, 0.5 GB in a month without a
microphone. After ``long_trouble_s`` a retry re-initialises only when the sound devices or
the sound server's socket changed (:func:`aerd.devices.sound_fingerprint`), or once every
``rescan_s`` (1 h: a change it cannot see, such as a remote sound server); the others only
try to open the devices PortAudio knows.
After the first few losses of a trouble spell, the open/lost lines go to the debug log.

Opening and closing streams run on a worker thread (:mod:`aerd.capture`): a sound server
that stops answering blocks them for minutes, and the daemon must go on publishing status and
obey SIGTERM meanwhile. At start the open is waited for ``open_timeout_s`` (10 s).

Audio dropped when the ring was full (the consumer fell behind) is reported in ``gap_s``:
the seconds missing right before the block ``read`` just returned. The daemon starts its
windows afresh after it at the stream time it ends, so that events' ``start``/``end`` keep
to the microphone's clock and no window splices audio across the gap.

With ``wait``, a microphone that cannot be opened at start is a loss like any other (input
``lost``, retried on the same schedule) instead of an AudioError: under a supervisor that
restarts the daemon, exiting only starts it again and again every few seconds.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np

from .capture import Capture, Worker, close_stream, open_capture
from .devices import sound_fingerprint
from .errors import AudioError
from .sources import Resampler, warn_narrowband
from .trouble import Spell

log = logging.getLogger(__name__)


class MicSource:
    """Reads the microphone; ``read(timeout)`` like the other sources, never ends by itself."""

    LOUD_LOSSES = 3
    """Losses per trouble spell logged as warnings; later ones are debug lines."""

    def __init__(self, device: str, rate: int, buffer_s: float = 10.0, block_s: float = 0.05,
                 stall_s: float = 1.0, max_backoff_s: float = 8.0, healthy_s: float = 30.0,
                 long_trouble_s: float = 300.0, long_backoff_s: float = 60.0, wait: bool = False,
                 option: str = "--device", open_timeout_s: float = 10.0,
                 stop: Callable[[], bool] | None = None, rescan_s: float = 3600.0,
                 opener: Callable[..., Capture] = open_capture):
        self.option = option   # where device came from, for errors: "--device", "FILE: [input] device"
        self.wait = wait
        self.name = "mic"
        self.device_spec = device
        self.rate = rate
        self.block_s = block_s
        self.stall_s = stall_s
        self.max_backoff_s = max_backoff_s
        self.healthy_s = healthy_s
        self.long_trouble_s = long_trouble_s
        self.long_backoff_s = long_backoff_s
        self.rescan_s = rescan_s
        self._opener = opener   # capture.open_capture's signature: opens and starts a stream
        self._rescanned: tuple[float, tuple] = (0.0, ())   # when, and what sound_fingerprint saw
        self._spell = Spell(log, "microphone keeps failing; retrying quietly (status events go "
                            "on)", "microphone healthy again after %d losses", self.LOUD_LOSSES,
                            healthy_s)
        self.buffer_s = buffer_s
        self._cap: Capture | None = None   # the open stream (None while lost or opening)
        self._worker = Worker()
        self._old_overflows = 0   # from streams that were lost
        self.ended = False
        self.state, self.detail = "starting", ""
        self.bad_frames = 0
        self.losses = 0
        self._resample: Resampler | None = None
        self._retry_at = 0.0
        self._backoff = 0.5
        self._warned: tuple[str, int] | None = None   # the device the rate warning was for
        self._pinned: str | None = None   # the name of the device an index named at first
        self.gap_s = 0.0   # audio missing right before the block read() returned, seconds
        self._gap_next = 0.0   # ... before the next block (dropped after the last one)
        self._start_open(first=True)
        deadline = time.monotonic() + open_timeout_s
        while not self._poll(0.1, first=True):   # (a stop meanwhile: the daemon acts on it)
            if stop is not None and stop():
                self.detail = "opening: stopped before PortAudio answered"
                return
            if time.monotonic() < deadline:
                continue
            msg = f"PortAudio did not answer within {open_timeout_s:g} s: a hung sound server?"
            if not wait:
                self.close()
                raise AudioError(f"no usable microphone ({msg})")
            self._lost(f"no usable microphone ({msg})")
            break

    @property
    def overflows(self) -> int:
        return self._old_overflows + (self._cap.overflows if self._cap is not None else 0)

    def _start_open(self, first: bool) -> None:
        self._worker.start("opening" if first else "reopening", self._opener, self.device_spec,
                           self._pinned, self.option, self.rate, self.buffer_s, self.block_s,
                           not first and self._rescan_now())

    def _rescan_now(self) -> bool:
        """Whether this reopen re-initialises PortAudio (see the module's doc): always in the
        first ``long_trouble_s`` of trouble, later only after a change or ``rescan_s``."""
        now, seen = time.monotonic(), sound_fingerprint()
        long = self._spell.since is not None and now - self._spell.since > self.long_trouble_s
        if long and seen == self._rescanned[1] and now - self._rescanned[0] < self.rescan_s:
            return False
        self._rescanned = (now, seen)
        return True

    def _poll(self, timeout: float, first: bool = False) -> bool:
        """Wait up to ``timeout`` for the worker's call and act on its outcome; False if it
        still runs (the status detail then says for how long)."""
        out = self._worker.wait(timeout)
        if out is None:
            if self._worker.busy:
                stuck = time.monotonic() - self._worker.since
                if stuck > 2 * self.stall_s and self.state == "lost":
                    self.detail = f"{self._worker.what}: no answer from PortAudio for {stuck:.0f} s"
                return False
            return True
        ok, value = out
        if ok and isinstance(value, Capture):
            self._opened(value)
        elif not ok and self._worker.what != "closing the stream":
            if first and not self.wait:
                raise AudioError(value if value.startswith("no usable microphone") else
                                 f"no usable microphone ({value}); choose one with --device "
                                 "(see `aerd devices`) or use --input FILE or --input -")
            if first:   # wait for it: a loss from the start
                self._lost(f"no usable microphone ({value})")
            else:
                self._schedule_retry()
            self.detail = f"{'open' if first else 'reopen'} failed: {value}"
        return True

    def _opened(self, cap: Capture) -> None:
        self._cap = cap
        self._resample = Resampler(cap.rate, self.rate)
        if (cap.name, cap.rate) != self._warned:   # once per device, not per reopen
            self._warned = (cap.name, cap.rate)
            warn_narrowband(f"microphone {cap.name}", cap.rate, self.rate)
        cap.last_cb = time.monotonic()
        if self.device_spec.isdigit():
            self._pinned = cap.name
        self.state = "ok"
        self.detail = f"{cap.name} @ {cap.rate} Hz" + (
            f", {cap.channels} channels averaged" if cap.channels > 1 else "")
        self._spell.recovered("microphone open: %s", self.detail)

    def _schedule_retry(self) -> None:
        now = time.monotonic()
        if self._spell.since is not None and now - self._spell.since > self.long_trouble_s:
            self._backoff = self.long_backoff_s
        self._retry_at = now + self._backoff
        self._backoff = min(self._backoff * 2, max(self.max_backoff_s, self._backoff))

    def _lost(self, why: str) -> None:
        self.losses += 1
        self.state, self.detail = "lost", why
        self._spell.trouble("microphone lost: %s; retrying", why)
        cap, self._cap = self._cap, None
        if cap is not None:   # (none when it could not be opened at start)
            self._old_overflows += cap.overflows
            self._worker.start("closing the stream", close_stream, cap)
        self._schedule_retry()

    def read(self, timeout: float = 1.0) -> np.ndarray | None:
        if self._worker.busy and not self._poll(timeout):
            return None
        cap = self._cap
        if cap is None:
            now = time.monotonic()
            if now < self._retry_at:
                time.sleep(min(timeout, self._retry_at - now))
                return None
            self._start_open(first=False)
            if not self._poll(min(timeout, self.stall_s / 4)) or self._cap is None:
                return None
            cap = self._cap
        got = cap.ring.read_all(timeout=min(timeout, self.stall_s / 4))
        if got is None:
            try:
                active = cap.stream.active
            except cap.sd.PortAudioError as e:   # the stream's host API is gone
                active = False
                log.debug("stream state unreadable: %s", e)
            if not active:
                self._lost("stream stopped (device or sound server gone)")
            elif time.monotonic() - cap.last_cb > self.stall_s:
                self._lost(f"no audio callback for {self.stall_s:.1f} s")
            else:
                return None
            # the audio the resampler holds back (44.1/48 kHz: up to 40 ms) is the stream's
            # last: handed out before the loss, not dropped with the resampler at the reopen;
            # no audio is missing right before it (a gap before the last block was said then)
            self.gap_s = 0.0
            tail = self._resample(np.zeros(0, np.float32), last=True)
            return tail if len(tail) else None
        if self._spell.working():   # healthy: the next loss retries fast again
            self._backoff = 0.5
        block, dropped = got
        self.gap_s, self._gap_next = self._gap_next, dropped / cap.rate
        if dropped:   # a gap follows: what the resampler holds back belongs before it
            out = self._resample(block, last=True)
            self._resample = Resampler(cap.rate, self.rate)
            return out
        return self._resample(block)

    def close(self, timeout: float = 1.0) -> None:
        """Close the stream; a PortAudio call that blocks beyond ``timeout`` is left to its
        thread (a stop must not wait for a hung sound server)."""
        cap, self._cap = self._cap, None
        if cap is not None and not self._worker.busy:
            self._worker.start("closing the stream", close_stream, cap)
        self._worker.close(timeout)
