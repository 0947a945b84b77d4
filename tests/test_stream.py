"""StreamExtractor: chunking never changes the output; windows equal the batch path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aerd.windowstats import extract_window
from aerd.featurespec import FeatureSpec
from aerd.stream import StreamExtractor

SR = 16000
WIN_S, HOP_S = 1.0, 0.25

SPECS = {
    "rich": FeatureSpec(),
    "seed180": FeatureSpec.seed180(),
    "seed180-centered": FeatureSpec.seed180(center=True, hop_length=512),  # non-incremental path
}


@pytest.fixture(scope="module")
def audio(clip):
    """2.3 s of speech: windows end mid-stream and a partial hop remains at the end."""
    return np.array(clip[8000 : 8000 + int(2.3 * SR)])


def run(spec, x, sizes):
    ext = StreamExtractor(spec, WIN_S, HOP_S)
    out, pos, i = [], 0, 0
    while pos < len(x):
        n = sizes[i % len(sizes)]
        out += ext.push(x[pos : pos + n])
        pos += n
        i += 1
    return out + ext.flush()


def same(a, b):
    assert len(a) == len(b)
    for wa, wb in zip(a, b):
        assert (wa.index, wa.start, wa.end, wa.speech) == (wb.index, wb.start, wb.end, wb.speech)
        assert np.array_equal(wa.features, wb.features)


_cache: dict[str, list] = {}


def reference(name, x):
    if name not in _cache:
        _cache[name] = run(SPECS[name], x, [len(x)])
    return _cache[name]


@pytest.mark.parametrize("name", SPECS)
def test_chunk_sizes_bit_identical(name, audio):
    ref = reference(name, audio)
    assert len(ref) == (len(audio) - SR) // 4000 + 1
    for sizes in ([1], [160], [1000], [16000], [7, 4093, 1, 12001]):
        same(run(SPECS[name], audio, sizes), ref)


@pytest.mark.parametrize("name", SPECS)
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(1, 9000), min_size=1, max_size=12))
def test_random_chunking_bit_identical(name, audio, sizes):
    same(run(SPECS[name], audio, sizes), reference(name, audio))


@pytest.mark.parametrize("name", SPECS)
def test_windows_equal_batch_and_lie_on_grid(name, audio):
    spec = SPECS[name]
    win, hop = int(WIN_S * SR), int(HOP_S * SR)
    wins = reference(name, audio)
    assert [w.index for w in wins] == list(range(len(wins)))
    for w in wins:
        k = w.index
        assert w.start == k * hop / SR and w.end == (k * hop + win) / SR
        feats, speech = extract_window(audio[k * hop : k * hop + win], spec)
        np.testing.assert_allclose(w.features, feats, rtol=1e-6, atol=1e-6 * np.abs(feats).max())
        assert w.speech == pytest.approx(speech)
        assert w.features.shape == (spec.n_features,)


@pytest.mark.parametrize("name", SPECS)
def test_short_stream_yields_one_window_from_flush(name, audio):
    spec = SPECS[name]
    ext = StreamExtractor(spec, 2.0, 0.5, min_audio_s=1.0)
    x = audio[: int(1.5 * SR)]
    assert ext.push(x[:9999]) == [] and ext.push(x[9999:]) == []
    out = ext.flush()
    assert len(out) == 1
    w = out[0]
    assert (w.index, w.start, w.end) == (0, 0.0, 1.5)
    feats, speech = extract_window(x, spec)
    np.testing.assert_allclose(w.features, feats, rtol=1e-6, atol=1e-6 * np.abs(feats).max())
    assert w.speech == pytest.approx(speech)
    assert ext.flush() == []   # only once


@pytest.mark.parametrize("name", SPECS)
def test_stream_below_min_audio_yields_nothing(name, audio):
    ext = StreamExtractor(SPECS[name], 2.0, 0.5, min_audio_s=1.0)
    assert ext.push(audio[: SR - 1]) == []
    assert ext.flush() == []


@pytest.mark.parametrize("n", [16000, 16001, 19999, 20000, 36000])
def test_window_count_for_long_streams(n, audio):
    x = np.resize(audio, n)
    ext = StreamExtractor(FeatureSpec.seed180(), WIN_S, HOP_S)
    out = ext.push(x)
    assert len(out) == (n - SR) // 4000 + 1
    tail = n - (out[-1].end * SR)
    flushed = ext.flush()
    if tail >= 0.25 * SR:   # a tail of >= tail_s after the last window gets one more window
        assert len(flushed) == 1 and flushed[0].end * SR == n and flushed[0].index == len(out)
        start = int(round(flushed[0].start * SR))
        feats, _ = extract_window(x[start:], FeatureSpec.seed180())
        # the tail window's frames lie on the stream's grid, so compare loosely with the batch
        assert np.corrcoef(feats, flushed[0].features)[0, 1] > 0.99
    else:
        assert flushed == []
    assert ext.flush() == []


def test_hop_longer_than_window_skips_audio(audio):
    """Windows with gaps between them still lie on the k*hop grid and match the batch path."""
    spec = FeatureSpec()
    ext = StreamExtractor(spec, 0.5, 0.75)
    out = []
    for i in range(0, len(audio), 3001):
        out += ext.push(audio[i : i + 3001])
    assert len(out) == (len(audio) - 8000) // 12000 + 1
    for w in out:
        s = w.index * 12000
        assert (w.start, w.end) == (s / SR, (s + 8000) / SR)
        feats, _ = extract_window(audio[s : s + 8000], spec)
        np.testing.assert_allclose(w.features, feats, rtol=1e-6, atol=1e-6 * np.abs(feats).max())


@pytest.mark.parametrize("name", ["rich", "seed180"])
def test_long_chunks_many_windows_pending(name, audio):
    """A chunk completing more windows than the row ring holds ahead (PENDING) gives the
    same windows as small chunks, and each still equals the batch path."""
    from aerd.stream import PENDING

    spec = SPECS[name]
    x = np.resize(audio, int((WIN_S + (2 * PENDING + 3) * HOP_S) * SR) + 1234)
    whole = run(spec, x, [len(x)])
    assert len(whole) > 2 * PENDING
    same(run(spec, x, [4000 * PENDING + 17, 999]), whole)
    same(run(spec, x, [333]), whole)
    win, hop = int(WIN_S * SR), int(HOP_S * SR)
    for w in whole[PENDING - 1 :: PENDING]:
        k = w.index
        feats, _ = extract_window(x[k * hop : k * hop + win], spec)
        np.testing.assert_allclose(w.features, feats, rtol=1e-6, atol=1e-6 * np.abs(feats).max())


@pytest.mark.parametrize("name", ["rich", "seed180"])
def test_every_window_length_around_the_row_ring_matches_the_batch_path(name, audio):
    """Window lengths one frame apart, as many as a hop holds frames: every way the row ring
    can fill up before it moves the last window's rows to its front is met, lengths that fill
    it to exactly one row short among them (the lengths above all left rows to spare, and an
    off-by-one in that bound passed the suite)."""
    spec = SPECS[name]
    x = np.resize(audio, 12 * SR)   # (the ring fills twice: once after the first window)
    per_hop = int(HOP_S * SR) // spec.hop_length
    for j in range(per_hop):
        win = int(WIN_S * SR) + j * spec.hop_length
        ext = StreamExtractor(spec, win / SR, HOP_S)
        got = [w for i in range(0, len(x), 333) for w in ext.push(x[i : i + 333])]
        assert len(got) == (len(x) - win) // int(HOP_S * SR) + 1
        for w in got:
            s = w.index * int(HOP_S * SR)
            feats, speech = extract_window(x[s : s + win], spec)
            np.testing.assert_allclose(w.features, feats, rtol=1e-5,
                                       atol=1e-5 * np.abs(feats).max(), err_msg=f"{win}: {w.index}")
            assert w.speech == pytest.approx(speech)


@pytest.mark.parametrize("name", SPECS)
def test_a_stream_of_exactly_min_audio_s_yields_its_window(name, audio):
    """"at least min_audio_s": a 1.0 s clip with min_audio_s 1.0 gets scored."""
    ext = StreamExtractor(SPECS[name], 2.0, 0.5, min_audio_s=1.0)
    assert ext.push(audio[:SR]) == []
    out = ext.flush()
    assert len(out) == 1 and (out[0].start, out[0].end) == (0.0, 1.0)


def test_a_tail_of_exactly_tail_s_gets_one_more_window(audio):
    """"if at least tail_s of audio came after the last window": the tail window at exactly
    tail_s (reachable when tail_s is not a whole hop, as the shipped cards' 0.25 s of 0.5 s)."""
    for extra, windows in ((4000, 1), (3999, 0)):
        ext = StreamExtractor(FeatureSpec(), 1.0, 0.5, tail_s=0.25)
        out = ext.push(audio[: SR + extra])
        assert len(out) == 1 and out[0].end == 1.0
        tail = ext.flush()
        assert len(tail) == windows, extra
        if windows:
            assert tail[0].end * SR == SR + extra and tail[0].index == 1

