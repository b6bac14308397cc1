"""The bf16 accuracy guard: fp32 against bf16 on a checkpoint's test split and samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from precision_guard import TOLERANCE, GuardResult, guard_checkpoint

from easynet.checkpoint import load_checkpoint
from easynet.data.registry import Split, open_dataset
from easynet.evaluate import run_heads
from easynet.pipeline import evaluate_category, loader_options

CPU = torch.device("cpu")


def test_the_guard_fails_on_a_metric_beyond_tolerance_or_a_changed_verdict():
    ok = GuardResult("c.pt", "toy", False, {"open": {"i_auroc": (0.9, 0.9 + TOLERANCE * 0.9), "aupro": (0.5, 0.5)}})
    ok.verdicts = {"good_01": {"open": (False, False)}}
    assert ok.passed and ok.failures() == []
    assert math.isclose(ok.max_change(), TOLERANCE * 0.9)
    moved = GuardResult("c.pt", "toy", False, {"open": {"i_auroc": (0.9, 0.9 + TOLERANCE * 2), "aupro": (0.5, 0.5)}})
    assert not moved.passed and moved.failures() == ["toy open i_auroc: fp32 0.9000, bf16 0.9100 (allowed 0.005)"]
    flipped = GuardResult("c.pt", "toy", False, {"open": {"i_auroc": (0.9, 0.9), "aupro": (math.nan, math.nan)}})
    flipped.verdicts = {"dent_00": {"control": (True, False)}}
    assert flipped.failures() == ["dent_00 control: fp32 says anomalous, bf16 says good"]
    lost = GuardResult("c.pt", "toy", False, {"open": {"aupro": (0.5, math.nan)}})  # a metric bf16 could not compute
    assert not lost.passed
    assert flipped.to_dict()["verdicts_changed"] == 1 and not flipped.to_dict()["passed"]


def test_run_heads_in_bf16_is_bf16_and_close_to_fp32(tiny_tree, tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint)
    model = ckpt.build_model()
    test = open_dataset(tiny_tree, "toy", Split.TEST, **loader_options(model.cfg))
    fp32 = run_heads(model, test, CPU, cal=ckpt.calibration)
    bf16 = run_heads(model, test, CPU, cal=ckpt.calibration, precision="bf16")
    assert not np.array_equal(fp32.prob_rgb, bf16.prob_rgb)  # it did run in bf16 (native or emulated)
    np.testing.assert_allclose(bf16.prob_rgb, fp32.prob_rgb, atol=0.05)
    np.testing.assert_allclose(bf16.prob_fused, fp32.prob_fused, atol=0.05)


@pytest.mark.parametrize("flags", [set(), {"avx512_bf16"}])
def test_guard_on_a_checkpoint_puts_fp32_next_to_bf16(tiny_tree, tiny_checkpoint, monkeypatch, flags):
    import easynet.runtime as runtime

    monkeypatch.setattr(runtime, "_cpu_flags", lambda: flags)  # the guard records whether bf16 was native
    sample = next((tiny_tree / "toy" / "test" / "hole" / "rgb").glob("*.png"))
    xyz = tiny_tree / "toy" / "test" / "hole" / "xyz" / sample.with_suffix(".tiff").name
    result = guard_checkpoint(tiny_checkpoint, tiny_tree, "toy", [("hole_0", sample, xyz)], gates=("close", "open"))
    fp32, _, _ = evaluate_category(tiny_checkpoint, tiny_tree, "toy", gates=("close", "open"), device="cpu")
    for gate in ("close", "open"):  # the fp32 column is the plain evaluation
        assert result.metrics[gate]["i_auroc"][0] == fp32.gates[gate]["i_auroc"]
        assert result.metrics[gate]["aupro"][0] == fp32.gates[gate]["aupro"]
    assert set(result.verdicts["hole_0"]) == {"close", "open"}
    assert result.native is bool(flags)
    row = result.to_dict()
    assert row["passed"] == (row["failures"] == []) and row["verdicts"] == 1
