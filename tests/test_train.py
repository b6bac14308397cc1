"""Training: the loss goes down on a generated pair folder; callbacks can stop; resume continues the count."""

import numpy as np
import pytest
import torch

from easynet.checkpoint import load_checkpoint
from easynet.config import MODEL_PRESETS, TRAIN_PRESETS
from easynet.data.pairs import PairFolder
from easynet.errors import InputError
from easynet.train import TrainingSet, train

# `lite` uses metric depth: train() takes a config whose scale is fitted (train_category fits it on the data)
CFG = MODEL_PRESETS["lite"].replace(image_size=32, depth_scale=0.02)


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
    resumed = train(CFG, cfg, data, device="cpu", start=load_checkpoint(out), resume=True, progress=False)
    assert [h["step"] for h in resumed.history] == [4, 5, 6]


def test_resume_continues_the_learning_rate_schedule(tmp_path):
    data = _pairs(tmp_path)
    cfg = TRAIN_PRESETS["official"].replace(steps=10, batch_size=2, lr=1e-3)  # LR x0.2 after steps 8 and 9
    whole, lrs = [], []
    train(CFG, cfg, data, device="cpu", callback=lambda e: whole.append(e.lr), progress=False)
    out = tmp_path / "m.pt"
    train(CFG, cfg, data, device="cpu", out=out, callback=lambda e: e.step < 5, progress=False)
    assert load_checkpoint(out).provenance["train_state"]["step"] == 5  # plain data under weights_only
    start = load_checkpoint(out)
    train(CFG, cfg, data, device="cpu", start=start, resume=True, callback=lambda e: lrs.append(e.lr), progress=False)
    assert lrs == pytest.approx(whole[5:]) and lrs[-1] == pytest.approx(1e-3 * 0.2**2)


def test_learning_rate_by_hand():
    from easynet.train import learning_rate

    step = TRAIN_PRESETS["official"].replace(lr=1.0, steps=10)  # x0.2 from step 8, again from step 9
    assert [learning_rate(step, s, 10) for s in (0, 7, 8, 9)] == pytest.approx([1.0, 1.0, 0.2, 0.04])
    warm = step.replace(warmup_steps=3)  # 1/4, 2/4, 3/4 of the rate, then the schedule
    assert [learning_rate(warm, s, 10) for s in (0, 1, 2, 3, 8)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 0.2])
    cosine = step.replace(schedule="cosine", warmup_steps=2)  # half-way through the rest: half the rate
    assert learning_rate(cosine, 2, 10) == pytest.approx(1.0) and learning_rate(cosine, 6, 10) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="schedule must be one of"):
        step.replace(schedule="linear")


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


def test_init_from_another_architecture_is_refused(tmp_path):
    from easynet.checkpoint import Checkpoint, save_checkpoint
    from easynet.model import EasyNet
    from easynet.pipeline import start_checkpoint

    other = CFG.replace(layers=3)
    path = save_checkpoint(Checkpoint(other, EasyNet(other).state_dict()), tmp_path / "three.pt")
    with pytest.raises(InputError) as error:
        start_checkpoint(path, CFG)
    assert str(error.value) == (
        "three.pt holds a model with layers=3, not the layers=2 asked for; leave out those "
        "model options to train with the checkpoint's architecture"
    )
    start, cfg = start_checkpoint(path, {"gate_rule": "entropy"})  # a decision, not weights: allowed
    assert cfg == other.replace(gate_rule="entropy")
    result = train(cfg, TRAIN_PRESETS["official"].replace(steps=1, batch_size=2), _pairs(tmp_path), start=start)
    assert result.checkpoint.model_config == cfg


def test_cancelled_fine_tune_is_not_calibrated(tiny_tree, tiny_checkpoint, tmp_path, monkeypatch):
    from easynet import pipeline

    def no_calibration(*args, **kwargs):
        raise AssertionError("a cancelled run was calibrated")

    monkeypatch.setattr(pipeline, "calibrate", no_calibration)
    out = tmp_path / "ft.pt"
    summary = pipeline.train_category(
        tiny_tree,
        "toy",
        out,
        init_from=tiny_checkpoint,
        device="cpu",
        progress=False,
        train_cfg=TRAIN_PRESETS["official"].replace(steps=5, batch_size=2),
        callback=lambda event: event.step < 1,
    )  # cancelled after the first step
    assert summary.stopped and summary.checkpoint is None and summary.steps == 1
    assert summary.alpha is None and summary.validation is None
    assert not out.exists()


def test_channels_last_training_is_the_same_maths_and_saves_contiguous_weights(tmp_path):
    data = _pairs(tmp_path)
    cfg = TRAIN_PRESETS["paper"].replace(steps=2, batch_size=2)
    fast = train(CFG, cfg, data, device="cpu", progress=False)
    plain = train(CFG, cfg.replace(channels_last=False), data, device="cpu", progress=False)
    # same seed, same first batch and weights: the first loss agrees to rounding (later steps drift apart, as
    # Adam's normalised steps amplify rounding differences in near-zero gradients)
    assert fast.history[0]["total"] == pytest.approx(plain.history[0]["total"], rel=1e-4)
    weights_4d = [v for v in fast.checkpoint.state_dict.values() if v.dim() == 4]
    assert weights_4d and all(v.is_contiguous() for v in weights_4d)
    trained_4d = [p for p in fast.model.parameters() if p.dim() == 4]
    assert any(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in trained_4d)


