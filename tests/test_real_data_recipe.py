"""The real-image recipe: RGB foreground, small synthetic anomalies on the object, crops, validation-only
model selection and a short `base` training run (on the real tire folder when present, else a stand-in)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from helpers import make_mvtec3d_tree

import easynet.pipeline as pipeline
from easynet.config import MODEL_PRESETS, TRAIN_PRESETS, SynthConfig
from easynet.data.foreground import rgb_foreground
from easynet.data.preprocess import Frame
from easynet.data.types import Split
from easynet.synth import AnomalySynthesizer, scratch_mask, spot_mask
from easynet.train import crop_window

TIRE = Path(__file__).resolve().parents[2] / "shared/data/mvtec3d-tire-rgb"


def _object_on_surface(size: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A dark textured ellipse on a noisy blue surface (like a tire on MVTec's table)."""
    rng = np.random.default_rng(seed)
    rgb = np.empty((size, size, 3), np.float32)
    rgb[:] = (0.12, 0.14, 0.3)
    rgb += rng.normal(0, 0.03, rgb.shape).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    obj = ((yy - size / 2) / (0.4 * size)) ** 2 + ((xx - size / 2) / (0.25 * size)) ** 2 < 1
    rgb[obj] = 0.08 + 0.1 * ((xx[obj] // 4 + yy[obj] // 4) % 2)[:, None]
    return np.clip(rgb, 0, 1), obj


def test_rgb_foreground_finds_the_object():
    rgb, truth = _object_on_surface()
    found = rgb_foreground(rgb)
    iou = (found & truth).sum() / (found | truth).sum()
    assert iou > 0.9


def test_rgb_foreground_gives_up_on_a_plain_image():
    rng = np.random.default_rng(1)
    plain = np.clip(0.5 + rng.normal(0, 0.02, (64, 64, 3)), 0, 1).astype(np.float32)
    assert rgb_foreground(plain) is None


def test_synthetic_anomalies_stay_on_the_object_and_can_be_small():
    rgb, obj = _object_on_surface(128)
    cfg = SynthConfig(shape_weights=(1, 1, 1), fill_weights=(1, 1, 1), match_intensity=True)
    synth = AnomalySynthesizer(cfg)
    areas = []
    for seed in range(60):
        out = synth(rgb, None, obj, np.random.default_rng(seed), force=True)
        if out.label:
            assert not (out.mask.astype(bool) & ~obj).any()  # nothing on the table
            changed = np.abs(out.rgb - rgb).sum(-1) > 1e-6
            assert not (changed & ~out.mask.astype(bool)).any()  # the image changes only under the mask
            areas.append(out.mask.sum())
    assert len(areas) >= 50
    assert min(areas) <= 0.002 * 128 * 128  # defects of a few pixels, like MVTec's 0.04 % ones


def test_scratches_are_thin_and_spots_small():
    rng = np.random.default_rng(3)
    scratch, spot = scratch_mask(256, rng), spot_mask(256, rng)
    assert 0 < scratch.mean() < 0.05 and 0 < spot.mean() < 0.05


def test_crop_windows_centre_on_the_image_not_the_padding():
    frame = Frame.fit((600, 800), 256, "letterbox")  # width 192, columns 32..224
    rng = np.random.default_rng(0)
    for _ in range(50):
        rows, cols = crop_window(256, 128, frame, rng)
        assert rows.stop - rows.start == 128 and cols.stop - cols.start == 128
        centre = (cols.start + cols.stop) / 2
        assert frame.left <= centre <= frame.left + frame.width  # never a crop of mostly padding


def _data_root(tmp_path: Path) -> tuple[Path, str]:
    if TIRE.is_dir():
        return TIRE, "tire"
    root = tmp_path / "standin"
    make_mvtec3d_tree(root, "tire", size=(80, 60), with_xyz=False, n_train=4, n_val=2, test={"good": 1, "cut": 1})
    return root, "tire"


def test_short_base_training_saves_and_selection_never_reads_test(tmp_path, monkeypatch):
    """`base` (letterbox, crops, RGB foreground, selection by validation) trains, saves a checkpoint that
    records its choice, and only the train and validation splits are ever opened."""
    root, category = _data_root(tmp_path)
    opened = []
    real_open = pipeline.open_dataset

    def spy(*args, **kwargs):
        opened.append(Split(args[2]))
        return real_open(*args, **kwargs)

    monkeypatch.setattr(pipeline, "open_dataset", spy)
    model_cfg = MODEL_PRESETS["base"].replace(image_size=64, base_width=4, head_width=8)
    train_cfg = TRAIN_PRESETS["base"].replace(steps=4, batch_size=2, crop_size=32, select_every=2)
    out = tmp_path / "base.pt"
    summary = pipeline.train_category(
        root, category, out, model_cfg=model_cfg, train_cfg=train_cfg, preset="base", progress=False
    )
    assert out.is_file() and summary.steps == 4
    assert set(opened) == {Split.TRAIN, Split.VALIDATION}
    from easynet.checkpoint import load_checkpoint

    ckpt = load_checkpoint(out)
    assert ckpt.model_config.resize == "letterbox" and ckpt.train_config.crop_size == 32
    history = ckpt.provenance["selection_history"]
    assert [h["step"] for h in history] == [2, 4]
    assert ckpt.provenance["selected_step"] in (2, 4)
    best = max(h["score"] for h in history)
    assert ckpt.provenance["selection_score"] == best


def test_the_default_train_recipe_follows_the_model_preset():
    assert pipeline.default_train_config("base") is TRAIN_PRESETS["base"]
    assert pipeline.default_train_config("lite") is TRAIN_PRESETS["lite"]  # the shipped synthetic recipe
    assert pipeline.default_train_config("paper") is TRAIN_PRESETS["paper"]
    assert pipeline.default_train_config("custom") is TRAIN_PRESETS["official"]  # no recipe of its own


def test_app_finetune_on_an_rgb_only_zip_trains_the_base_preset(tmp_path, monkeypatch):
    """A zip without xyz folders (real photos) trains `base` from scratch; the result is an RGB model."""
    from app import jobs

    monkeypatch.setenv("EASYNET_WORKSPACE", str(tmp_path / "ws"))
    root = tmp_path / "photos"
    make_mvtec3d_tree(root, "part", size=(48, 64), with_xyz=False, n_train=2, n_val=1)
    job = jobs.Job(id="0001", category="part", data=str(root), steps=1, batch_size=2, work=str(tmp_path / "work"))
    summary = jobs.default_train(job, lambda event: True)
    from easynet.checkpoint import load_checkpoint

    assert Path(summary.checkpoint).parent == tmp_path / "work"
    ckpt = load_checkpoint(summary.checkpoint)
    assert ckpt.provenance["preset"] == "base" and ckpt.model_config.modality == "rgb"
    assert ckpt.model_config.resize == "letterbox"
