"""The metric depth encoding end to end: the scale is fitted once on train, stored in the checkpoint, and the
loaders, calibration and the Predictor all feed the same depth input."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import OBJECT_HEIGHT

from easynet.checkpoint import load_checkpoint
from easynet.config import MODEL_PRESETS, TRAIN_PRESETS
from easynet.data.registry import open_dataset
from easynet.data.types import Split
from easynet.inputs import prepare_input
from easynet.pipeline import loader_options, train_category
from easynet.predict import Predictor


@pytest.fixture(scope="module")
def metric_checkpoint(tiny_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("metric") / "toy.pt"
    train_category(
        tiny_tree,
        "toy",
        out,
        model_cfg=MODEL_PRESETS["lite"].replace(image_size=32, depth_encoding="metric"),
        train_cfg=TRAIN_PRESETS["official"].replace(steps=1, batch_size=2),
        progress=False,
        device="cpu",
    )
    return out


def test_scale_is_fitted_on_train_and_stored(metric_checkpoint):
    cfg = load_checkpoint(metric_checkpoint).model_config
    assert cfg.depth_encoding == "metric"
    assert cfg.depth_scale == pytest.approx(OBJECT_HEIGHT, rel=0.1)  # 99th percentile of heights: the box top


def test_loader_and_predictor_feed_the_same_metric_depth(metric_checkpoint, tiny_tree):
    predictor = Predictor.from_checkpoint(metric_checkpoint, device="cpu")
    cfg = predictor.cfg
    test = open_dataset(tiny_tree, "toy", Split.TEST, **loader_options(cfg))
    sample, record = test[1], test.records[1]
    inputs = prepare_input(record.rgb, record.depth, cfg)
    np.testing.assert_array_equal(sample.depth, inputs.depth)
    np.testing.assert_array_equal(sample.foreground, inputs.foreground)
    assert 0.8 < sample.depth.max() < 1.2  # metres / a scale fitted on other images: no per-image max of 1
