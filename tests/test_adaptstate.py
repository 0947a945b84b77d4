"""aerd.adaptstate.AdaptStore: the daemon's adaptation state on disk, with the shipped model.

Round trip, a corrupt or foreign file (a fresh adapter, logged), and a write that fails for
real (the file-size limit of a child process, the way a full disk fails a write): the old
state survives and no temporary file is left behind, every save attempt after another.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from aerd.adaptstate import AdaptStore
from aerd.config import AdaptSettings
from aerd.model import load_model

REPO = Path(__file__).resolve().parent.parent


def _store_and_model(tmp_path):
    model = load_model("default", adapt=True)
    return AdaptStore(tmp_path / "state", AdaptSettings()), model


def _feed(adapter, n, seed=0):
    rng = np.random.default_rng(seed)
    adapter.update(rng.normal(size=(n, adapter.dim)))


def _saved(tmp_path, n):
    """A store, the default model and the path of its state file after ``n`` windows."""
    store, model = _store_and_model(tmp_path)
    adapter = store.load(model)
    _feed(adapter, n)
    store.save(model, adapter)
    return store, model, store.path(model)


def _default_card() -> dict:
    """The shipped default's card, its graphs' paths made absolute (to write it elsewhere)."""
    card = json.loads((REPO / "models" / "default.json").read_text())
    card["onnx"] = str(REPO / "models" / card["onnx"])
    card["adaptation"]["onnx"] = str(REPO / "models" / card["adaptation"]["onnx"])
    return card


def test_save_then_load_restores_the_statistics(tmp_path):
    store, model = _store_and_model(tmp_path)
    adapter = store.load(model)
    assert adapter.n == 0
    _feed(adapter, 25)
    store.save(model, adapter)
    assert [p.name for p in store.directory.iterdir()] == ["adapt-default.json"]
    again = store.load(model)
    assert again.n == 25
    np.testing.assert_array_equal(again.mean, adapter.mean)
    np.testing.assert_array_equal(again.var, adapter.var)


def test_corrupt_or_foreign_state_starts_fresh_and_says_which_file(tmp_path, caplog):
    store, model = _store_and_model(tmp_path)
    store.directory.mkdir()
    path = store.path(model)
    foreign = {"n": 5, "mean": [0.0] * 3, "var": [1.0] * 3}   # another feature length
    for text in ("{not json", json.dumps(foreign), "[]", "[" * 100_000 + "]" * 100_000):
        path.write_text(text, encoding="utf-8")
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="aerd.adaptstate"):
            adapter = store.load(model)
        assert adapter is not None and adapter.n == 0, text[:20]
        assert len(caplog.records) == 1 and str(path) in caplog.records[0].getMessage(), text[:20]


CHILD = textwrap.dedent("""
    import json, logging, resource, signal, sys
    import numpy as np
    from pathlib import Path
    from aerd.adaptstate import AdaptStore
    from aerd.config import AdaptSettings
    from aerd.model import load_model
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")
    model = load_model("default", adapt=True)
    store = AdaptStore(Path(sys.argv[1]), AdaptSettings())
    adapter = store.load(model)
    adapter.update(np.ones((3, adapter.dim)))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)    # an over-limit write fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))
    for _ in range(3):
        store.save(model, adapter)
    print("alive")
