"""aerd.filterbanks reproduces librosa / scipy exactly (they are not used at run time)."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import scipy.fft
import scipy.signal

from aerd.filterbanks import chroma_filterbank, dct_matrix, hann_window, mel_filterbank, vtlp_warp


@pytest.mark.parametrize("sr, n_fft, n_mels, fmin, fmax", [
    (16000, 2048, 128, 0.0, None),
    (16000, 1024, 40, 60.0, 8000.0),
    (22050, 512, 64, 20.0, 7600.0),
    (8000, 256, 26, 300.0, 3400.0),
    (44100, 4096, 96, 1000.0, None),   # fmin on the linear/log break of Slaney's scale
    (16000, 1000, 30, 0.0, 4000.0),    # odd-sized rfft grid
])
def test_mel_matches_librosa(sr, n_fft, n_mels, fmin, fmax):
    ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    assert ours.shape == ref.shape == (n_mels, 1 + n_fft // 2)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())


@pytest.mark.parametrize("alpha, step", [(1.5, 2), (0.75, 4)])
def test_vtlp_warped_filters_hear_a_tone_where_the_plain_ones_hear_it_alpha_times_higher(alpha, step):
    """Training's VTLP copies: with ``warp`` alpha, the filters answer a tone at f as the
    plain ones answer a tone at alpha * f (below the warp's boundary); above it the warp goes
    on to Nyquist, which stays where it is."""
    sr, n_fft = 16000, 512
    plain = mel_filterbank(sr, n_fft, 40)
    warped = mel_filterbank(sr, n_fft, 40, warp=alpha)
    f = np.fft.rfftfreq(n_fft, 1.0 / sr)
    below = [k for k in range(0, len(f), step) if f[k] <= 0.8 * (sr / 2) * min(alpha, 1) / alpha]
    assert len(below) > 40
    for k in below:   # alpha * f[k] is the bin alpha * k exactly
        np.testing.assert_allclose(warped[:, k], plain[:, round(alpha * k)], atol=1e-12)
    g = vtlp_warp(f, alpha, sr / 2)
    assert g[-1] == pytest.approx(sr / 2) and np.all(np.diff(g) > 0)
    assert not np.allclose(warped, plain)
    np.testing.assert_array_equal(mel_filterbank(sr, n_fft, 40, warp=1.0), plain)


@pytest.mark.parametrize("sr, n_fft, n_chroma", [
    (16000, 2048, 12), (22050, 2048, 12), (16000, 1024, 24), (44100, 4096, 12), (8000, 512, 36),
])
def test_chroma_matches_librosa(sr, n_fft, n_chroma):
    ours = chroma_filterbank(sr, n_fft, n_chroma, 0.0)
    ref = librosa.filters.chroma(sr=sr, n_fft=n_fft, n_chroma=n_chroma, tuning=0.0)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7)


def test_chroma_tuning_matches_librosa():
    ours = chroma_filterbank(16000, 2048, 12, tuning=0.3)
    ref = librosa.filters.chroma(sr=16000, n_fft=2048, tuning=0.3)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("n_out, n_in", [(40, 128), (20, 40), (13, 26), (1, 7), (64, 64)])
def test_dct_matches_scipy_ortho(n_out, n_in):
    rng = np.random.default_rng(n_in)
    x = rng.standard_normal((5, n_in))
    ref = scipy.fft.dct(x, type=2, norm="ortho", axis=1)[:, :n_out]
    np.testing.assert_allclose(x @ dct_matrix(n_out, n_in).T, ref, rtol=1e-10, atol=1e-10)
    # orthonormal rows
    full = dct_matrix(n_in, n_in)
    np.testing.assert_allclose(full @ full.T, np.eye(n_in), atol=1e-10)


@pytest.mark.parametrize("win_length, n_fft", [(512, 1024), (2048, 2048), (400, 512), (401, 1024), (7, 8)])
def test_hann_matches_scipy_and_librosa_padding(win_length, n_fft):
    w = hann_window(win_length, n_fft)
    ref = librosa.util.pad_center(scipy.signal.get_window("hann", win_length, fftbins=True), size=n_fft)
    assert w.shape == (n_fft,)
    np.testing.assert_allclose(w, ref, atol=1e-12)
