"""One open PortAudio input stream and the ring its callback fills; and the worker thread
that opens and closes such streams for :class:`aerd.mic.MicSource`.

PortAudio calls can block for minutes: against a sound server that has stopped answering
(PulseAudio stopped, measured) closing a stream took 60 s and a re-initialisation 120 s.
They run on the worker, one at a time, so that the daemon's loop goes on publishing status
and obeys SIGTERM meanwhile.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import time
from typing import Any, Callable

import numpy as np

from .devices import find_device, import_sounddevice, list_devices, restore_stderr
from .errors import AudioError
from .ringbuffer import RingBuffer

log = logging.getLogger(__name__)


class Capture:
    """A stream's ring and counters; ``callback`` runs on PortAudio's thread: copy and count."""

    def __init__(self, name: str, rate: int, channels: int, ring_s: float, block: int,
                 sd: Any = None):
        self.name, self.rate, self.channels, self.block = name, rate, channels, block
        self.sd = sd   # the sounddevice module
        self.ring = RingBuffer(int(ring_s * rate))
        self.mono = np.zeros(2 * block, np.float32)   # downmix block (2 or more channels)
        self.gain = np.float32(1.0 / channels)
        self.portaudio_overflows = 0
        self.last_cb = time.monotonic()
        self.stream: Any = None

    @property
    def overflows(self) -> int:
        return self.ring.overflows + self.portaudio_overflows

    def callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        self.last_cb = time.monotonic()
        if status.input_overflow:
            self.portaudio_overflows += 1
        ch = indata.shape[1]
        if ch == 1:
            self.ring.write(indata[:, 0])
        elif frames <= len(self.mono):   # downmix into the preallocated block
            mono = self.mono[:frames]
            np.add(indata[:, 0], indata[:, 1], out=mono)
            for c in range(2, ch):   # a microphone array that only opens with all its channels
                np.add(mono, indata[:, c], out=mono)
            mono *= self.gain
            self.ring.write(mono)
        else:   # a longer block than asked for (PortAudio may): rare, allocate
            self.ring.write(indata.mean(axis=1))


def stream_settings(accepts: Callable[[int, int], bool], rate: int, dev_rate: int,
                    most: int) -> tuple[int, int]:
    """(rate, channels) to open a device with: mono at the model's ``rate`` if the device
    ``accepts`` it, else at its own ``dev_rate``, else 2 channels, else all ``most`` of them
    (a raw hw: device may offer only those: a microphone-array HAT opens with its 4 or 8
    channels or not at all; the callback averages them). None accepted: the device's own
    rate and channels, so that opening fails with PortAudio's reason."""
    tries = [(r, ch) for ch in sorted({1, min(2, most), most}) for r in (rate, dev_rate)]
    return next((t for t in dict.fromkeys(tries) if accepts(*t)), tries[-1])


def open_capture(spec: str, pinned: str | None, option: str, rate: int,
                 buffer_s: float, block_s: float, rescan: bool) -> Capture:
    """Open and start the input ``spec`` names (see :func:`find_device`); ``rescan``:
    re-initialise PortAudio first, to see the devices as they are now. The first call
    imports sounddevice, which initialises PortAudio: a device scan, as liable to hang."""
    sd = import_sounddevice()
    if rescan:
        if sd._initialized:   # (not after an initialisation that failed: Pa_Terminate
            sd._terminate()   # would fail, and PortAudio never come back)
        sd._initialize()
    devices = list_devices()
    if not devices:
        raise AudioError("no input device found")
    index = find_device(spec, devices, pinned, option)
    info = sd.query_devices(index, "input")

    def accepts(r: int, ch: int) -> bool:
        try:
            sd.check_input_settings(device=index, channels=ch, samplerate=r)
        except sd.PortAudioError:
            return False
        return True

    dev_rate, channels = stream_settings(accepts, rate, int(info["default_samplerate"]),
                                         int(info["max_input_channels"]))
    cap = Capture(info["name"], dev_rate, channels, buffer_s, int(dev_rate * block_s), sd)
    cap.stream = sd.InputStream(device=index, channels=channels, samplerate=dev_rate,
                                dtype="float32", blocksize=cap.block, callback=cap.callback)
    try:
        cap.stream.start()
    except sd.PortAudioError:
        close_stream(cap)   # (else open until the next retry's re-initialisation)
        raise
    return cap


class Worker:
    """Runs one PortAudio call at a time on a daemon thread; the caller polls for its outcome.
    After :meth:`close`, a capture the running call still opens is closed by the thread."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._out: tuple[bool | None, Any] | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.what, self.since = "", 0.0   # the running call, and since when

    @property
    def busy(self) -> bool:
        return self._thread is not None

    def start(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        def work() -> None:
            try:
                out: tuple[bool | None, Any] = (True, fn(*args))
            except Exception as e:   # noqa: BLE001 -- a bug is raised again on the caller's thread
                sd = sys.modules.get("sounddevice")
                failed = isinstance(e, AudioError) or (
                    sd is not None and isinstance(e, getattr(sd, "PortAudioError", ())))
                out = (False, str(e).splitlines()[0] if str(e) else type(e).__name__) if failed \
                    else (None, e)
            with self._lock:
                late = self._closed and isinstance(out[1], Capture)
                self._out = (False, "closed") if late else out
            if late:
                close_stream(out[1])

        self.what, self.since, self._out = what, time.monotonic(), None
        self._thread = threading.Thread(target=work, name="aerd-mic", daemon=True)
        self._thread.start()

    def wait(self, timeout: float) -> tuple[bool, Any] | None:
        """The outcome of the call (ok, value or error line), or None if it still runs."""
        if self._thread is None:
            return None
        self._thread.join(timeout)
        if self._thread.is_alive():
            if time.monotonic() - self.since > 1.0:   # (a PortAudio initialisation may hang
                restore_stderr()                      # with stderr pointed at /dev/null)
            return None
        self._thread = None
        ok, value = self._out
        if ok is None:
            raise value
        return ok, value

    def close(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for a running call; False if it still blocks (then PortAudio
        is left alone at exit: Pa_Terminate on another thread would meet it)."""
        with self._lock:
            self._closed = True
        t = self._thread
        if t is not None:
            t.join(timeout)
            if t.is_alive():
                restore_stderr()
                log.warning("microphone: PortAudio has not answered for %.0f s (%s); leaving it",
                            time.monotonic() - self.since, self.what)
                sd = sys.modules.get("sounddevice")
                if sd is not None and hasattr(sd, "_exit_handler"):
                    atexit.unregister(sd._exit_handler)
                return False
            out, self._out, self._thread = self._out, None, None
            if out is not None and isinstance(out[1], Capture):   # opened just before
                self.start("closing the stream", close_stream, out[1])
                return self.close(timeout)
        return True


def list_devices_within(timeout: float) -> list[dict[str, Any]]:
    """:func:`aerd.devices.list_devices` on a worker, given up after ``timeout`` (the device
    scan blocks for minutes on a sound server that does not answer, and no signal
    interrupts it). AudioError, one line, if it fails or does not answer."""
    worker = Worker()
    worker.start("listing devices", list_devices)
    out = worker.wait(timeout)
    if out is None:
        restore_stderr()
        raise AudioError(f"PortAudio did not answer within {timeout:g} s: a hung sound server?")
    ok, value = out
    if not ok:
        raise AudioError(value)
    return value


def close_stream(cap: Capture) -> None:
    try:
        cap.stream.close()
    except cap.sd.PortAudioError:
        pass
