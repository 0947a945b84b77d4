"""Microphone capture with sounddevice (PortAudio), imported only when a microphone is used.

The PortAudio callback only copies the block into a bounded :class:`RingBuffer` and
counts overflows. The consumer watches the stream: if it stops (``stream.active`` turns
False, as it does when the sound server or device goes away) or its callbacks stall for
``stall_s``, the input is marked lost and reopened with capped exponential backoff.

Retries: 0.5 s, doubling to ``max_backoff_s`` (8 s); after ``long_trouble_s`` (5 min) of
trouble, every ``long_backoff_s`` (60 s). A device that opens but never delivers counts as
trouble too: the backoff is only reset after ``healthy_s`` (30 s) of audio. Each reopen
re-initialises PortAudio to find new devices, and PortAudio/ALSA leak about 12 KB per
re-initialisation (measured), so the slow schedule keeps a long loss to about 17 MB a day.
After the first few losses of a trouble spell, the open/lost lines go to the debug log.

With ``wait``, a microphone that cannot be opened at start is a loss like any other (input
``lost``, retried on the same schedule) instead of an AudioError: under a supervisor that
restarts the daemon, exiting only starts it again and again every few seconds.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from .devices import find_device, import_sounddevice, list_devices
from .errors import AudioError
from .ringbuffer import RingBuffer
from .sources import Resampler, warn_narrowband

log = logging.getLogger(__name__)


class MicSource:
    """Reads the microphone; ``read(timeout)`` like the other sources, never ends by itself."""

    LOUD_LOSSES = 3
    """Losses per trouble spell logged as warnings; later ones are debug lines."""

    def __init__(self, device: str, rate: int, buffer_s: float = 10.0, block_s: float = 0.05,
                 stall_s: float = 1.0, max_backoff_s: float = 8.0, healthy_s: float = 30.0,
                 long_trouble_s: float = 300.0, long_backoff_s: float = 60.0, wait: bool = False,
                 option: str = "--device"):
        self._sd = import_sounddevice()
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
        self._trouble_since: float | None = None   # first loss of the current trouble spell
        self._trouble_losses = 0
        self._opened_at = 0.0
        self.buffer_s = buffer_s
        self._raw: RingBuffer | None = None
        self._mono = np.zeros(0, np.float32)   # stereo downmix block, sized at open
        self._old_overflows = 0   # from rings of streams that were lost
        self.ended = False
        self.state, self.detail = "starting", ""
        self.bad_frames = 0
        self.portaudio_overflows = 0
        self.losses = 0
        self._stream: Any = None
        self._resample: Resampler | None = None
        self._last_cb = 0.0
        self._retry_at = 0.0
        self._backoff = 0.5
        self._warned: tuple[str, int] | None = None   # the device the rate warning was for
        self._pinned: str | None = None   # the name of the device an index named at first
        self._open(first=True)

    @property
    def overflows(self) -> int:
        current = self._raw.overflows if self._raw is not None else 0
        return self._old_overflows + current + self.portaudio_overflows

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # Runs on PortAudio's thread: copy and count, nothing else.
        self._last_cb = time.monotonic()
        if status.input_overflow:
            self.portaudio_overflows += 1
        if indata.shape[1] == 1:
            self._raw.write(indata[:, 0])
        elif frames <= len(self._mono):   # stereo: downmix into the preallocated block
            mono = self._mono[:frames]
            np.add(indata[:, 0], indata[:, 1], out=mono)
            mono *= np.float32(0.5)
            self._raw.write(mono)
        else:   # a longer block than asked for (PortAudio may): rare, allocate
            self._raw.write(indata.mean(axis=1))

    def _open(self, first: bool = False) -> None:
        sd = self._sd
        try:
            if not first:   # re-scan devices: the server or device may be new
                if sd._initialized:   # (not after an initialisation that failed: Pa_Terminate
                    sd._terminate()   # would fail, and PortAudio never come back)
                sd._initialize()
            devices = list_devices()
            if not devices:
                raise AudioError("no input device found")
            index = find_device(self.device_spec, devices, self._pinned, self.option)
            info = sd.query_devices(index, "input")
            # mono at the model rate if the device takes it; else its own rate and/or 2 channels
            # (downmixed in the callback) — a raw hw: device may offer only those
            dev_rate, channels = int(info["default_samplerate"]), min(2, info["max_input_channels"])
            for rate, ch in ((self.rate, 1), (dev_rate, 1), (self.rate, channels)):
                try:
                    sd.check_input_settings(device=index, channels=ch, samplerate=rate)
                except sd.PortAudioError:
                    continue
                dev_rate, channels = rate, ch
                break
            if self._raw is not None:
                self._old_overflows += self._raw.overflows
            self._raw = RingBuffer(int(self.buffer_s * dev_rate))
            self._mono = np.zeros(2 * int(dev_rate * self.block_s), np.float32)
            self._resample = Resampler(dev_rate, self.rate)
            if (info["name"], dev_rate) != self._warned:   # once per device, not per reopen
                self._warned = (info["name"], dev_rate)
                warn_narrowband(f"microphone {info['name']}", dev_rate, self.rate)
            self._stream = sd.InputStream(device=index, channels=channels, samplerate=dev_rate,
                                          dtype="float32", blocksize=int(dev_rate * self.block_s),
                                          callback=self._callback)
            self._stream.start()
        except (sd.PortAudioError, AudioError) as e:
            self._stream = None
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            if first and not self.wait:
                raise AudioError(f"no usable microphone ({msg}); choose one with --device "
                                 "(see `aerd devices`) or use --input FILE or --input -") from None
            if first:   # wait for it: a loss from the start
                self._lost(f"no usable microphone ({msg})")
            self.detail = f"{'open' if first else 'reopen'} failed: {msg}"
            return
        self._last_cb = self._opened_at = time.monotonic()
        if self.device_spec.isdigit():
            self._pinned = info["name"]
        self.state = "ok"
        self.detail = f"{info['name']} @ {dev_rate} Hz"
        self._log_trouble(logging.INFO, "microphone open: %s", self.detail)

    def _log_trouble(self, level: int, msg: str, *args: Any) -> None:
        """Log, but only the first LOUD_LOSSES rounds of a trouble spell above debug."""
        quiet = self._trouble_losses > self.LOUD_LOSSES
        log.log(logging.DEBUG if quiet else level, msg, *args)
        if self._trouble_losses == self.LOUD_LOSSES + 1 and level == logging.WARNING:
            log.warning("microphone keeps failing; retrying quietly (status events go on)")

    def _schedule_retry(self) -> None:
        now = time.monotonic()
        if self._trouble_since is not None and now - self._trouble_since > self.long_trouble_s:
            self._backoff = self.long_backoff_s
        self._retry_at = now + self._backoff
        self._backoff = min(self._backoff * 2, max(self.max_backoff_s, self._backoff))

    def _lost(self, why: str) -> None:
        self.losses += 1
        if self._trouble_since is None:
            self._trouble_since = time.monotonic()
        self._trouble_losses += 1
        self.state, self.detail = "lost", why
        self._log_trouble(logging.WARNING, "microphone lost: %s; retrying", why)
        if self._stream is not None:   # (none when it could not be opened at start)
            try:
                self._stream.close()
            except self._sd.PortAudioError:
                pass
            self._stream = None
        self._schedule_retry()

    def read(self, timeout: float = 1.0) -> np.ndarray | None:
        now = time.monotonic()
        if self._stream is None:
            if now < self._retry_at:
                time.sleep(min(timeout, self._retry_at - now))
                return None
            self._open()
            if self._stream is None:
                self._schedule_retry()
                return None
        block = self._raw.read(int(self._raw.capacity), timeout=min(timeout, self.stall_s / 4))
        if block is None:
            try:
                active = self._stream.active
            except self._sd.PortAudioError as e:   # the stream's host API is gone
                active = False
                log.debug("stream state unreadable: %s", e)
            if not active:
                self._lost("stream stopped (device or sound server gone)")
            elif time.monotonic() - self._last_cb > self.stall_s:
                self._lost(f"no audio callback for {self.stall_s:.1f} s")
            return None
        if self._trouble_since is not None and time.monotonic() - self._opened_at > self.healthy_s:
            if self._trouble_losses > self.LOUD_LOSSES:   # the quiet lines said nothing of it
                log.info("microphone healthy again after %d losses", self._trouble_losses)
            self._trouble_since, self._trouble_losses, self._backoff = None, 0, 0.5   # healthy
        return self._resample(block)

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.close()
            except self._sd.PortAudioError:
                pass
            self._stream = None
