"""The file source: formats, rates, downmix, pacing, errors, corrupt and fuzzed files
(the stdin source: tests/test_stdin_source.py)."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from aerd.errors import AudioError
from aerd.sources import FileSource

sys.path.insert(0, str(Path(__file__).resolve().parent))
from source_helpers import RATE, peak_hz, read_all, tone  # noqa: E402


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


@pytest.mark.parametrize("rate", [1, 999, 384001])
def test_error_a_rate_no_audio_has(tmp_path, rate):
    """A header claiming 1 Hz made 3 s of samples 13 hours of audio, resampled 16000-fold
    (`aerd classify` ran for hours); the rates refused are those [input] rate refuses."""
    p = tmp_path / "odd.wav"
    sf.write(p, np.zeros(48000, np.float32), rate)
    _assert_audio_error(p, f"{rate} Hz", "1000..384000")


def test_error_an_empty_file_name():
    """`aerd classify ''` said ": is a directory, not an audio file" (the path '' is '.')."""
    with pytest.raises(AudioError, match="^'': an empty file name$"):
        FileSource("", RATE, fast=True)


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


@pytest.mark.parametrize("subtype, channels, seconds, keep", [
    ("PCM_16", 1, 20, 0.6),    # libsndfile: "flac decoder lost sync"
    ("PCM_24", 1, 20, 0.6),
    ("PCM_16", 1, 12, 0.52),   # "Internal psf_fseek() failed": that handle cannot seek again
    ("PCM_16", 2, 12, 0.32),
])
def test_a_damaged_file_delivers_everything_before_the_damage(tmp_path, subtype, channels,
                                                              seconds, keep):
    """A FLAC cut off part-way, read in fast mode's large blocks: the block that meets the
    damage is read again in small pieces, so the audio up to the damage still comes out:
    what libsndfile gives reading the file in 0.05 s pieces, to within one piece."""
    p = tmp_path / "long.flac"
    t = np.arange(seconds * RATE) / RATE
    x = 0.5 * np.sin(2 * np.pi * 220 * t) * np.linspace(0.2, 1, len(t))
    sf.write(p, np.repeat(x[:, None], channels, axis=1).astype(np.float32), RATE, subtype=subtype)
    b = p.read_bytes()
    p.write_bytes(b[: int(len(b) * keep)])
    fast = FileSource(p, RATE, fast=True)
    y = read_all(fast)
    ref, f = [], sf.SoundFile(p)
    try:
        while len(piece := f.read(800, dtype="float32", always_2d=True)):
            ref.append(piece.mean(axis=1, dtype=np.float32))
    except RuntimeError:
        pass
    f.close()
    ref = np.concatenate(ref)
    assert fast.error and "read error after" in fast.error
    assert len(ref) > 3 * RATE
    assert len(ref) - 800 <= len(y) <= len(ref)
    np.testing.assert_allclose(y, ref[: len(y)], atol=1e-6)


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


@pytest.mark.parametrize("rate, warned", [(8000, True), (11025, True), (16000, False),
                                          (44100, False)])
def test_audio_below_the_model_rate_is_warned_about(tmp_path, caplog, rate, warned):
    """8 kHz (telephone) audio lacks the band above 4 kHz the models were trained with, and
    they label it confidently and wrongly: one warning naming the file; none at 16 kHz up."""
    p = tmp_path / f"call {rate}.wav"
    sf.write(p, tone(rate, 0.3), rate)
    with caplog.at_level("WARNING", logger="aerd.sources"):
        FileSource(p, RATE, fast=True).close()
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    if warned:
        assert len(lines) == 1 and str(p) in lines[0] and f"{rate} Hz" in lines[0], lines
    else:
        assert lines == []


def test_mp3_decodes_alike_in_paced_and_fast_blocks(tmp_path):
    """libsndfile decodes MP3 differently when a read ends inside an MPEG frame (0.05 s
    reads of 44.1 kHz speech: glitches of 0.3 to 0.66 of full scale), so `run --input x.mp3`
    heard other audio than `classify` and `--fast`; MP3 is read in whole frames."""
    import soxr

    from e2e_helpers import CLIPS

    y, sr = sf.read(CLIPS[2], dtype="float32")
    p = tmp_path / "speech.mp3"
    sf.write(p, soxr.resample(y, sr, 44100), 44100, format="MP3")
    fast = read_all(FileSource(p, RATE, fast=True))
    paced = FileSource(p, RATE, fast=False, block_s=0.05)
    paced.fast = True   # its small blocks, without waiting for real time
    small = read_all(paced)
    assert len(small) == len(fast) > 3 * RATE
    assert np.abs(small - fast).max() < 0.02
