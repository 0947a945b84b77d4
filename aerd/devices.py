"""Input devices as PortAudio (sounddevice) lists them, and the one ``[input] device`` names.

Imported only when a microphone is used or listed (`aerd devices`): sounddevice loads PortAudio.
"""

from __future__ import annotations

import os
import re
from typing import Any

from .errors import AudioError


def _dup_stderr() -> int | None:
    try:
        return os.dup(2)
    except OSError:   # (started with stderr closed)
        return None


_STDERR = _dup_stderr()
"""Standard error as it was before sounddevice came: its PortAudio initialisation points fd 2
at /dev/null until it returns (to hide ALSA's chatter), and against a sound server that does
not answer that is minutes, in which this process's own error lines would vanish."""


def restore_stderr() -> None:
    """Point fd 2 back at the real standard error (a PortAudio initialisation hangs)."""
    if _STDERR is not None:
        try:
            os.dup2(_STDERR, 2)
        except OSError:
            pass


_HW = re.compile(r" \(hw:\d+,\d+\)$")
"""The ALSA card and device numbers PortAudio appends to a hardware device's name."""


def import_sounddevice() -> Any:
    """Import sounddevice, turning a missing PortAudio into a one-line AudioError."""
    try:
        import sounddevice as sd
    except OSError as e:  # PortAudio library not found
        raise AudioError(f"no usable microphone: PortAudio is not installed ({e}); "
                         "install libportaudio2, or use --input FILE or --input -") from None
    except Exception as e:   # Pa_Initialize failed at import: sd.PortAudioError, not importable
        if type(e).__name__ != "PortAudioError":
            raise
        raise AudioError(f"no usable microphone: PortAudio did not start ({e})") from None
    return sd


def list_devices() -> list[dict[str, Any]]:
    sd = import_sounddevice()
    return [dict(index=i, name=d["name"], channels=d["max_input_channels"],
                 default_rate=d["default_samplerate"])
            for i, d in enumerate(sd.query_devices()) if d["max_input_channels"] > 0]


def sound_fingerprint() -> tuple[tuple[str, int, int], ...]:
    """What a device coming (back) changes, read without PortAudio: ALSA's device nodes in
    /dev/snd (a USB microphone plugged in, a card's driver loaded: nodes made anew) and a
    sound server's socket (PulseAudio or PipeWire started again: a new socket file). A
    PortAudio re-initialisation, the only way PortAudio sees such a change, leaks about 12 KB
    (ALSA's; measured), so a long loss re-initialises only when this changed."""
    paths = []
    try:
        paths += [os.path.join("/dev/snd", n) for n in sorted(os.listdir("/dev/snd"))]
    except OSError:
        pass
    server = os.environ.get("PULSE_SERVER", "")
    if server.startswith(("unix:", "/")):
        paths.append(server.removeprefix("unix:"))
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime:
        paths += [os.path.join(runtime, "pulse", "native"), os.path.join(runtime, "pipewire-0")]
    seen = []
    for path in paths:
        try:
            st = os.stat(path)
            seen.append((path, st.st_ino, st.st_ctime_ns))
        except OSError:
            seen.append((path, 0, 0))
    return tuple(seen)


def find_device(spec: str, devices: list[dict[str, Any]], pinned: str | None = None,
                option: str = "--device") -> int | None:
    """An input device index from ``--device``: an index, a whole name as `aerd devices` lists
    it, or a substring of one name (case-insensitive); None = the default input. A substring
    of several names is refused, naming them (ALSA lists `sysdefault` before `default`).
    ``pinned``: the name an index named when it was first opened; at a reopen that device is
    looked for by name (a re-plug renumbers devices: the index may name another one now), its
    ALSA card number aside ("USB Mic: Audio (hw:1,0)" plugged again may be "(hw:2,0)").
    ``option``: where ``spec`` came from, for the errors ("FILE: [input] device")."""
    if spec == "":
        return None
    if spec.isdigit() and pinned is not None:
        now = ([d for d in devices if d["name"] == pinned]
               or [d for d in devices if _HW.sub("", d["name"]) == _HW.sub("", pinned)])
        if len(now) != 1:
            raise AudioError(f"{option} {spec}: {pinned!r}, opened as {spec}, is "
                             f"{'not there' if not now else 'not told apart from another'} "
                             "(see `aerd devices`)")
        return now[0]["index"]
    if spec.isdigit():
        if any(d["index"] == int(spec) for d in devices):
            return int(spec)
        raise AudioError(f"{option} {spec}: no input device with that index (see `aerd devices`)")
    exact = [d for d in devices if d["name"] == spec]
    hits = exact or [d for d in devices if spec.lower() in d["name"].lower()]
    if not hits:
        raise AudioError(f"{option} {spec!r}: no input device name contains it (see `aerd devices`)")
    if len(hits) > 1:
        names = ", ".join(f"{d['index']} {d['name']!r}" for d in hits[:6])
        raise AudioError(f"{option} {spec!r}: {len(hits)} input devices match ({names}); "
                         "give the whole name or the index (see `aerd devices`)")
    return hits[0]["index"]
