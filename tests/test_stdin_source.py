"""The stdin source: raw s16le PCM on a real pipe or a byte stream: chunking, odd trailing
bytes, downmix, rate conversion, read timeouts, and arbitrary bytes (fuzzed)."""

from __future__ import annotations

import io
import logging
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aerd.stdin import StdinSource

sys.path.insert(0, str(Path(__file__).resolve().parent))
from source_helpers import RATE, peak_hz, read_all, tone  # noqa: E402


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


def test_a_producer_that_stops_delivering_is_reported_stalled_until_data_comes(caplog):
    caplog.set_level(logging.INFO, "aerd.stdin")
    r, w = os.pipe()
    with os.fdopen(r, "rb", buffering=0) as rf:
        src = StdinSource(rf, in_rate=RATE, rate=RATE, stall_s=1.0)
        assert src.read(timeout=0.1) is None and src.state == "ok"   # a short pause is fine
        t = time.monotonic()
        while src.state == "ok" and time.monotonic() - t < 5:
            assert src.read(timeout=0.1) is None
        assert src.state == "stalled" and "1 s" in src.detail and not src.ended
        assert src.read(timeout=0.1) is None and src.state == "stalled"
        os.write(w, s16(tone(RATE, 0.1)))
        assert len(src.read(timeout=1.0)) and (src.state, src.detail) == ("ok", "stdin")
        os.close(w)
        while not src.ended:
            src.read(timeout=1.0)
        assert src.state == "ended"
    said = [r.getMessage() for r in caplog.records if r.name == "aerd.stdin"]
    assert len([m for m in said if "no data on stdin" in m]) == 1, said   # once, not per read
    assert any("data again" in m for m in said), said


def test_a_producer_that_delivers_with_pauses_shorter_than_stall_s_is_never_stalled():
    """``stall_s`` counts from the last data, not from the start: a producer that sends a
    block every 0.25 s for 2.5 s, read with timeouts that expire between the blocks, stays
    ``ok`` throughout with stall_s 1 s."""
    r, w = os.pipe()
    with os.fdopen(r, "rb", buffering=0) as rf:
        src = StdinSource(rf, in_rate=RATE, rate=RATE, stall_s=1.0)
        block = s16(tone(RATE, 0.01))
        states, t_next, t_end = set(), time.monotonic(), time.monotonic() + 2.5
        while time.monotonic() < t_end:
            if time.monotonic() >= t_next:
                os.write(w, block)
                t_next += 0.25
            src.read(timeout=0.05)
            states.add(src.state)
        os.close(w)
    assert states == {"ok"}


def test_a_read_error_on_stdin_ends_the_input_and_says_so_in_the_status():
    """An OSError from the read (EIO; here a reset connection: stdin a socket, as systemd's
    StandardInput=socket gives, whose peer closed with data unread) ends the input as a
    damaged file does: state ``ended``, the error in ``detail`` for the status events."""
    import socket

    ours, peer = socket.socketpair()
    ours.sendall(b"x")
    peer.close()   # with our byte unread: the connection is reset
    with ours:
        src = StdinSource(ours, in_rate=RATE, rate=RATE)
        y = src.read(timeout=1.0)
        assert y is not None and len(y) == 0 and src.ended
        assert src.error.startswith("read error (") and "reset" in src.error.lower()
        assert (src.state, src.detail) == ("ended", src.error)
        assert src.read(0.01) is None


