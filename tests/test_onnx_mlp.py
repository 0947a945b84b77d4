"""The compacted MLP graph (tools/onnx_mlp.py) gives scikit-learn's probabilities."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools import train as tr  # noqa: E402
from tools.evalkit import onnx_predictor  # noqa: E402
from tools.onnx_mlp import GraphShapeError, compact_mlp  # noqa: E402


def _data(n=300, d=24, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    # features on very different scales and offsets, so a wrong scaler fold would show
    X = rng.normal(size=(n, d)) * rng.uniform(0.01, 50, d) + rng.uniform(-100, 100, d)
    X[:, : classes] += 3 * np.eye(classes)[y] * X[:, :classes].std(axis=0)
    return X.astype(np.float32), y


@pytest.mark.parametrize("hidden", [(16,), (12, 7)])
def test_compact_graph_matches_sklearn(hidden):
    X, y = _data()
    pipe = tr.fit(tr.make_pipeline(dict(hidden_layer_sizes=hidden, alpha=0.1, max_iter=80)), X, y)
    blob = tr.export_onnx(pipe, X.shape[1])
    import onnx

    g = onnx.load_from_string(blob).graph
    assert [n.op_type for n in g.node] == ["Gemm", "Relu"] * len(hidden) + ["Gemm", "Softmax"]
    assert [o.name for o in g.output] == ["probabilities"]
    p = onnx_predictor(blob)(X)
    ref = pipe.predict_proba(X)
    assert p.shape == ref.shape
    assert np.max(np.abs(p - ref)) <= 1e-5
    assert (p.argmax(axis=1) == ref.argmax(axis=1)).mean() >= 0.99


def test_unsupported_graph_is_refused():
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    X, y = _data(d=10)
    pipe = tr.fit(tr.make_pipeline(dict(hidden_layer_sizes=(6,), activation="tanh", max_iter=20)), X, y)
    onx = convert_sklearn(pipe, initial_types=[("features", FloatTensorType([None, 10]))],
                          options={id(pipe.steps[-1][1]): {"zipmap": False}}, target_opset=17)
    with pytest.raises(GraphShapeError, match="Relu"):
        compact_mlp(onx)


def test_unfolded_scaler_and_int8_stay_close_to_sklearn():
    X, y = _data(n=400, classes=4)
    pipe = tr.fit(tr.make_pipeline(dict(hidden_layer_sizes=(32,), alpha=0.1, max_iter=100)), X, y)
    from tools.onnx_mlp import quantize_int8

    blob = tr.export_onnx(pipe, X.shape[1], fold_scaler=False)
    ref = pipe.predict_proba(X)
    assert np.max(np.abs(onnx_predictor(blob)(X) - ref)) <= 1e-5
    q = onnx_predictor(quantize_int8(blob))(X)
    # int8 weights: close, and the same decisions on nearly every row
    assert np.max(np.abs(q - ref)) < 0.1
    assert (q.argmax(axis=1) == ref.argmax(axis=1)).mean() >= 0.95


def _subnormals(blob_or_path) -> int:
    import onnx
    from onnx import numpy_helper

    m = onnx.load(blob_or_path) if isinstance(blob_or_path, (str, Path)) else onnx.load_from_string(blob_or_path)
    arrays = [numpy_helper.to_array(t) for t in m.graph.initializer]
    return sum(int(((a != 0) & (np.abs(a) < np.finfo(np.float32).tiny)).sum())
               for a in arrays if a.dtype == np.float32)


def test_subnormal_weights_are_flushed_to_zero():
    """A strongly L2-penalised MLP ends with weights near 1e-39: as float32 they are
    subnormal, which made onnxruntime 14 times slower on a shipped graph. The export writes
    them as zeros; the probabilities do not move."""
    X, y = _data()
    pipe = tr.fit(tr.make_pipeline(dict(hidden_layer_sizes=(16,), alpha=0.1, max_iter=80)), X, y)
    clf = pipe.steps[-1][1]
    clf.coefs_[0][:4, :3] = 3e-39          # what a long L2 decay leaves behind
    clf.coefs_[1][0, :2] = -1e-40
    blob = tr.export_onnx(pipe, X.shape[1])
    assert _subnormals(blob) == 0
    assert np.max(np.abs(onnx_predictor(blob)(X) - pipe.predict_proba(X))) <= 1e-5


@pytest.mark.parametrize("graph", sorted(p.name for p in (ROOT / "models").glob("*.onnx")))
def test_shipped_graphs_hold_no_subnormal_weights(graph):
    assert _subnormals(ROOT / "models" / graph) == 0
