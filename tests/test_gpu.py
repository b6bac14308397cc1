"""CUDA paths (skipped without a GPU): the Predictor on CUDA agrees with the CPU, and AMP training stays finite."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from easynet.config import MODEL_PRESETS, TRAIN_PRESETS
from easynet.data.pairs import PairFolder
from easynet.predict import Predictor
from easynet.train import train

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_cuda_prediction_matches_the_cpu(tiny_tree, tiny_checkpoint):
    rgb, xyz = tiny_tree / "toy/test/hole/rgb/000.png", tiny_tree / "toy/test/hole/xyz/000.tiff"
    cpu = Predictor.from_checkpoint(tiny_checkpoint, "cpu").predict_gates(rgb, xyz)
    for precision, tolerance in (("fp32", 1e-4), ("bf16", 0.02)):
        cuda = Predictor.from_checkpoint(tiny_checkpoint, "cuda", precision=precision).predict_gates(rgb, xyz)
        for gate, p in cpu.items():
            assert cuda[gate].used == p.used
            np.testing.assert_allclose(cuda[gate].anomaly_map, p.anomaly_map, atol=tolerance)


def test_amp_training_on_cuda_stays_finite(tmp_path):
    from helpers import make_pair_folder

    make_pair_folder(tmp_path, size=32, n_good=4, n_bad=0)
    data = PairFolder(tmp_path, image_size=32)
    result = train(
        MODEL_PRESETS["lite"].replace(image_size=32),
        TRAIN_PRESETS["paper"].replace(steps=4, batch_size=2),
        data,
        device="cuda",
        progress=False,
    )
    assert len(result.history) == 4 and all(np.isfinite(h["total"]) for h in result.history)
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