def test_a_producer_that_keeps_stalling_is_logged_a_few_times_then_quietly(caplog):
    """A producer that sends in bursts with pauses over ``stall_s`` between them logged a
    warning and an info line per burst for ever (measured: 14.7 lines a minute with 2 s
    bursts and 7 s pauses, a flood in journald over months). Now: the first LOUD_STALLS
    stalls, one line saying it goes quiet, then debug lines; the status still says
    ``stalled`` every time, and steady data for ``healthy_s`` makes the next stall loud."""
    caplog.set_level(logging.DEBUG, "aerd.stdin")
    r, w = os.pipe()
    with os.fdopen(r, "rb", buffering=0) as rf:
        src = StdinSource(rf, in_rate=RATE, rate=RATE, stall_s=0.1, healthy_s=0.6)

        def stall_then_burst() -> None:
            t = time.monotonic()
            while src.state == "ok" and time.monotonic() - t < 5:
                assert src.read(timeout=0.05) is None
            assert src.state == "stalled"
            os.write(w, s16(tone(RATE, 0.01)))
            assert len(src.read(timeout=1.0)) and src.state == "ok"

        for _ in range(StdinSource.LOUD_STALLS + 5):
            stall_then_burst()
        loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
        assert len([m for m in loud if "no data on stdin" in m]) == StdinSource.LOUD_STALLS
        assert len([m for m in loud if "data again" in m]) == StdinSource.LOUD_STALLS
        assert len([m for m in loud if "keeps stalling" in m]) == 1, loud
        quiet = [r for r in caplog.records if r.levelno == logging.DEBUG]
        assert len([r for r in quiet if "no data on stdin" in r.getMessage()]) == 5
        caplog.clear()
        t = time.monotonic()   # steady data (a block every 50 ms) for longer than healthy_s
        while time.monotonic() - t < 0.8:
            os.write(w, s16(tone(RATE, 0.05)))
            assert len(src.read(timeout=1.0)) and src.state == "ok"
            time.sleep(0.05)
        stall_then_burst()
        os.close(w)
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert any("steady again after 8 stalls" in m for m in loud), loud
    assert len([m for m in loud if "no data on stdin" in m]) == 1, loud


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


def test_stdin_below_the_model_rate_is_warned_about(caplog):
    with caplog.at_level("WARNING", logger="aerd.sources"):
        StdinSource(io.BytesIO(b""), 16000, 16000)
        assert not caplog.records
        StdinSource(io.BytesIO(b""), 8000, 16000)
    assert len(caplog.records) == 1 and "stdin: 8000 Hz" in caplog.records[0].getMessage()


# -- a WAV header at the start (arecord writes one unless given -t raw) --------------------

def wav_bytes(x: np.ndarray, rate: int, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, x, rate, subtype=subtype, format=fmt)
    return buf.getvalue()


def test_a_wav_header_of_the_given_format_is_skipped_not_read_as_samples():
    """Its 44 bytes were 22 samples of noise in front of the audio (more with other chunks)."""
    x = tone(RATE, 0.25, amp=0.3)
    for payload in (wav_bytes(x, RATE), wav_bytes(x, RATE, fmt="WAVEX")):   # (EXTENSIBLE too)
        src, th, rf = pipe_source(payload, lambda i: 1 if i < 100 else 501, in_rate=RATE,
                                  rate=RATE, block_s=0.01)   # the header arrives byte by byte
        y = read_all(src, timeout=2.0)
        th.join(5)
        rf.close()
        assert len(y) == len(x) and src.error is None and src.bad_frames == 0
        np.testing.assert_allclose(y, x, atol=1 / 32768 + 1e-7)


@pytest.mark.parametrize("rate, channels, subtype, needle", [
    (44100, 2, "PCM_16", "44100 Hz, 2 channel(s), 16-bit PCM, not 16000 Hz, 1 channel(s): "
                         "give --rate 44100 --channels 2"),
    (RATE, 2, "PCM_16", "16000 Hz, 2 channel(s), 16-bit PCM, not 16000 Hz, 1 channel(s): "
                        "give --rate 16000 --channels 2"),   # (the rate right, the channels not)
    (RATE, 1, "FLOAT", "16000 Hz, 1 channel(s), 32-bit float; --input - reads 16-bit PCM"),
    (RATE, 1, "PCM_24", "24-bit PCM; --input - reads 16-bit PCM"),
])
def test_a_wav_header_of_another_format_ends_the_input_saying_what_to_give(rate, channels,
                                                                         subtype, needle):
    """Read as s16le PCM at --rate and --channels, it became noise at the wrong speed, without
    a word (a 4 s clip of 44.1 kHz stereo gave 22.6 s of audio and 34 emotion events)."""
    payload = wav_bytes(tone(rate, 0.5, channels=channels), rate, subtype)
    src = StdinSource(io.BytesIO(payload), in_rate=RATE, rate=RATE, block_s=0.01)
    y = read_all(src, timeout=0)
    assert len(y) == 0 and src.state == "ended"
    assert src.error.startswith("the input is a WAV stream of ") and needle in src.error
    assert src.detail == src.error


