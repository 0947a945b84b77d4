"""Side-by-side cost of aerd and the seed-style pipeline on the same long audio.

    python tools/bench.py [--minutes 10] [--latency-seconds 60] [--out FILE.json]

Builds a >= 10 minute 16 kHz PCM WAV from the shared RAVDESS clips (or the test clips),
then, each in its own process: `aerd run --fast` with the default model and with seed180
(CPU ms per audio second, real-time factor, peak RSS, start-to-READY), the seed-style
reference (tools/seed_reference.py: librosa + scikit-learn recomputing 3 s every 0.5 s),
and, for real-time-paced input, the latency from a hop's last sample (written to the
daemon's stdin) to its event at a real ZeroMQ subscriber (p50/p99).

CPU per audio second is the marginal cost: (CPU of the long run - CPU of a 4 s run) /
(audio difference), so start-up (imports, model load) is reported apart, as "ready"; each
aerd figure is the median of ``--repeats`` runs (single runs differ by about 10 % here).
Every child runs with one BLAS/OpenMP thread (the daemon's setting, and the reference's
cheapest: with two threads its CPU time doubles while its wall time does not improve).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data" / "ravdess-16k"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.dataset import tool_main  # noqa: E402
from aerd.cliparser import SECONDS_FROM_0, WHOLE_FROM_1  # noqa: E402
from tools.evalkit import POSITIVE, comma_list, output_file  # noqa: E402


def build_audio(path: Path, minutes: float) -> float:
    clips = sorted(SHARED.glob("Actor_*/*.flac")) or sorted((REPO / "tests" / "data").glob("*.flac"))
    if not clips:
        sys.exit("bench: no audio clips found (../shared/data/ravdess-16k or tests/data)")
    target = int(minutes * 60 * 16000)
    parts, n, i = [], 0, 0
    gap = np.zeros(8000, np.float32)
    while n < target:
        y, sr = sf.read(clips[i % len(clips)], dtype="float32")
        y = y.mean(axis=1) if y.ndim > 1 else y
        parts += [y, gap]
        n += len(y) + len(gap)
        i += 1
    audio = np.concatenate(parts)[:target]
    sf.write(path, audio, 16000, subtype="PCM_16")
    return len(audio) / 16000


def _env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        e[var] = "1"
    return e


def _vm_hwm_mb(pid: int) -> float:
    """Peak resident set size of a running process (MB), 0 if it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def run_measured(cmd: list[str], notify: bool = False) -> dict:
    """Run a child; return its CPU seconds, wall seconds, peak RSS (MB), READY time, stdout."""
    if not notify:
        return _run_measured(cmd, None)
    with tempfile.TemporaryDirectory(prefix="aerd-bench-") as d:   # the notify socket
        return _run_measured(cmd, d)


