"""The README's example event sequence is what the daemon really publishes: the same command
(with --fast), a real `aerd listen` subscriber, the same lines field for field, times aside."""

from __future__ import annotations

import json
import re
import signal

import pytest

from e2e_helpers import REPO, json_lines, spawn

TIMES = {"ts", "uptime"}


def readme_example() -> tuple[list[str], list[dict]]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    m = re.search(r"An example sequence, as `aerd listen` printed it for `aerd run (.*?)`"
                  r".*?```\n(.*?)```", text, re.S)
    assert m, "README: example sequence not found"
    return m.group(1).split(), [json.loads(line) for line in m.group(2).splitlines()]


def same(got, want, where):
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{where}: fields differ"
        for k, v in want.items():
            if k not in TIMES:
                same(got[k], v, f"{where}.{k}")
    elif isinstance(want, float) and not isinstance(got, bool):
        # the model's float output may differ in the last printed digit on another CPU
        assert got == pytest.approx(want, abs=2e-4), where
    else:
        assert got == want, where


def test_readme_example_sequence_is_what_the_daemon_publishes(tmp_path):
    args, want = readme_example()
    ep = f"ipc://{tmp_path}/readme.sock"
    listener = spawn("listen", "--endpoint", ep, "--timeout", "60", "--count", "100000")
    assert "--wait-subscriber" in args, "README: without it the first events can be missed"
    # the README's command as written, at full speed, on a private socket and state dir
    daemon = spawn("run", *args, "--fast", "--endpoint", ep, "--state-dir", str(tmp_path / "st"))
    d_out, d_err = daemon.communicate(timeout=120)
    assert daemon.returncode == 0, d_out + d_err
    try:
        out, _ = listener.communicate(timeout=2)
    except Exception:
        listener.send_signal(signal.SIGTERM)
        out, _ = listener.communicate(timeout=10)
    got = json_lines(out)
    assert len(got) == len(want), [e.get("topic") for e in got]
    for i, (g, w) in enumerate(zip(got, want)):
        same(g, w, f"README example line {i + 1}")