@pytest.mark.parametrize("chunks, needle", [
    (b"data\x00\x01\x00\x00", "without a format chunk"),
    (b"fmt \x08\x00\x00\x00" + bytes(8) + b"data\x00\x00\x00\x00", "8-byte format chunk"),
    (b"LIST\xa0\x86\x01\x00" + bytes(100000), "do not start within 65536 bytes"),
])
def test_a_broken_wav_header_ends_the_input_with_one_line(chunks, needle):
    data = b"RIFF\xff\xff\xff\xffWAVE" + chunks + bytes(3200)
    src = StdinSource(io.BytesIO(data), in_rate=RATE, rate=RATE, block_s=0.01)
    assert len(read_all(src, timeout=0)) == 0
    assert src.error.startswith("a WAV stream") and needle in src.error


def test_a_chunk_of_odd_size_before_the_samples_is_skipped_with_its_pad_byte():
    """RIFF pads a chunk of odd size to an even length: a LIST chunk of 5 bytes between the
    format and the samples takes 6, and the samples start right after the pad byte."""
    import struct

    x = tone(RATE, 0.25, amp=0.3)
    wav = wav_bytes(x, RATE)
    assert wav[36:40] == b"data"   # soundfile's 44-byte header: RIFF, fmt (16), data
    tags = b"LIST" + struct.pack("<I", 5) + b"INFOx\x00"
    payload = bytearray(wav[:36] + tags + wav[36:])
    payload[4:8] = struct.pack("<I", len(payload) - 8)
    for step in (1, 7, 4096):
        src, th, rf = pipe_source(bytes(payload), lambda i: step, in_rate=RATE, rate=RATE,
                                  block_s=0.01)
        y = read_all(src, timeout=2.0)
        th.join(5)
        rf.close()
        assert src.error is None and len(y) == len(x), step
        np.testing.assert_allclose(y, x, atol=1 / 32768 + 1e-7)


def test_a_wav_header_that_comes_alone_is_not_the_end_of_the_input():
    """arecord writes its header, then the audio once the device delivers: a read that got
    the header and nothing more ended the input (`end of input`, no audio, exit 0)."""
    x = tone(RATE, 0.25, amp=0.3)
    payload = wav_bytes(x, RATE)
    r, w = os.pipe()
    with os.fdopen(r, "rb", buffering=0) as rf:
        src = StdinSource(rf, in_rate=RATE, rate=RATE, block_s=0.01)
        os.write(w, payload[:44])   # the header alone (its samples start at byte 44)
        first = src.read(2.0)
        assert not src.ended and src.state == "ok", src.detail
        os.write(w, payload[44:])
        os.close(w)
        y = read_all(src, timeout=2.0)
    assert first is not None and len(first) == 0
    assert len(y) == len(x) and src.error is None
    np.testing.assert_allclose(y, x, atol=1 / 32768 + 1e-7)


def test_an_input_that_ends_inside_a_wav_header_says_so():
    """Its bytes were read as samples (15 of noise from 30 bytes of header), `end of input`."""
    header = wav_bytes(tone(RATE, 0.25), RATE)[:30]
    src = StdinSource(io.BytesIO(header), in_rate=RATE, rate=RATE, block_s=0.01)
    assert len(read_all(src, timeout=0)) == 0
    assert src.error == "the input ended inside its WAV header (30 bytes)"
    assert src.detail == src.error


def test_raw_pcm_that_starts_like_riff_is_read_as_samples():
    """Raw PCM whose first sample bytes spell 'RI' or 'RIFF' (not followed by 'WAVE') is PCM."""
    for data in (b"RI", b"RIFF", b"RIFF" + bytes(4) + b"WAVX" + bytes(20)):
        src = StdinSource(io.BytesIO(data), in_rate=RATE, rate=RATE, block_s=0.01)
        y = read_all(src, timeout=0)
        assert len(y) == len(data) // 2 and src.error is None, data


