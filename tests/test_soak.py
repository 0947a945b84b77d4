"""Hours of audio through the real daemon as fast as it goes: memory stays flat."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from soak import soak  # noqa: E402


def _growth(curve):
    warm = [r for t, r in curve if t >= 600]
    return warm[-1] - min(warm), max(warm) - min(warm)


def test_one_hour_rss_flat():
    curve = soak(hours=1.0, every_s=60.0)
    growth, spread = _growth(curve)
    print(f"\nRSS over 1 h of audio: {curve[0][1]:.1f} -> {curve[-1][1]:.1f} MB; after warm-up "
          f"growth {growth:+.2f} MB, spread {spread:.2f} MB")
    assert growth < 1.5 and spread < 3.0


@pytest.mark.slow
def test_eight_hours_rss_flat():
    curve = soak(hours=8.0, every_s=300.0)
    growth, spread = _growth(curve)
    assert growth < 1.5 and spread < 3.0