def test_train_command_records_its_settings_in_the_checkpoint(tiny_tree, tmp_path):
    from easynet.cli import main

    out = tmp_path / "set.pt"
    args = ["train", "--data", str(tiny_tree), "--category", "toy", "--out", str(out), "--quiet", "--device", "cpu"]
    options = ["--set", "cpu_bf16=on", "--set", "layers=1", "--set", "synth.depth_amplitude=0.2,0.4"]
    assert main([*args, "--image-size", "32", "--steps", "2", *options]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt.model_config.layers == 1 and ckpt.train_config.cpu_bf16 is True  # recorded with the recipe
    assert ckpt.train_config.synth.depth_amplitude == (0.2, 0.4) and ckpt.train_config.steps == 2
    assert len(ckpt.build_model().rgb_merges) == 1  # strict load: the checkpoint is what the config built


def test_a_depth_blind_run_is_trained_again_with_the_next_seed(tiny_tree, tmp_path, monkeypatch):
    import easynet.pipeline as pipeline

    real, runs = pipeline.calibrate, []

    def calibrate(model, validation, device, synth=None, **kw):  # the first run ends depth-blind on validation
        cal = real(model, validation, device, synth, **kw)
        runs.append(1)
        if len(runs) == 1:
            cal.metrics["depth_note"] = "the fused head finds depth-only synthetic anomalies no better than chance"
        return cal

    monkeypatch.setattr(pipeline, "calibrate", calibrate)
    cfg = TRAIN_PRESETS["lite"].replace(steps=2, batch_size=2, seed=5, depth_restarts=2)
    model_cfg = MODEL_PRESETS["lite"].replace(image_size=32)
    out = tmp_path / "m.pt"
    summary = pipeline.train_category(tiny_tree, "toy", out, model_cfg=model_cfg, train_cfg=cfg, device="cpu")
    ckpt = load_checkpoint(out)
    assert len(runs) == 2  # the second run read depth: no third
    assert ckpt.provenance["depth_blind_seeds"] == [5] and ckpt.train_config.seed == 6
    assert "depth_note" not in summary.validation


def test_restarts_never_apply_to_fine_tuning(tiny_tree, tiny_checkpoint, tmp_path, monkeypatch):
    import easynet.pipeline as pipeline

    calls = []
    real = pipeline.calibrate

    def calibrate(*a, **kw):
        cal = real(*a, **kw)
        calls.append(1)
        cal.metrics["depth_note"] = "blind"
        return cal

    monkeypatch.setattr(pipeline, "calibrate", calibrate)
    cfg = TRAIN_PRESETS["lite"].replace(steps=1, batch_size=2, depth_restarts=3)
    summary = pipeline.train_category(
        tiny_tree, "toy", tmp_path / "f.pt", train_cfg=cfg, init_from=tiny_checkpoint, device="cpu"
    )
    assert len(calls) == 2  # the fine-tuned run once (no restart) and its parent's figures on the same data
    assert (
        summary.parent_validation is not None
        and "depth_blind_seeds" not in load_checkpoint(tmp_path / "f.pt").provenance
    )


@pytest.mark.parametrize("bf16, native", [(False, True), (True, True), (True, False)])
def test_cpu_bf16_autocasts_the_forward_only_when_asked_and_native(tmp_path, bf16, native, monkeypatch):
    import easynet.train as training

    monkeypatch.setattr(training, "native_bf16", lambda device: native)  # what the CPU computes natively
    data = _pairs(tmp_path)
    seen = []
    original = torch.nn.Conv2d.forward

    def spy(self, x):
        out = original(self, x)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Conv2d, "forward", spy)
    cfg = TRAIN_PRESETS["paper"].replace(steps=2, batch_size=2, cpu_bf16=bf16)
    result = train(CFG, cfg, data, device="cpu", progress=False)
    assert set(seen) == {torch.bfloat16 if bf16 and native else torch.float32}  # emulated bf16 would be slower
    assert all(np.isfinite(h["total"]) for h in result.history)
    assert all(v.dtype == torch.float32 for v in result.model.state_dict().values() if v.is_floating_point())


