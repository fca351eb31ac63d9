"""ONNX export: a dynamic batch, verified against PyTorch, and the exporter's op table built once."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

from modelbuilder.training.export import export_onnx, verify_onnx, warm_exporter
from modelbuilder.training.model import build_model


def test_repeated_exports_reuse_the_op_table_and_stay_exact(tmp_path):
    from torch.onnx._internal.exporter import _registration

    warm_exporter()
    build = _registration.onnxscript_apis.get_torchlib_ops
    assert build.cache_info().currsize == 1
    model, _ = build_model("tiny", 3, "none")
    model.eval()
    images = torch.rand(5, 3, 32, 32)
    for name in ("a.onnx", "b.onnx"):  # the second export reads the cached table
        path = export_onnx(model, 32, tmp_path / name)
        check = verify_onnx(path, model, images)
        assert check.top1_agreement == 1.0
        assert check.max_abs_prob_diff < 1e-4
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for batch in (1, 7):  # the batch is not fixed by the example used at export
            (logits,) = session.run(None, {"image": np.random.rand(batch, 3, 32, 32).astype(np.float32)})
            assert logits.shape == (batch, 3)
    assert build.cache_info().hits >= 2
    assert not list(tmp_path.glob("*.tmp"))
