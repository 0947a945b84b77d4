"""A throw-away user-space PulseAudio server: a virtual microphone for capture tests.

Recipe: /work/shared/notes/virtual-mic.md. A null sink ``spk`` (``norewinds=1``) whose monitor
is remapped as the default source ``mic``; ALSA's pulse plugin makes PortAudio (sounddevice)
see ``pulse`` and ``default`` devices. Whatever is played into the sink (``play``) comes back
from the default input device in real time.

Not a test module. Typical use::

    reason = pulse_available()
    if reason: pytest.skip(reason)
    with PulseServer(tmp_path) as srv:
        env = {**os.environ, **srv.env}
        # run the capturing code in a subprocess with ``env``: the server must be up and
        # PULSE_SERVER set before ``import sounddevice`` (PortAudio scans at initialisation)
        srv.play(clip_path)

Apt packages: libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins.
"""

from __future__ import annotations

import ctypes.util
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

SINK = "spk"
SOURCE = "mic"

_CONFIG = """\
load-module module-native-protocol-unix auth-anonymous=1 socket={socket}
load-module module-null-sink sink_name={sink} rate={rate} channels={channels} norewinds=1
load-module module-remap-source master={sink}.monitor source_name={source}
set-default-sink {sink}
set-default-source {source}
"""

# Debian's /etc/alsa/conf.d/99-pulse.conf makes `default` = pulse only if a server answers
# when ALSA first loads its configuration (conf_pulse_hook_load_if_running). This file (read
# as $HOME/.asoundrc) makes it unconditional, so `default` stays a pulse device even if the
# client initialised PortAudio while the server was down. `pulse` itself is always defined by
# /etc/alsa/conf.d/50-pulseaudio.conf (libasound2-plugins).
_ASOUNDRC = """\
pcm.!default {
    type pulse
    hint { show on description "PulseAudio (test server)" }
}
ctl.!default {
    type pulse
}
"""


def pulse_available() -> str | None:
    """None if a PulseAudio capture path can be built here, else a reason to skip."""
    missing = [t for t in ("pulseaudio", "pactl", "paplay") if shutil.which(t) is None]
    if missing:
        return f"not installed: {', '.join(missing)} (apt: pulseaudio pulseaudio-utils)"
    if ctypes.util.find_library("portaudio") is None:
        return "libportaudio2 not installed"
    plugin_dirs = [
        Path("/usr/lib/x86_64-linux-gnu/alsa-lib"),
        Path("/usr/lib/aarch64-linux-gnu/alsa-lib"),
        Path("/usr/lib/alsa-lib"),
        Path("/usr/lib64/alsa-lib"),
    ]
    if not any((d / "libasound_module_pcm_pulse.so").exists() for d in plugin_dirs):
        return "ALSA pulse plugin not installed (apt: libasound2-plugins)"
    return None


class PulseServerError(RuntimeError):
    pass