def test_chunks_after_a_wav_streams_samples_are_not_read_as_audio(caplog):
    """A WAV file piped in (`cat clip.wav | aerd run --input -`) may carry chunks after its
    samples (a LIST chunk of tags): read as samples they were a burst of noise at the end. The
    data chunk's size now bounds the samples; a writer's placeholder size (a stream of unknown
    length: arecord 0x7ffff000, ffmpeg 0xffffffff, or 0) still reads to the end."""
    import struct

    x = tone(RATE, 0.25, amp=0.3)
    wav = wav_bytes(x, RATE)
    tags = b"LIST" + struct.pack("<I", 26) + b"INFOISFT" + struct.pack("<I", 14) + b"aerd tests\x00\x00\x00\x00"
    tail = tags + bytes(3)   # (odd bytes too: not frames, not warned about as a partial frame)
    for block_s in (0.01, 1.0):   # the tail in its own reads, or in the samples' read
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="aerd.wavstream"):
            src, th, rf = pipe_source(wav + tail, lambda i: 700, in_rate=RATE, rate=RATE,
                                      block_s=block_s)
            y = read_all(src, timeout=2.0)
            th.join(5)
            rf.close()
        assert len(y) == len(x) and src.bad_frames == 0 and src.error is None
        np.testing.assert_allclose(y, x, atol=1 / 32768 + 1e-7)
        assert [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()] == [
            "stdin: skipped a WAV header (16000 Hz, 1 channel(s), 16-bit PCM)",
            f"stdin: skipped {len(tail)} bytes of WAV chunks after the samples (not audio)"]
    for size in (0, 0x7FFFF000, 0xFFFFFFFF):   # placeholders: everything after is samples
        head = bytearray(wav[:44])
        head[40:44] = struct.pack("<I", size)
        more = s16(tone(RATE, 0.1, amp=0.2))
        src = StdinSource(io.BytesIO(bytes(head) + wav[44:] + more), in_rate=RATE, rate=RATE,
                          block_s=0.01)
        assert len(read_all(src, timeout=0)) == len(x) + len(more) // 2, hex(size)


def test_wav_streams_one_after_another_are_all_read():
    """`cat a.wav b.wav | aerd run --input -`: the second stream's samples were dropped as
    chunks after the first one's (or, before the data size bounded the samples, its header
    was 22 samples of noise); each stream's header is checked, its samples read, the chunks
    between skipped."""
    import struct

    a, b = tone(RATE, 0.25, amp=0.3), tone(RATE, 0.4, amp=0.2)
    tags = b"LIST" + struct.pack("<I", 5) + b"INFOx\x00"   # (odd size: a pad byte)
    payload = wav_bytes(a, RATE) + tags + wav_bytes(b, RATE) + wav_bytes(a, RATE)
    for step in (1, 7, 700, 1 << 20):
        src, th, rf = pipe_source(payload, lambda i: step, in_rate=RATE, rate=RATE,
                                  block_s=0.01)
        y = read_all(src, timeout=2.0)
        th.join(5)
        rf.close()
        assert src.error is None and len(y) == 2 * len(a) + len(b), step
        np.testing.assert_allclose(y, np.concatenate([a, b, a]), atol=1 / 32768 + 1e-7)
    other = wav_bytes(a, RATE) + wav_bytes(tone(44100, 0.2), 44100)   # a second of another format
    src = StdinSource(io.BytesIO(other), in_rate=RATE, rate=RATE, block_s=0.01)
    assert len(read_all(src, timeout=0)) == len(a) and src.state == "ended"
    assert "44100 Hz, 1 channel(s), 16-bit PCM, not 16000 Hz" in src.error


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 900), st.integers(0, 3), st.booleans()), min_size=1,
                max_size=4),
       st.lists(st.integers(1, 600), min_size=1, max_size=8))
def test_wav_framing_is_the_same_whatever_the_reads(streams, cuts):
    """WAV streams one after another, each with 0..3 LIST chunks after its samples (odd sizes
    too) and a placeholder or a true data size: the samples that come out are the streams'
    samples, whatever the sizes of the reads the bytes arrive in. (A data size of 0 is taken
    for a placeholder, so every stream here has samples.)"""
    import struct

    from aerd.wavstream import WavSplitter

    payload, want = b"", []
    for k, (n, lists, placeholder) in enumerate(streams):
        pcm = np.arange(k * 1000, k * 1000 + n, dtype="<i2").tobytes()
        head = bytearray(wav_bytes(np.zeros(1, np.float32), RATE)[:44])
        head[40:44] = struct.pack("<I", 0x7FFFF000 if placeholder else len(pcm))
        chunks = b"".join(b"LIST" + struct.pack("<I", 3 + j) + bytes(3 + j) + bytes((3 + j) & 1)
                          for j in range(lists))
        payload += bytes(head) + pcm + (b"" if placeholder else chunks)
        want.append(pcm)
        if placeholder:   # a stream of unknown length: everything after it is its samples
            break
    splitter, got, pos, i = WavSplitter(RATE, 1), [], 0, 0
    while pos < len(payload):
        step = cuts[i % len(cuts)]
        got.append(splitter.feed(payload[pos : pos + step]))
        pos, i = pos + step, i + 1
    got.append(splitter.end())
    assert b"".join(got) == b"".join(want)