""")


def test_a_failed_write_keeps_the_old_state_and_leaves_no_temporary_file(tmp_path):
    store, model = _store_and_model(tmp_path)
    adapter = store.load(model)
    _feed(adapter, 10)
    store.save(model, adapter)
    before = store.path(model).read_bytes()
    assert len(before) > 1024   # the child's limit makes its writes of the same size fail
    r = subprocess.run([sys.executable, "-c", CHILD, str(store.directory)], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1] == "alive"
    warnings = [ln for ln in lines if ln.startswith("WARNING")]
    assert len(warnings) == 3 and all("cannot save adaptation state" in w for w in warnings)
    assert all(str(store.path(model)) in w for w in warnings)
    assert [p.name for p in store.directory.iterdir()] == ["adapt-default.json"]
    assert store.path(model).read_bytes() == before


def test_unchanged_statistics_are_not_written_again(tmp_path):
    """The daemon saves every 5 minutes: a device that hears no speech for days (night, a lost
    microphone) must not rewrite and sync the same file on its SD card each time, after a
    restart neither; new statistics are written."""
    store, model = _store_and_model(tmp_path)
    adapter = store.load(model)
    _feed(adapter, 10)
    store.save(model, adapter)
    path = store.path(model)
    first = path.stat().st_ino
    store.save(model, adapter)
    assert path.stat().st_ino == first, "the same statistics were written again"
    restarted = AdaptStore(store.directory, AdaptSettings())
    again = restarted.load(model)
    restarted.save(model, again)
    assert path.stat().st_ino == first, "a restart wrote the loaded statistics back"
    _feed(again, 1, seed=1)
    restarted.save(model, again)
    assert path.stat().st_ino != first
    assert AdaptStore(store.directory, AdaptSettings()).load(model).n == 11


def test_a_device_that_heard_nothing_writes_no_state_file(tmp_path):
    """A first run that hears no speech (no microphone, an empty room) has nothing to save:
    it wrote a file of fresh statistics at stop although the README says saves happen only
    when the statistics changed."""
    store, model = _store_and_model(tmp_path)
    adapter = store.load(model)
    store.save(model, adapter)
    assert not store.path(model).exists()
    _feed(adapter, 1)
    store.save(model, adapter)
    assert store.path(model).exists()


QUIET_CHILD = textwrap.dedent("""
    import logging, resource, signal, sys
    import numpy as np
    from pathlib import Path
    from aerd.adaptstate import AdaptStore
    from aerd.config import AdaptSettings
    from aerd.model import load_model
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")
    model = load_model("default", adapt=True)
    store = AdaptStore(Path(sys.argv[1]), AdaptSettings())
    adapter = store.load(model)
    for _ in range(5):   # a healthy device: new statistics at every save
        adapter.update(np.ones(adapter.dim))
        store.save(model, adapter)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, hard))   # the disk is full for a while
    for _ in range(20):
        adapter.update(np.ones(adapter.dim))
        store.save(model, adapter)
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    store.save(model, adapter)
    print("alive")
""")


def test_periodic_saves_do_not_fill_the_log(tmp_path):
    """Saves run every 5 minutes for months: a healthy one is an info line the first time
    only; a disk that stays full gives a few warnings and one line saying it goes quiet, not a
    warning every 5 minutes forever; the first save that works again says so."""
    r = subprocess.run([sys.executable, "-c", QUIET_CHILD, str(tmp_path / "state")], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1] == "alive"
    saved = [ln for ln in lines if "adaptation state saved" in ln]
    assert len(saved) == 2 and "again after 20 failed attempts" in saved[1], lines
    warnings = [ln for ln in lines if ln.startswith("WARNING")]
    assert len(warnings) == AdaptStore.LOUD_FAILURES + 1, lines
    assert "keeps failing" in warnings[-1]


LOCKED_CHILD = textwrap.dedent("""
    import logging, sys
    from pathlib import Path
    from aerd.adaptstate import AdaptStore
    from aerd.config import AdaptSettings
    from aerd.model import load_model
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")
    model = load_model("default", adapt=True)
    store = AdaptStore(Path(sys.argv[1]), AdaptSettings())
    adapter = store.load(model)
    adapter.update(adapter.mean + 1)
    store.save(model, adapter)
    print("alive", adapter.n)