class PulseServer:
    """A pulseaudio process serving ``<directory>/native``; one server per directory.

    ``env`` holds the variables a client process needs (merge into ``os.environ``).
    ``kill()`` SIGKILLs it (device loss); ``start()`` again brings it back on the same socket.
    """

    def __init__(self, directory: str | os.PathLike, *, rate: int = 48000, channels: int = 1,
                 start_timeout: float = 10.0, alsa_devices: tuple[str, ...] = ()):
        self.dir = Path(directory)
        self.rate = rate
        self.channels = channels
        self.start_timeout = start_timeout
        self.socket = self.dir / "native"
        self.cookie = self.dir / "cookie"
        self.config = self.dir / "fake.pa"
        self.log = self.dir / "pa.log"
        self.runtime = self.dir / "run"
        self.proc: subprocess.Popen | None = None
        self.start_time: float | None = None  # seconds the last start() took
        self._players: list[subprocess.Popen] = []

        self.dir.mkdir(parents=True, exist_ok=True)
        self.runtime.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.runtime, 0o700)
        self.config.write_text(_CONFIG.format(
            socket=self.socket, sink=SINK, source=SOURCE, rate=rate, channels=channels))
        self.set_alsa_devices(alsa_devices)

        self.env: dict[str, str] = {
            "PULSE_SERVER": f"unix:{self.socket}",
            "PULSE_COOKIE": str(self.cookie),
            "HOME": str(self.dir),  # pulse's ~/.config and ALSA's ~/.asoundrc
            "XDG_RUNTIME_DIR": str(self.runtime),
            "XDG_CONFIG_HOME": str(self.dir / ".config"),
        }
        # Make sure no system-wide override points ALSA elsewhere.
        self._drop = ("ALSA_CONFIG_PATH", "PULSE_SINK", "PULSE_SOURCE", "PULSE_PROP")

    def set_alsa_devices(self, names: tuple[str, ...] | list[str]) -> None:
        """More ALSA capture devices, each the pulse source ``mic``, listed by PortAudio in this
        order before ``default``; a client sees a change at its next PortAudio initialisation
        (a USB microphone unplugged, or another plugged in, between two device scans)."""
        extra = "".join(f'pcm.{n} {{ type pulse; device "{SOURCE}"; '
                        f'hint {{ show on; description "{n} (test)" }} }}\n' for n in names)
        (self.dir / ".asoundrc").write_text(_ASOUNDRC + extra)

    # -- environment -------------------------------------------------------------------------

    def client_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default os.environ) with ``env`` merged in, ready for subprocess.Popen."""
        env = dict(os.environ if base is None else base)
        for k in self._drop:
            env.pop(k, None)
        env.update(self.env)
        return env

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> "PulseServer":
        """Start the server (again, after kill/stop) and wait until ``pactl info`` answers."""
        if self.running:
            return self
        if self.socket.exists():  # left behind by a SIGKILLed server
            self.socket.unlink()
        t0 = time.monotonic()
        env = self.client_env()
        self._logfh = open(self.dir / "pa.stderr", "ab")
        self.proc = subprocess.Popen(
            ["pulseaudio", "-n", "-F", str(self.config), "--daemonize=no",
             "--exit-idle-time=-1", "--use-pid-file=no", "--disallow-exit",
             f"--log-target=file:{self.log}"],
            env=env, stdin=subprocess.DEVNULL, stdout=self._logfh, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = t0 + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise PulseServerError(
                    f"pulseaudio exited with {self.proc.returncode} during start\n{self.log_tail()}")
            try:
                r = subprocess.run(["pactl", "info"], env=env, capture_output=True, timeout=2)
                if r.returncode == 0:
                    break
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise PulseServerError(
                    f"pulseaudio did not answer `pactl info` within {self.start_timeout} s\n"
                    f"{self.log_tail()}")
            time.sleep(0.02)
        self.start_time = time.monotonic() - t0
        return self

    def kill(self) -> None:
        """SIGKILL the server (simulates the capture device vanishing)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._close_log()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop players and the server (SIGTERM, then SIGKILL after ``timeout``)."""
        for p in self._players:
            if p.poll() is None:
                p.kill()
                try:
                    p.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
        self._players.clear()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def _close_log(self) -> None:
        fh = getattr(self, "_logfh", None)
        if fh is not None:
            fh.close()
            self._logfh = None

    def __enter__(self) -> "PulseServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- playback & inspection ---------------------------------------------------------------

    def play(self, path: str | os.PathLike, block: bool = False,
             timeout: float = 30.0) -> subprocess.Popen:
        """``paplay`` a sound file into the sink (heard on the default source)."""
        p = subprocess.Popen(["paplay", f"--device={SINK}", str(path)], env=self.client_env(),
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        self._players.append(p)
        if block:
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=2)
                raise PulseServerError(f"paplay {path} did not finish within {timeout} s")
        return p

    def pactl(self, *args: str, timeout: float = 5.0) -> str:
        r = subprocess.run(["pactl", *args], env=self.client_env(), capture_output=True,
                           text=True, timeout=timeout)
        if r.returncode != 0:
            raise PulseServerError(f"pactl {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for f in (self.dir / "pa.stderr", self.log):
            try:
                text = f.read_text(errors="replace").splitlines()
            except OSError:
                continue
            if text:
                out.append(f"--- tail of {f.name} ---\n" + "\n".join(text[-lines:]))
        return "\n".join(out) or "(pa.log is empty or missing)"
