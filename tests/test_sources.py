"""File and stdin sources: formats, rates, downmix, pacing, errors, and raw PCM robustness."""

from __future__ import annotations

import io
import os
import threading
import time

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from aerd.errors import AudioError
from aerd.sources import FileSource, StdinSource

RATE = 16000


def tone(rate, seconds, freq=1000.0, channels=1, amp=0.5):
    t = np.arange(int(round(rate * seconds))) / rate
    x = amp * np.sin(2 * np.pi * freq * t)
    if channels == 1:
        return x.astype(np.float32)
    return np.stack([x] * channels, axis=1).astype(np.float32)


def read_all(src, timeout=1.0):
    out, t_end = [], time.monotonic() + 10
    while not src.ended and time.monotonic() < t_end:
        block = src.read(timeout)
        if block is not None:
            assert block.dtype == np.float32 and block.ndim == 1
            out.append(block)
    assert src.ended
    assert src.read(0.01) is None          # nothing after the end
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def peak_hz(x, rate):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * rate / len(x)


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg"])
@pytest.mark.parametrize("rate, channels", [(44100, 2), (8000, 1)])
def test_file_formats_rates_channels(tmp_path, ext, rate, channels):
    seconds = 0.6
    p = tmp_path / f"t.{ext}"
    sf.write(p, tone(rate, seconds, channels=channels), rate)
    src = FileSource(p, RATE, fast=True)
    assert (src.file_rate, src.channels) == (rate, channels)
    assert src.duration == pytest.approx(seconds, abs=1e-3)
    y = read_all(src)
    src.close()
    assert abs(len(y) - seconds * RATE) <= 0.01 * seconds * RATE
    mid = y[len(y) // 4 : 3 * len(y) // 4]
    assert abs(peak_hz(mid, RATE) - 1000.0) <= 2 * RATE / len(mid)
    # downmix of identical channels keeps the amplitude (mean, not sum)
    rms = np.sqrt(np.mean(mid.astype(np.float64) ** 2))
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.05)
    assert src.state == "ended"


def test_stereo_downmix_is_channel_mean(tmp_path):
    n = RATE // 2
    left = tone(RATE, 0.5, freq=500, amp=0.4)
    right = tone(RATE, 0.5, freq=1500, amp=0.2)
    p = tmp_path / "lr.wav"
    sf.write(p, np.stack([left, right], 1), RATE, subtype="FLOAT")
    y = read_all(FileSource(p, RATE, fast=True, block_s=0.01))
    assert len(y) == n                      # same rate: pass-through, exact
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-6)


def test_fast_mode_is_fast_and_paced_mode_takes_real_time(tmp_path):
    p = tmp_path / "half.wav"
    sf.write(p, tone(RATE, 0.5), RATE)
    t = time.monotonic()
    fast = read_all(FileSource(p, RATE, fast=True))
    assert time.monotonic() - t < 0.35
    t = time.monotonic()
    paced = read_all(FileSource(p, RATE, fast=False, block_s=0.05))
    elapsed = time.monotonic() - t
    assert 0.4 <= elapsed <= 1.5
    np.testing.assert_array_equal(fast, paced)


def test_paced_read_returns_none_on_short_timeout(tmp_path):
    p = tmp_path / "slow.wav"
    sf.write(p, tone(RATE, 0.5), RATE)
    src = FileSource(p, RATE, fast=False, block_s=0.2)
    t = time.monotonic()
    assert src.read(timeout=0.02) is None   # the first block is due in 0.2 s
    assert time.monotonic() - t < 0.15
    assert not src.ended


def _assert_audio_error(path, *words):
    with pytest.raises(AudioError) as e:
        FileSource(path, RATE, fast=True)
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg
    for w in words:
        assert w in msg


def test_error_missing_file(tmp_path):
    _assert_audio_error(tmp_path / "nope.wav", "no such file")


def test_error_directory(tmp_path):
    _assert_audio_error(tmp_path, "directory")


def test_error_text_file(tmp_path):
    p = tmp_path / "notes.wav"
    p.write_text("this is not audio\n" * 20)
    _assert_audio_error(p, "not a readable audio file")


