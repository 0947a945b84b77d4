"""The training and evaluation tools reject a bad list or number option with argparse's
error naming it (exit 2), before any data is read, and a data directory without RAVDESS
clips with one line naming it (exit 2)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools import bench, evaluate, noise_check, select_hparams, train  # noqa: E402

BAD = [
    (train.main, ["--evaluate", "--fold-alpha", "3,3,x,3,3"], "--fold-alpha",
     "expected a finite number from 0 up, got 'x' (in '3,3,x,3,3')"),
    (train.main, ["--evaluate", "--fold-hidden", "512,256"], "--fold-hidden",
     "expected 5 whole numbers from 1 up (one per outer fold), got 2"),
    (train.main, ["--evaluate", "--fold-hidden4", "512,256,512,256,5.5"], "--fold-hidden4",
     "expected a whole number from 1 up, got '5.5'"),
    (train.main, ["--evaluate", "--fold-hidden", "512,256,0,256,256"], "--fold-hidden",
     "expected a whole number from 1 up, got '0'"),
    (train.main, ["--evaluate", "--fold-alpha4", "1,1,1,-1,1"], "--fold-alpha4",
     "expected a finite number from 0 up, got '-1'"),
    (train.main, ["--evaluate", "--fold-mix4", "4,4,4,4,9"], "--fold-mix4", "bad 4-class mix '9'"),
    (select_hparams.main, ["--alphas", "0.3,,3"], "--alphas",
     "expected a finite number from 0 up, got ''"),
    (select_hparams.main, ["--hidden", "256,0"], "--hidden", "expected a whole number from 1 up"),
    (select_hparams.main, ["--outer", "1,7"], "--outer", "folds are 1 to 5"),
    (select_hparams.main, ["--mix4", "4,4y3"], "--mix4", "bad 4-class mix '4y3'"),
    (noise_check.main, ["--noise-dbfs=-75,loud"], "--noise-dbfs",
     "expected a finite number of dBFS, got 'loud' (in '-75,loud')"),
    (noise_check.main, ["--fold-alpha", "1,2,3"], "--fold-alpha", "expected 5 finite numbers"),
    (noise_check.main, ["--fold-hidden", "0,1,1,1,1"], "--fold-hidden",
     "expected a whole number from 1 up"),
    (evaluate.main, ["--hidden", "256,big"], "--hidden", "expected a whole number from 1 up"),
    (evaluate.main, ["--alpha", "-1"], "--alpha", "expected a finite number from 0 up"),
    (evaluate.main, ["--aug", "-1"], "--aug", "expected a whole number from 0 up, got '-1'"),
    (train.main, ["--hidden", "0"], "--hidden", "expected a whole number from 1 up, got '0'"),
    (train.main, ["--alpha", "-1"], "--alpha", "expected a finite number from 0 up, got '-1'"),
    (train.main, ["--alpha", "inf"], "--alpha", "expected a finite number from 0 up, got 'inf'"),
    (train.main, ["--aug", "-1"], "--aug", "expected a whole number from 0 up, got '-1'"),
    (train.main, ["--seed", "-1"], "--seed",
     "expected a whole number from 0 to 4294967295, got '-1'"),
    (train.main, ["--seed", "4294967296"], "--seed", "expected a whole number from 0 to"),
    (noise_check.main, ["--seed", "-3"], "--seed", "expected a whole number from 0 to"),
    (noise_check.main, ["--noise-dbfs=-75,nan"], "--noise-dbfs",
     "expected a finite number of dBFS, got 'nan'"),
    (noise_check.main, ["--noise-dbfs=inf"], "--noise-dbfs", "expected a finite number of dBFS"),
    (bench.main, ["--models", "default,"], "--models", "an empty model name (in 'default,')"),
]


@pytest.mark.parametrize("main,argv,option,message", BAD,
                         ids=[f"{m.__module__.split('.')[-1]}{a[-2] if len(a) > 1 else a[0]}"
                              for m, a, _, _ in BAD])
def test_bad_list_option_is_named(main, argv, option, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"error: argument {option}: " in err and message in err, err


def test_good_lists_parse():
    from tools.evalkit import number_list
    from tools.mixes import mix_list

    assert number_list(float, 5)("3,3,0.3,3,1") == [3.0, 3.0, 0.3, 3.0, 1.0]
    assert number_list(int)("512") == [512]
    assert mix_list(2)("4x3+8,4") == ["4x3+8", "4"]


@pytest.mark.parametrize("main,argv", [(train.main, []), (train.main, ["--evaluate"]),
                                       (evaluate.main, []), (select_hparams.main, []),
                                       (noise_check.main, [])],
                         ids=["train", "train-evaluate", "evaluate", "select_hparams",
                              "noise_check"])
@pytest.mark.parametrize("exists", [True, False], ids=["empty", "absent"])
def test_missing_data_is_one_line_naming_the_directory(main, argv, exists, tmp_path, capsys):
    data = tmp_path / "ravdess"
    if exists:
        data.mkdir()
    assert main([*argv, "--data", str(data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(data) in err[0] and "--data" in err[0], err


def _fake_ravdess(root: Path, actors, emotions=range(1, 9), content: bytes = b"not audio"):
    """RAVDESS file names (never valid audio) for ``actors`` x ``emotions``."""
    for a in actors:
        d = root / f"Actor_{a:02d}"
        d.mkdir(parents=True)
        for e in emotions:
            (d / f"03-01-{e:02d}-01-01-01-{a:02d}.flac").write_bytes(content)
    return root


@pytest.mark.parametrize("main,argv,emotions,needle", [
    (train.main, ["--only", "seed180"], range(1, 3), "no clips of happy, sad"),
    (train.main, ["--evaluate"], range(1, 9), "actors 1-20 needed"),
    (evaluate.main, [], range(1, 9), "missing [3, 4, 5"),
    (select_hparams.main, [], range(1, 9), "actors 1-20 needed"),
    (noise_check.main, [], range(1, 9), "actors 1-20 needed"),
], ids=["train-emotions", "train-evaluate", "evaluate", "select_hparams", "noise_check"])
def test_incomplete_data_is_one_line_before_any_work(main, argv, emotions, needle, tmp_path,
                                                     capsys):
    data = _fake_ravdess(tmp_path / "ravdess", (1, 2), emotions)
    assert main([*argv, "--data", str(data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(data) in err[0] and needle in err[0], err


def test_an_unreadable_clip_is_one_line_naming_it(tmp_path, capsys):
    """Found while extracting features (train.py without --evaluate needs no fold actors)."""
    from tools import dataset as ds

    data = _fake_ravdess(tmp_path / "ravdess", (1,))
    code = ds.tool_main("train.py", lambda: train.main(
        ["--data", str(data), "--only", "seed180", "--models", str(tmp_path / "out")]))
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "03-01-01-01-01-01-01.flac: not a readable audio file" in err[0], err


@pytest.mark.parametrize("main,argv,needle", [
    (train.main, ["--models", "{file}"], "--models: {file} exists and is not a directory"),
    (train.main, ["--models", "{file}/sub"], "--models: {file} is not a directory"),
    (evaluate.main, ["--json", "{tmp}/nowhere/r.json"], "--json: directory {tmp}/nowhere does not exist"),
    (evaluate.main, ["--json", "{tmp}"], "--json: {tmp} is a directory"),
    (select_hparams.main, ["--json", "{file}/r.json"], "--json: directory {file} does not exist"),
    (evaluate.main, ["--json", ""], "--json: expected a file name, got ''"),
    (train.main, ["--models", ""], "--models: expected a directory name, got ''"),
], ids=["models-file", "models-under-file", "json-no-dir", "json-dir", "select-json", "json-empty",
        "models-empty"])
def test_an_output_that_cannot_be_written_is_refused_before_any_work(main, argv, needle, tmp_path,
                                                                    capsys):
    """Not after minutes of training or evaluation."""
    file = tmp_path / "afile"
    file.write_text("x")
    fill = {"file": file, "tmp": tmp_path}
    with pytest.raises(SystemExit) as e:
        main([a.format(**fill) for a in argv] + ["--data", str(tmp_path / "absent")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert needle.format(**fill) in err, err


@pytest.mark.parametrize("tool,argv,code,needle", [
    ("soak.py", ["--hours", "0"], 2, "argument --hours: expected a positive number, got '0'"),
    ("soak.py", ["--every", "-5"], 2, "argument --every: expected a positive number"),
    ("soak.py", ["--hours", "0.001", "--model", "nosuchmodel"], 1,
     "of audio (exit 2, see above)"),
    ("bench.py", ["--minutes", "0"], 2, "argument --minutes: expected a positive number"),
    ("bench.py", ["--minutes", "0.05", "--models", "nosuchmodel", "--skip-seed",
                  "--latency-seconds", "0"], 1, "failed (exit 2): aerd run: error: nosuchmodel"),
    ("bench.py", ["--out", "/nonexistent-dir/b.json"], 2,
     "argument --out: directory /nonexistent-dir does not exist"),
])
def test_bench_and_soak_refuse_bad_options_in_one_line(tool, argv, code, needle):
    import subprocess

    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, str(root / "tools" / tool), *argv], capture_output=True,
                       text=True, timeout=120, cwd=root)
    assert r.returncode == code, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert needle in last and "Traceback" not in r.stderr, r.stderr


def test_ctrl_c_during_training_is_an_interruption_not_a_result(capsys):
    """scikit-learn's MLP fit catches KeyboardInterrupt and returns a half-trained model; the
    tools' Ctrl-C gets past it: one line, exit 130."""
    import os
    import signal
    import threading

    import numpy as np
    from sklearn.neural_network import MLPClassifier

    from tools import dataset as ds

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(2000, 40)), rng.integers(0, 4, 2000)

    def train_for_long() -> int:
        MLPClassifier(hidden_layer_sizes=(256,), max_iter=100000, tol=0.0,
                      n_iter_no_change=100000).fit(X, y)
        return 0

    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
    assert ds.tool_main("train.py", train_for_long) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["train.py: interrupted"]


def test_actors_21_to_24_are_left_out_with_a_line(tmp_path, capsys):
    """A full RAVDESS copy holds actors 21-24, the speakers this project keeps out so that
    the shipped model can be judged on voices it never heard: training (and the seed
    protocol's random split) would have used them, while the card says they were not."""
    from tools import dataset as ds

    data = _fake_ravdess(tmp_path / "ravdess", (1, 2, 21, 24))
    clips = ds.list_clips(data)
    assert sorted({c.actor for c in clips}) == [1, 2]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "leaving out the 16 clips of actors 21-24" in err[0], err


def test_evaluate_write_needs_the_whole_evaluation(capsys):
    """--lao-only --write wrote nothing (the card needs every protocol), without a word."""
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--lao-only", "--write", "--data", "/nonexistent"])
    assert e.value.code == 2
    assert "--write needs the whole evaluation" in capsys.readouterr().err