def _run_measured(cmd: list[str], d: str | None) -> dict:
    env = _env()
    sock = None
    if d is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(f"{d}/notify")
        sock.settimeout(60)
        env["NOTIFY_SOCKET"] = f"{d}/notify"
        # a daemon run's adaptation state: its own, not the user's ~/.local/state/aerd
        # (which every run had overwritten with the bench's audio), and fresh for each run
        env["STATE_DIRECTORY"] = d
    out_file = tempfile.TemporaryFile()
    t0 = time.monotonic()
    err_file = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=out_file, stderr=err_file, env=env, cwd=REPO)
    ready, done, hwm = None, None, 0.0
    if sock is not None:
        sock.settimeout(0.05)
    while done is None:
        if sock is not None and ready is None:
            try:
                if b"READY=1" in sock.recv(4096):
                    ready = time.monotonic() - t0
            except socket.timeout:
                pass
        else:
            time.sleep(0.01)
        hwm = max(hwm, _vm_hwm_mb(proc.pid))
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            done = time.monotonic()
    proc.returncode = status  # reaped here, so Popen must not wait again
    wall = done - t0
    out_file.seek(0)
    out = out_file.read()
    if sock is not None:
        sock.close()
    if status != 0:
        err_file.seek(0)
        why = (err_file.read().decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        sys.exit(f"bench: {' '.join(cmd)} failed (exit {os.waitstatus_to_exitcode(status)}): {why}")
    # Peak RSS from the child's own VmHWM (after exec): ru_maxrss would include the parent's
    # pages the child shared between fork and exec.
    return {"cpu_s": ru.ru_utime + ru.ru_stime, "wall_s": wall, "peak_rss_mb": hwm,
            "ready_s": ready, "stdout": out.decode(errors="replace")}


def bench_aerd(model: str, long_wav: Path, short_wav: Path, long_s: float, short_s: float,
               repeats: int = 3) -> dict:
    base = [sys.executable, "-m", "aerd", "run", "--fast", "--model", model, "--log-level", "warning"]
    ep = f"ipc://{long_wav.parent}/bench.sock"   # beside the audio, in main's temporary dir
    audio = long_s - short_s
    # one untimed run first: bytecode compilation and a cold page cache belong to no figure
    run_measured(base + ["--input", str(short_wav), "--endpoint", ep], notify=True)
    runs = []
    for _ in range(max(1, repeats)):
        short = run_measured(base + ["--input", str(short_wav), "--endpoint", ep], notify=True)
        long = run_measured(base + ["--input", str(long_wav), "--endpoint", ep], notify=True)
        runs.append((1000 * (long["cpu_s"] - short["cpu_s"]) / audio,
                     audio / max(long["wall_s"] - short["wall_s"], 1e-9),
                     long["peak_rss_mb"], short["ready_s"], short["cpu_s"]))
    cpu = sorted(r[0] for r in runs)
    med = min(runs, key=lambda r: abs(r[0] - cpu[len(cpu) // 2]))
    return {"name": f"aerd ({model})", "cpu_ms_per_audio_s": med[0], "cpu_ms_runs": [r[0] for r in runs],
            "rtf": med[1], "peak_rss_mb": max(r[2] for r in runs),
            "ready_s": max(r[3] for r in runs), "startup_cpu_s": med[4]}


def bench_seed(long_wav: Path) -> dict:
    r = run_measured([sys.executable, str(REPO / "tools" / "seed_reference.py"), str(long_wav)])
    res = json.loads(r["stdout"].strip().splitlines()[-1])
    return {"name": "seed-style (librosa+sklearn)", "cpu_ms_per_audio_s": 1000 * res["cpu_s"] / res["audio_s"],
            "rtf": res["audio_s"] / res["wall_s"], "peak_rss_mb": r["peak_rss_mb"],
            "ready_s": res["ready_s"], "startup_cpu_s": r["cpu_s"] - res["cpu_s"]}


def bench_latency(seconds: float, model: str, work: Path) -> dict:
    """Feed PCM to `aerd run --input -` at real-time pace in 10 ms blocks; time each event
    (the PUB socket in ``work``)."""
    import zmq

    clips = sorted(SHARED.glob("Actor_*/*.flac")) or sorted((REPO / "tests" / "data").glob("*.flac"))
    parts, n = [], 0
    for c in clips:
        y, _ = sf.read(c, dtype="float32")
        parts.append(y.mean(axis=1) if y.ndim > 1 else y)
        n += len(parts[-1])
        if n > seconds * 16000:
            break
    pcm = (np.clip(np.concatenate(parts)[: int(seconds * 16000)], -1, 1) * 32767).astype("<i2")
    ep = f"ipc://{work}/lat.sock"
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"emotion")
    sub.connect(ep)
    proc = subprocess.Popen([sys.executable, "-m", "aerd", "run", "--input", "-", "--endpoint", ep,
                             "--model", model, "--log-level", "warning", "--wait-subscriber", "30"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, cwd=REPO,
                            env=dict(_env(), STATE_DIRECTORY=str(work)))   # (not the user's)
    arrivals: list[tuple[float, float]] = []

    def collect() -> None:
        while True:
            if sub.poll(2000):
                _, body = sub.recv_multipart()
                arrivals.append((time.monotonic(), json.loads(body)["end"]))
            elif proc.poll() is not None:
                return

    th = threading.Thread(target=collect, daemon=True)
    th.start()
    time.sleep(1.5)  # daemon start + subscription
    block = 160
    written: dict[int, float] = {}
    t0 = time.monotonic()
    for i in range(0, len(pcm), block):
        delay = t0 + i / 16000 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        proc.stdin.write(pcm[i : i + block].tobytes())
        proc.stdin.flush()
        written[i + block] = time.monotonic()
    proc.stdin.close()
    proc.wait(timeout=60)
    th.join(timeout=5)
    sub.close()
    ctx.term()
    lat = [1000 * (t - written[int(round(end * 16000))]) for t, end in arrivals
           if int(round(end * 16000)) in written]
    if not lat:
        return {"events": 0}
    return {"events": len(lat), "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(np.max(lat))}


def _model_name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty model name")
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=POSITIVE, default=10.0)
    ap.add_argument("--latency-seconds", type=SECONDS_FROM_0, default=60.0)
    ap.add_argument("--models", default="default,seed180", type=comma_list(_model_name, "model names"),
                    help="aerd models to measure, comma-separated (names or card paths)")
    ap.add_argument("--skip-seed", action="store_true", help="skip the (slow) seed-style reference")
    ap.add_argument("--repeats", type=WHOLE_FROM_1, default=3, help="runs per aerd model (median reported)")
    ap.add_argument("--out", type=output_file, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    # the audio and the sockets live in one temporary directory, removed at the end
    with tempfile.TemporaryDirectory(prefix="aerd-bench-") as tmp:
        work = Path(tmp)
        long_wav, short_wav = work / "long.wav", work / "short.wav"
        long_s = build_audio(long_wav, args.minutes)
        short_s = build_audio(short_wav, 4.0 / 60)
        print(f"audio: {long_s / 60:.1f} min 16 kHz PCM WAV (temporary)", flush=True)
        rows = [bench_aerd(m, long_wav, short_wav, long_s, short_s, args.repeats)
                for m in args.models]
        if not args.skip_seed:
            rows.append(bench_seed(long_wav))
        lat = (bench_latency(args.latency_seconds, args.models[0], work)
               if args.latency_seconds > 0 else {})
    print(f"\n{'pipeline':32} {'CPU ms/audio s':>15} {'RTF':>9} {'peak RSS MB':>12} {'ready s':>8}")
    for r in rows:
        runs = "  (runs: " + ", ".join(f"{v:.3f}" for v in r["cpu_ms_runs"]) + ")" if "cpu_ms_runs" in r else ""
        print(f"{r['name']:32} {r['cpu_ms_per_audio_s']:15.3f} {r['rtf']:9.0f} {r['peak_rss_mb']:12.1f} "
              f"{r['ready_s']:8.3f}{runs}")
    if not args.skip_seed:
        ref = rows[-1]["cpu_ms_per_audio_s"]
        for r in rows[:-1]:
            print(f"{r['name']} is {ref / r['cpu_ms_per_audio_s']:.0f}x cheaper than the seed-style pipeline")
    if lat:
        print(f"\nreal-time stdin input, hop end -> event at a subscriber: {lat.get('events')} events, "
              f"p50 {lat.get('p50_ms', float('nan')):.2f} ms, p99 {lat.get('p99_ms', float('nan')):.2f} ms, "
              f"max {lat.get('max_ms', float('nan')):.2f} ms")
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "latency": lat}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(tool_main("bench", main))