@pytest.mark.parametrize("ext", ["wav", "ogg"])
def test_error_empty_audio(tmp_path, ext):
    p = tmp_path / f"empty.{ext}"
    sf.write(p, np.zeros((0, 1), np.float32), RATE)
    _assert_audio_error(p, "empty")


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg"])
def test_error_truncated_header(tmp_path, ext):
    p = tmp_path / f"t.{ext}"
    sf.write(p, tone(RATE, 0.3), RATE)
    p.write_bytes(p.read_bytes()[:20])
    _assert_audio_error(p)


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg"])
@pytest.mark.parametrize("how", ["half", "garbage"])
def test_truncated_or_corrupt_body_fails_cleanly(tmp_path, ext, how):
    """Either refused at open (AudioError naming the file) or read until a clean end."""
    p = tmp_path / f"t.{ext}"
    sf.write(p, tone(44100, 0.5), 44100)
    b = p.read_bytes()
    if how == "half":
        b = b[: len(b) // 2]
    else:
        b = b[:60] + np.random.default_rng(0).integers(0, 256, len(b) - 60, dtype=np.uint8).tobytes()
    p.write_bytes(b)
    try:
        src = FileSource(p, RATE, fast=True)
    except AudioError as e:
        assert str(p) in str(e)
        return
    y = read_all(src)
    assert src.state == "ended" and np.isfinite(y).all()
    assert len(y) <= 0.5 * RATE * 1.01


# -- stdin -----------------------------------------------------------------------------------

def pipe_source(payload: bytes, schedule, **kw):
    """A StdinSource on a real pipe; a thread writes ``payload`` in pieces given by ``schedule``."""
    r, w = os.pipe()
    rf = os.fdopen(r, "rb", buffering=0)

    def writer():
        pos, i = 0, 0
        while pos < len(payload):
            n = schedule(i)
            os.write(w, payload[pos : pos + n])
            pos += n
            i += 1
        os.close(w)

    th = threading.Thread(target=writer, daemon=True)
    th.start()
    return StdinSource(rf, **kw), th, rf


def s16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1, 1 - 1 / 32768) * 32768).round().astype("<i2").tobytes()


def test_stdin_pipe_odd_chunking_and_trailing_byte():
    x = tone(RATE, 0.25, amp=0.3)
    payload = s16(x) + b"\x01"              # one trailing odd byte
    # first 301 writes are single bytes, then odd-sized pieces
    src, th, rf = pipe_source(payload, lambda i: 1 if i < 301 else 777, in_rate=RATE, rate=RATE,
                              block_s=0.01)
    y = read_all(src, timeout=2.0)
    th.join(5)
    rf.close()
    assert len(y) == len(x)
    np.testing.assert_allclose(y, x, atol=1 / 32768 + 1e-7)
    assert src.bad_frames == 1 and src.state == "ended"


def test_stdin_whole_frames_have_no_bad_frames():
    src, th, rf = pipe_source(s16(tone(RATE, 0.1)), lambda i: 333, in_rate=RATE, rate=RATE)
    y = read_all(src)
    th.join(5)
    rf.close()
    assert len(y) == 1600 and src.bad_frames == 0


def test_stdin_stereo_downmix():
    left, right = tone(RATE, 0.2, 440, amp=0.5), tone(RATE, 0.2, 2000, amp=0.25)
    inter = np.stack([left, right], 1).reshape(-1)
    payload = s16(inter) + b"\x00\x00\x00"   # 3 trailing bytes: not a whole stereo frame
    src, th, rf = pipe_source(payload, lambda i: 1001, in_rate=RATE, rate=RATE, channels=2)
    y = read_all(src)
    th.join(5)
    rf.close()
    assert len(y) == len(left)
    ql, qr = (np.frombuffer(s16(c), "<i2") / 32768.0 for c in (left, right))
    np.testing.assert_allclose(y, (ql + qr) / 2, atol=1e-6)
    assert src.bad_frames == 1


