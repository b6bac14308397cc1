"""Training: the loss goes down on a generated pair folder; callbacks can stop; resume continues the count."""

import numpy as np
import torch

from easynet.config import MODEL_PRESETS, TRAIN_PRESETS
from easynet.data.pairs import PairFolder
from easynet.train import TrainingSet, train

CFG = MODEL_PRESETS["lite"].replace(image_size=32)


def _pairs(tmp_path):
    from helpers import make_pair_folder

    make_pair_folder(tmp_path / "pairs", size=48, n_good=4, n_bad=0)
    return PairFolder(tmp_path / "pairs", image_size=32)


def test_short_training_lowers_the_loss(tmp_path):
    data = _pairs(tmp_path)
    cfg = TRAIN_PRESETS["paper"].replace(steps=30, batch_size=4, seed=1)
    result = train(CFG, cfg, data, device="cpu", progress=False)
    losses = [h["total"] for h in result.history]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_callback_stops_and_resume_continues(tmp_path):
    data = _pairs(tmp_path)
    cfg = TRAIN_PRESETS["official"].replace(steps=6, batch_size=2)
    seen = []

    def stop_at_3(event):
        seen.append((event.step, event.total))
        return event.step < 3

    out = tmp_path / "m.pt"
    result = train(CFG, cfg, data, device="cpu", out=out, callback=stop_at_3, progress=False)
    assert result.stopped and seen[-1] == (3, 6) and out.is_file()
    resumed = train(CFG, cfg, data, device="cpu", resume=out, progress=False)
    assert [h["step"] for h in resumed.history] == [4, 5, 6]


def test_training_items_are_reproducible_and_change_per_epoch(tmp_path):
    data = _pairs(tmp_path)
    cfg = TRAIN_PRESETS["official"].replace(seed=5)
    a, b = TrainingSet(data, cfg, True), TrainingSet(data, cfg, True)
    same = [torch.equal(a[i]["aug_rgb"], b[i]["aug_rgb"]) for i in range(len(data))]
    assert all(same)
    b.set_epoch(1)
    differ = [not torch.equal(a[i]["aug_rgb"], b[i]["aug_rgb"]) for i in range(len(data))]
    assert any(differ)  # another epoch draws other anomalies
    b.set_epoch(0)
    assert all(torch.equal(a[i]["aug_rgb"], b[i]["aug_rgb"]) for i in range(len(data)))  # and epoch 0 again its own
