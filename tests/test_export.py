"""ONNX export and the onnxruntime backend: parity with the eager model, CLI, missing-dependency error."""

import sys

import pytest
import torch
from test_fastpath import SIZE, tiny

from easynet.errors import InputError

TOL = 1e-4


@pytest.mark.parametrize("preset", ["paper", "lite"])  # histogram gate + BN on logits / attention gate
def test_onnx_runner_equals_eager(preset):
    from easynet.export import OnnxRunner

    model = tiny(preset)
    runner = OnnxRunner.from_model(model, torch.device("cpu"))
    rgb, depth = torch.rand(3, 3, SIZE, SIZE), torch.rand(3, 1, SIZE, SIZE)  # exported at batch 1
    with torch.inference_mode():
        for gate in ("close", "open", "control"):
            for alpha in (-0.05, 0.0, 0.05):
                ref, out = model.forward_gated(rgb, depth, gate, alpha), runner(rgb, depth, gate, alpha)
                assert (ref.anomaly_map - out.anomaly_map).abs().max() <= TOL
                assert torch.equal(ref.used_fused, out.used_fused)
                assert (ref.rec_rgb - out.rec_rgb).abs().max() <= TOL
                if gate == "control":
                    assert (ref.entropy_fused - out.entropy_fused).abs().max() <= TOL
        out = runner(rgb, None, "control", 0.0)  # no depth: the gate is closed
        assert not out.used_fused.any() and out.rec_depth is None


def test_cli_export_writes_a_loadable_graph(tiny_checkpoint, tmp_path):
    import onnxruntime as ort

    from easynet.checkpoint import load_checkpoint
    from easynet.cli import main
    from easynet.export import OnnxRunner

    path = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "--onnx", str(path)]) == 0
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()][:4] == ["prob_rgb", "prob_fused", "entropy_rgb", "entropy_fused"]
    model = load_checkpoint(tiny_checkpoint).build_model()
    size = model.cfg.image_size
    rgb, depth = torch.rand(2, 3, size, size), torch.rand(2, 1, size, size)
    runner = OnnxRunner(torch.device("cpu"), True, sources={"both": path})
    with torch.inference_mode():
        ref = model.forward_gated(rgb, depth, "open")
    assert (ref.anomaly_map - runner(rgb, depth, "open", 0.0).anomaly_map).abs().max() <= TOL


def test_predictor_onnx_backend_equals_eager(tiny_checkpoint, tiny_tree):
    from helpers import assert_same_prediction

    from easynet.predict import Predictor

    rgb = next((tiny_tree / "toy" / "test" / "hole" / "rgb").glob("*.png"))
    xyz = rgb.parent.parent / "xyz" / (rgb.stem + ".tiff")
    onnx = Predictor.from_checkpoint(tiny_checkpoint, "cpu", backend="onnx")
    eager = Predictor.from_checkpoint(tiny_checkpoint, "cpu", backend="eager")
    for gate in ("close", "control"):
        assert_same_prediction(onnx.predict(rgb, xyz, gate=gate), eager.predict(rgb, xyz, gate=gate), TOL)


def test_missing_onnxruntime_is_a_clear_input_error(monkeypatch):
    from easynet.backends import make_runner

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(InputError, match="pip install onnxruntime"):
        make_runner(tiny("lite"), torch.device("cpu"), "onnx")