""")


def test_a_state_directory_that_may_not_be_searched_is_one_warning(tmp_path):
    """`[service] state_dir` naming a directory this user may not enter (the service's
    /var/lib/aerd, tried by hand): a warning naming the file and fresh statistics, not a
    PermissionError traceback at start. As root, the child runs without the capabilities
    that bypass file permissions."""
    locked = tmp_path / "locked"
    (locked / "state").mkdir(parents=True)
    locked.chmod(0o000)
    cmd = [sys.executable, "-c", LOCKED_CHILD, str(locked / "state")]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root without setpriv: file permissions cannot be tested")
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cmd]
    try:
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    finally:
        locked.chmod(0o700)
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "alive 1", r.stderr[-1500:]
    warnings = [ln for ln in r.stdout.splitlines() if ln.startswith("WARNING")]
    assert len(warnings) == 2, r.stdout   # cannot read it, cannot save it
    assert all("adapt-default.json" in w and "ermission denied" in w for w in warnings)


def test_statistics_saved_for_other_features_are_not_loaded(tmp_path, caplog):
    """A model of the same name whose features changed (an upgrade shipping a retrained
    `default` with another spectral floor; same feature count) must start afresh: the saved
    statistics describe other feature values, and were applied to it for hours of speech."""
    store, model, _ = _saved(tmp_path, 50)
    assert store.load(model).n == 50
    card = _default_card()
    card["features"]["spectral_floor_db"] = -65.0
    (tmp_path / "default.json").write_text(json.dumps(card))
    upgraded = load_model(str(tmp_path / "default.json"), adapt=True)
    assert upgraded.card.name == model.card.name
    with caplog.at_level(logging.WARNING, logger="aerd.adaptstate"):
        assert store.load(upgraded).n == 0
    assert len(caplog.records) == 1 and "other features" in caplog.records[0].getMessage()



def test_a_file_from_before_a_new_feature_parameter_still_loads(tmp_path):
    """A state file written before a feature parameter existed (its key absent) describes
    the features that parameter's card default gives: it loads when the model has that
    default, and is refused when the model uses the new behaviour."""
    store, model, path = _saved(tmp_path, 50)
    state = json.loads(path.read_text())
    spec = state["features"]
    spec.pop("remove_dc"), spec["vad"].pop("min_rise_db")   # as written before they existed
    path.write_text(json.dumps(state))
    old_default = {"remove_dc": False, "min_rise_db": 0.0}
    now = {"remove_dc": model.card.features.remove_dc,
           "min_rise_db": model.card.features.vad.min_rise_db}
    assert store.load(model).n == (50 if now == old_default else 0)
    card = _default_card()
    card["features"]["remove_dc"] = False
    card["features"]["vad"]["min_rise_db"] = 0.0
    (tmp_path / "default.json").write_text(json.dumps(card))
    before = load_model(str(tmp_path / "default.json"), adapt=True)
    assert store.load(before).n == 50


def test_temporary_files_left_by_an_interrupted_save_are_removed_at_load(tmp_path):
    """A kill or power cut between the temporary file's creation and its rename leaves a
    ``.adapt-*`` file; months of such restarts must not pile them up. Young ones may be a
    save in progress of another daemon sharing the directory, and stay."""
    store, model = _store_and_model(tmp_path)
    store.directory.mkdir(parents=True)
    stale, fresh = store.directory / ".adapt-left1", store.directory / ".adapt-inflight"
    for t in (stale, fresh):
        t.write_text("{")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    assert store.load(model) is not None
    assert not stale.exists() and fresh.exists()


@pytest.mark.parametrize("where, value", [
    (("mean", 0), 10 ** 400),              # a number beyond float64 (was an OverflowError)
    (("features", "f0_min"), 0),           # pitch lags of 1/0 Hz (was a ZeroDivisionError)
    (("features", "sample_rate"), 10 ** 400),
])
def test_a_number_beyond_float_or_a_zero_pitch_is_an_unusable_file_not_a_crash(tmp_path, caplog, where, value):
    """Each of these stopped `aerd run` at start with a traceback (and, under systemd, again
    every 5 s), instead of starting afresh like any other unusable state file."""
    store, model, path = _saved(tmp_path, 5)
    state = json.loads(path.read_text())
    state[where[0]][where[1]] = value
    path.write_text(json.dumps(state))
    with caplog.at_level(logging.WARNING, logger="aerd.adaptstate"):
        assert store.load(model).n == 0
    assert len(caplog.records) == 1 and str(path) in caplog.records[0].getMessage()


def test_a_count_beyond_float_in_the_file_does_not_stop_the_daemon_at_the_next_speech(tmp_path):
    """n = 10**400 is a whole number like any other and was loaded; the first speech window
    after it raised OverflowError (1.0 / n) in the daemon's loop, which ended the process, and
    every restart after it loaded the same file again. Such a count now forgets as any count
    beyond max_count does."""
    store, model = _store_and_model(tmp_path)
    adapter = store.load(model)
    _feed(adapter, 5)
    store.save(model, adapter)
    path = store.path(model)
    state = json.loads(path.read_text())
    state["n"] = 10 ** 400
    path.write_text(json.dumps(state))
    old = store.load(model)
    assert old.n == 10 ** 400 and old.ready
    same = store.load(model)
    same.n = old.max_count + 1   # the same statistics, past the memory by one window
    row = np.random.default_rng(3).normal(size=old.dim)
    old.update(row)
    same.update(row)
    np.testing.assert_array_equal(old.mean, same.mean)
    np.testing.assert_array_equal(old.var, same.var)
    np.testing.assert_array_equal(old.transform(row), same.transform(row))