def test_stdin_rate_conversion_8k_to_16k():
    x = tone(8000, 0.5, freq=1000, amp=0.5)
    src, th, rf = pipe_source(s16(x), lambda i: 999, in_rate=8000, rate=RATE)
    y = read_all(src)
    th.join(5)
    rf.close()
    assert abs(len(y) - 0.5 * RATE) <= 0.01 * 0.5 * RATE
    mid = y[len(y) // 4 : 3 * len(y) // 4]
    assert abs(peak_hz(mid, RATE) - 1000.0) <= 2 * RATE / len(mid)


def test_stdin_read_timeout_returns_none():
    r, w = os.pipe()
    with os.fdopen(r, "rb", buffering=0) as rf:
        src = StdinSource(rf, in_rate=RATE, rate=RATE)
        t = time.monotonic()
        assert src.read(timeout=0.05) is None and not src.ended
        assert time.monotonic() - t < 1.0
        os.close(w)
        assert len(src.read(timeout=1.0)) == 0 and src.ended


@settings(max_examples=80, deadline=None)
@given(data=st.binary(max_size=3000), channels=st.integers(1, 3),
       block_s=st.sampled_from([0.0001, 0.003, 0.05]))
def test_fuzz_stdin_bytes(data, channels, block_s):
    src = StdinSource(io.BytesIO(data), in_rate=RATE, rate=RATE, channels=channels, block_s=block_s)
    y = read_all(src, timeout=0)
    assert y.dtype == np.float32 and np.isfinite(y).all()
    assert np.all(np.abs(y) <= 1.0)
    frame = 2 * channels
    assert len(y) == len(data) // frame
    assert src.bad_frames == (1 if len(data) % frame else 0)


@settings(max_examples=30, deadline=None)
@given(data=st.binary(max_size=3000))
def test_fuzz_stdin_bytes_resampled(data):
    src = StdinSource(io.BytesIO(data), in_rate=8000, rate=RATE)
    y = read_all(src, timeout=0)
    assert y.dtype == np.float32 and np.isfinite(y).all()
    assert abs(len(y) - 2 * (len(data) // 2)) <= 2


def test_resampled_output_stays_in_range():
    d = np.tile(np.array([32767, 32767, -32768, -32768], "<i2"), 500).tobytes()
    y = read_all(StdinSource(io.BytesIO(d), in_rate=8000, rate=RATE), timeout=0)
    assert np.abs(y).max() <= 1.0


def _valid_wav_bytes() -> bytes:
    buf = io.BytesIO()
    sf.write(buf, (np.sin(np.arange(8000) / 5) * 0.5).astype(np.float32), 16000, format="WAV")
    return buf.getvalue()


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(0, 2000), flips=st.lists(st.tuples(st.integers(0, 20000), st.integers(0, 255)),
                                                 max_size=12),
       junk=st.binary(max_size=200), suffix=st.sampled_from([".wav", ".flac", ".ogg", ".bin"]))
def test_fuzz_audio_files(tmp_path_factory, cut, flips, junk, suffix):
    """Mangled audio files: either a clear AudioError naming the file, or finite samples."""
    data = bytearray(_valid_wav_bytes())
    for pos, val in flips:
        if pos < len(data):
            data[pos] = val
    data = bytes(data[: len(data) - cut]) + junk
    path = tmp_path_factory.mktemp("fuzz") / f"x{suffix}"
    path.write_bytes(data)
    try:
        src = FileSource(path, 16000, fast=True)
    except AudioError as e:
        assert str(path) in str(e)
        return
    total = 0
    while not src.ended:
        block = src.read()
        if block is not None:
            assert block.dtype == np.float32 and np.all(np.isfinite(block))
            assert np.all(np.abs(block) <= 1.0 + 1e-6)
            total += len(block)
    src.close()
    assert total <= 16000 * 60


def test_float_file_with_nan_and_inf_is_sanitised_and_counted(tmp_path):
    y = (np.sin(np.arange(32000) / 7) * 0.5).astype(np.float32)
    y[1000:1010] = np.nan
    y[5000] = np.inf
    y[6000] = 7.0
    path = tmp_path / "float.wav"
    sf.write(path, y, 16000, subtype="FLOAT")
    src = FileSource(path, 16000, fast=True)
    out = []
    while not src.ended:
        b = src.read()
        if b is not None:
            out.append(b)
    audio = np.concatenate(out)
    assert np.all(np.isfinite(audio)) and np.abs(audio).max() <= 1.0
    assert src.bad_frames >= 1


@pytest.mark.parametrize("rate, channels, seconds", [(16000, 1, 20.0), (48000, 2, 5.0)])
def test_fast_blocks_are_large_but_bounded(tmp_path, rate, channels, seconds):
    """--fast reads big blocks (8 s of 16 kHz mono), never more than FAST_BLOCK_SAMPLES
    interleaved samples (a 48 kHz stereo file would otherwise cost ~8 MB of peak RSS); the
    samples are libsndfile's own."""
    from aerd.sources import FAST_BLOCK_S, FAST_BLOCK_SAMPLES

    p = tmp_path / "t.wav"
    sf.write(p, tone(rate, seconds, channels=channels), rate, subtype="PCM_16")
    fast = FileSource(p, RATE, fast=True)
    assert fast._block * channels <= FAST_BLOCK_SAMPLES
    if (rate, channels) == (16000, 1):
        assert fast._block == int(FAST_BLOCK_S * rate)
    y = read_all(fast)
    if rate == RATE:   # no resampling: exactly libsndfile's own decode of the whole file
        np.testing.assert_array_equal(y, sf.read(p, dtype="float32")[0])
    else:
        assert abs(len(y) - seconds * RATE) <= 0.01 * seconds * RATE