def test_an_object_framed_model_trains_evaluates_and_predicts_on_source_pixels(tiny_tree, tmp_path):
    """`train --set resize=object` records the framing; evaluation and the Predictor frame each scan on its part and
    map results back onto the uploaded pixels."""
    from easynet.cli import main
    from easynet.pipeline import evaluate_category
    from easynet.predict import Predictor

    out = tmp_path / "framed.pt"
    args = ["train", "--data", str(tiny_tree), "--category", "toy", "--out", str(out), "--quiet", "--device", "cpu"]
    assert main([*args, "--image-size", "32", "--steps", "2", "--set", "resize=object"]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt.model_config.resize == "object"
    report, _, _ = evaluate_category(out, tiny_tree, "toy", device="cpu")
    assert set(report.i_auroc_table()) >= {"close", "open", "control"}
    test = sorted((tiny_tree / "toy" / "test" / "hole").glob("*/000.*"))
    rgb, xyz = (next(p for p in test if p.parent.name == name) for name in ("rgb", "xyz"))
    p = Predictor.from_checkpoint(out, device="cpu").predict(rgb, xyz)
    frame = p.inputs.frame
    assert frame.mode == "object" and frame.padded < 64  # the square follows the part, not the 64 px scene
    assert p.heatmap_original.shape == (64, 64)


def test_the_base_recipe_is_recorded_in_its_checkpoint_and_reproducible_from_it(tiny_tree, tmp_path):
    """The real-part recipe (`base`, what the Fine-tune tab trains on RGB-only data) travels in the checkpoint, and
    training again from the checkpoint's own configs gives the same weights."""
    from easynet.checkpoint import load_checkpoint
    from easynet.config import MODEL_PRESETS, TRAIN_PRESETS
    from easynet.pipeline import train_category

    model_cfg = MODEL_PRESETS["base"].replace(image_size=32, modality="rgb")
    recipe = TRAIN_PRESETS["base"].replace(steps=6, crop_size=16, select_every=3, batch_size=2)
    common = {"preset": "base", "progress": False, "device": "cpu"}
    first = load_checkpoint(
        train_category(tiny_tree, "toy", tmp_path / "a.pt", model_cfg=model_cfg, train_cfg=recipe, **common).checkpoint
    )
    assert first.train_config == recipe  # every field: schedule, warm-up, precision, synthesis, selection
    assert first.provenance["preset"] == "base"
    again = load_checkpoint(
        train_category(
            tiny_tree, "toy", tmp_path / "b.pt", model_cfg=first.model_config, train_cfg=first.train_config, **common
        ).checkpoint
    )
    assert again.state_dict.keys() == first.state_dict.keys()
    assert all(torch.equal(again.state_dict[k], first.state_dict[k]) for k in first.state_dict)


def test_own_labelled_defects_join_calibration_and_the_parent_check(tiny_tree, tiny_checkpoint, tmp_path):
    """Fine-tuning on the user's own set (the app's reviewed images): its labelled defects are calibration images
    of the new model and of the parent it is compared with; without the flag the test split stays unseen."""
    from easynet.calibrate import calibration_set
    from easynet.checkpoint import load_checkpoint
    from easynet.config import TRAIN_PRESETS
    from easynet.pipeline import loader_options, own_defect_images, train_category

    recipe = TRAIN_PRESETS["official"].replace(steps=2, batch_size=2)
    common = {"init_from": tiny_checkpoint, "train_cfg": recipe, "progress": False, "device": "cpu"}
    own = train_category(tiny_tree, "toy", tmp_path / "own.pt", own_defects=True, **common)
    plain = train_category(tiny_tree, "toy", tmp_path / "plain.pt", **common)
    ckpt = load_checkpoint(tiny_checkpoint)
    defects = own_defect_images(tiny_tree, "toy", loader_options(ckpt.model_config))
    assert defects and all(d.label == 1 and d.defect != "good" for d in defects)
    assert own.validation["n_real_defects"] == len(defects) == own.parent_validation["n_real_defects"]
    assert "n_real_defects" not in plain.validation and "n_real_defects" not in plain.parent_validation
    assert own.validation["n_images"] == plain.validation["n_images"] + len(defects)
    items, labels, source = calibration_set(ckpt.build_model(), [], None, defects)
    assert len(items) == len(defects) and labels.tolist() == [1] * len(defects)
    assert sorted(source.tolist()) == list(range(len(defects)))  # each its own source (position norm leaves it out)


def test_an_app_job_from_scratch_trains_the_recipe_at_its_own_batch_size(tiny_tree, tiny_checkpoint, monkeypatch):
    """train_job (the Fine-tune tab): from scratch the preset's batch size (its figures were measured at it), from a
    model the job's; the length is always the job's."""
    from easynet import pipeline
    from easynet.config import TRAIN_PRESETS

    seen = []
    monkeypatch.setattr(pipeline, "train_category", lambda *a, **k: seen.append(k))
    pipeline.train_job(tiny_tree, "toy", tiny_tree / "out.pt", steps=7, batch_size=3)
    pipeline.train_job(tiny_tree, "toy", tiny_tree / "out.pt", steps=9, batch_size=3, init_from=tiny_checkpoint)
    scratch, refine = seen
    assert scratch["preset"] == "lite" and scratch["train_cfg"].steps == 7
    assert scratch["train_cfg"].batch_size == TRAIN_PRESETS["lite"].batch_size != 3
    assert refine["train_cfg"].batch_size == 3 and refine["train_cfg"].steps == 9
