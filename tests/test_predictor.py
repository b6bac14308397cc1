"""The Predictor front door: several gate modes from one prepared input."""

from __future__ import annotations

import numpy as np
import pytest

import easynet.predict as predict_module
from easynet.errors import InputError
from easynet.predict import Predictor


def test_predict_gates_prepares_once_and_matches_single_gate_calls(tiny_tree, tiny_checkpoint, monkeypatch):
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu")
    rgb, xyz = tiny_tree / "toy/test/hole/rgb/000.png", tiny_tree / "toy/test/hole/xyz/000.tiff"
    single = {g: predictor.predict(rgb, xyz, gate=g) for g in ("close", "open", "control")}
    calls = []
    original = predict_module.prepare_input
    monkeypatch.setattr(predict_module, "prepare_input", lambda *a, **k: calls.append(1) or original(*a, **k))
    together = predictor.predict_gates(rgb, xyz, ("close", "open", "control"))
    assert len(calls) == 1  # the files are read and the plane removed once for all three modes
    assert list(together) == ["close", "open", "control"]
    for gate, p in together.items():
        assert p.gate == gate and p.used == single[gate].used
        assert p.score == pytest.approx(single[gate].score, rel=1e-5)
        np.testing.assert_allclose(p.anomaly_map, single[gate].anomaly_map, atol=1e-6)
    assert together["close"].used == "rgb" and together["open"].used == "fused"
    assert not np.allclose(together["close"].anomaly_map, together["open"].anomaly_map)  # the heads differ


def test_predict_gates_refuses_an_unknown_mode_before_reading(tiny_checkpoint):
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu")
    with pytest.raises(InputError, match="gate must be one of"):
        predictor.predict_gates("no-such-file.png", None, ("close", "half-open"))
    for sensitivity in (0.0, -1.0, float("nan"), float("inf")):  # inf would divide the threshold to 0: all NG
        with pytest.raises(InputError, match="sensitivity must be a positive number"):
            predictor.predict_gates("no-such-file.png", None, ("close",), sensitivity)


def test_gate_reason_says_why_control_chose_its_head(tiny_tree, tiny_checkpoint, tmp_path):
    from easynet.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(tiny_checkpoint)
    ckpt.model_config = ckpt.model_config.replace(gate_rule="entropy")  # the paper's rule: alpha decides
    predictor = Predictor.from_checkpoint(save_checkpoint(ckpt, tmp_path / "entropy.pt"), device="cpu")
    rgb, xyz = tiny_tree / "toy/test/hole/rgb/000.png", tiny_tree / "toy/test/hole/xyz/000.tiff"
    gates = predictor.predict_gates(rgb, xyz)
    assert gates["close"].gate_reason == "RGB alone: the gate is closed"
    assert gates["open"].gate_reason == "RGB + depth: the gate is open"
    for alpha, used, words, sign in (
        (-10.0, "fused", "depth judged informative", " > "),
        (10.0, "rgb", "RGB alone", " <= "),
    ):
        predictor.calibration.alpha = alpha
        p = predictor.predict(rgb, xyz, gate="control")
        assert p.used == used and p.gate_reason.startswith(words)
        assert f"H(fused) {p.entropy_fused:.4f}{sign}H(rgb) {p.entropy_rgb:.4f} + alpha {alpha:.4f}" in p.gate_reason
        assert p.to_json()["gate_reason"] == p.gate_reason
    part = np.full((64, 64, 3), 120, np.uint8)
    part[20:36, 24:40] = (200, 30, 30)  # a red part on grey, which the RGB foreground finds
    for resize, image, framed_from, reason in (
        ("stretch", rgb, None, "RGB alone: no depth was given"),
        ("object", part, "rgb", "RGB alone: no depth was given, so the part was framed from the RGB image (less"),
        ("object", rgb, None, "RGB alone: no depth was given and no part was found in the RGB image, so the whole"),
    ):  # an object-framed model without depth frames the RGB object, or scores the whole image, and says so
        ckpt.model_config = ckpt.model_config.replace(resize=resize)
        framed = Predictor.from_checkpoint(save_checkpoint(ckpt, tmp_path / f"{resize}.pt"), device="cpu")
        p = framed.predict(image, None)
        assert p.inputs.frame.mode == resize and p.inputs.framed_from == framed_from
        assert p.gate_reason.startswith(reason) and ("less reliable" in p.gate_reason) == (resize == "object")


def test_score_gate_rule_in_the_predictor_matches_evaluation(tiny_tree, tiny_checkpoint, tmp_path):
    """A `lite` checkpoint (the score rule): control uses the head with the larger score / threshold,
    gives that head's score and map (as `open` or `close` would), says why, and agrees with evaluate's gate."""
    from easynet.checkpoint import load_checkpoint
    from easynet.data.registry import open_dataset
    from easynet.evaluate import gate_scores, run_heads
    from easynet.pipeline import loader_options

    ckpt = load_checkpoint(tiny_checkpoint)
    assert ckpt.model_config.gate_rule == "score"  # the `lite` preset's rule
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu")
    test = open_dataset(tiny_tree, "toy", "test", **loader_options(predictor.cfg))
    heads = run_heads(predictor.model, test, predictor.device, None, predictor.calibration)
    _, _, used = gate_scores(heads, predictor.calibration, "control")
    _, _, by_entropy = gate_scores(heads, predictor.calibration, "control", "entropy")
    cal = predictor.calibration
    for i, record in enumerate(test.records):
        gates = predictor.predict_gates(record.rgb, record.depth)
        control = gates["control"]
        ratios = {"rgb": gates["close"].score / cal.rgb.threshold, "fused": gates["open"].score / cal.fused.threshold}
        assert control.head_scores == pytest.approx(ratios, rel=1e-5)
        expected = "fused" if ratios["fused"] > ratios["rgb"] else "rgb"
        assert control.used == expected == ("fused" if used[i] else "rgb"), record
        same = gates["open"] if expected == "fused" else gates["close"]
        assert control.score == pytest.approx(same.score, rel=1e-5)
        np.testing.assert_allclose(control.anomaly_map, same.anomaly_map, atol=1e-6)
        words = "depth judged informative" if expected == "fused" else "RGB alone"
        assert control.gate_reason.startswith(words) and f"{ratios['fused']:.2f}x" in control.gate_reason
        assert control.to_json()["head_scores"] == control.head_scores
        # what the paper's rule would have picked, as evaluate's entropy rule picks it
        assert control.entropy_rule_head == ("fused" if by_entropy[i] else "rgb")
        assert gates["close"].entropy_rule_head is None  # the closed gate runs no depth stream
