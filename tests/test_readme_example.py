"""The README's example event sequence is what the daemon really publishes: the same command
(with --fast), a real `aerd listen` subscriber, the same lines field for field, times aside."""

from __future__ import annotations

import json
import re
import signal
from dataclasses import fields

import pytest

from aerd.events import EmotionEvent, StatusEvent

from e2e_helpers import REPO, json_lines, spawn

VARYING = {"ts", "uptime", "run"}
"""Fields whose values differ from run to run (times, the random run id): compared as present."""


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
            if k not in VARYING:
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
    assert len({e["run"] for e in got}) == 1 == len({e["run"] for e in want})   # one daemon run
    for i, (g, w) in enumerate(zip(got, want)):
        same(g, w, f"README example line {i + 1}")


README_TYPES = {"int": "int", "float": "float", "str": "str", "bool": "bool",
                "object": "dict[str, float]"}


def readme_fields(topic: str) -> dict[str, str]:
    """The README's table of ``topic``'s fields: name -> type, as the code spells types."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Event protocol"):text.index("## How it works")]
    table = re.search(rf"^`{topic}` —.*?\n\n((?:\|[^\n]*\n)+)", section, re.S | re.M)
    assert table, f"README: no table of {topic} fields"
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.group(1).splitlines()]
    assert rows[0][:2] == ["field", "type"], f"README: the {topic} table has no type column"
    got = {}
    for row in rows[2:]:
        names = re.findall(r"`(\w+)`", row[0])
        types = [README_TYPES.get(t.strip(), t) for t in row[1].split(",")]
        for name, typ in zip(names, types * len(names) if len(types) == 1 else types):
            got[name] = typ
    return got


@pytest.mark.parametrize("cls", [EmotionEvent, StatusEvent])
def test_the_readme_tables_name_every_field_with_its_type(cls):
    """Every field an event carries, in the README with the type the code sends and checks
    (the status table had no types, and left out v, seq, ts and device_id)."""
    want = {"v": "int", **{f.name: f.type for f in fields(cls)}}
    assert readme_fields(cls.topic.decode()) == want
