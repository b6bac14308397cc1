"""Front doors that chain the library's steps: train + calibrate + save, and evaluate a checkpoint on a
category. The CLI and the web app both call these (the app never touches torch)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from easynet.calibrate import calibrate, typical_reference
from easynet.checkpoint import Checkpoint, load_checkpoint, save_checkpoint, start_config
from easynet.config import MODEL_PRESETS, TRAIN_PRESETS, ModelConfig, TrainConfig
from easynet.data.geometry import DEPTH_SCALE_IMAGES, fit_depth_scale
from easynet.data.registry import detect_format, open_dataset
from easynet.data.types import Split
from easynet.errors import InputError
from easynet.evaluate import evaluate
from easynet.gate import MODES
from easynet.results import EvalReport, TrainSummary
from easynet.runtime import configure_threads, resolve_device
from easynet.train import Callback, learning_rate, train

Progress = Callable[[int, int], None]
SYNTHETIC_README = "README.txt"  # written last into a generated synthetic category: its presence means complete


def synthetic_categories() -> tuple[str, ...]:
    """The parts the synthetic world renders (easynet.data.synthetic)."""
    from easynet.data.synthetic import CATEGORIES

    return tuple(CATEGORIES)


def synthetic_dataset(folder: str | Path, category: str) -> Path:
    """The synthetic data root holding ``category`` under ``folder``, generated there on first use."""
    from easynet.data.synthetic import generate

    if category not in synthetic_categories():
        raise InputError(
            f"there is no synthetic category {category!r}; choose one of {', '.join(synthetic_categories())}"
        )
    if not (Path(folder) / category / SYNTHETIC_README).is_file():
        generate(folder, [category])
    return Path(folder)


def loader_options(cfg: ModelConfig) -> dict[str, Any]:
    """The loader settings a model's preprocessing needs (size, modality, resize, depth encoding and scale, RGB
    background): one place for all callers, so loaders feed what `Predictor.predict` feeds."""
    return {
        "image_size": cfg.image_size,
        "modality": cfg.modality,
        "resize": cfg.resize,
        "depth_encoding": cfg.depth_encoding,
        "depth_scale": cfg.depth_scale,
        "rgb_background": cfg.rgb_background,
    }


def fit_metric_scale(data: str | Path, category: str | None, cfg: ModelConfig, data_format: str) -> ModelConfig:
    """``cfg`` with its "metric" depth scale fitted on the training split (heights in metres, evenly spaced images
    up to DEPTH_SCALE_IMAGES); other encodings, RGB-only models and fitted scales are returned unchanged."""
    if cfg.depth_encoding != "metric" or cfg.depth_scale > 0 or not cfg.has_depth:
        return cfg
    options = {**loader_options(cfg), "depth_scale": 1.0}  # depth input = height above the table in metres
    metres = open_dataset(data, category, Split.TRAIN, format=data_format, **options)
    if not metres.has_depth:
        return cfg
    picks = np.unique(np.linspace(0, len(metres) - 1, min(len(metres), DEPTH_SCALE_IMAGES)).round().astype(int))
    return cfg.replace(depth_scale=fit_depth_scale(metres[int(i)].depth for i in picks))


def default_train_config(preset: str) -> TrainConfig:
    """The training recipe that goes with a model preset: its own when there is one, else the authors'."""
    return TRAIN_PRESETS.get(preset, TRAIN_PRESETS["official"])


def make_selector(validation: Sequence[Any], device: Any, cfg: TrainConfig) -> Callable[[Any], float]:
    """Scores a model by its I-AUROC on the validation images and their synthetic anomalies (the calibration
    set; validation only). RGB-D models use the best of their gate modes."""

    def score(model: Any) -> float:
        metrics = calibrate(model, validation, device, cfg.synth, position_norm=cfg.position_norm).metrics
        values = [v for k, v in metrics.items() if k.startswith("i_auroc_") and v == v]
        return max(values) if values else 0.0

    return score


def _finish_distributed() -> None:
    """Under torchrun: wait until rank 0 has written the checkpoint, then close the process group (a rank that
    exits with gloo's threads still running can abort with "terminate called without an active exception")."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def start_checkpoint(
    path: str | Path | None, changes: ModelConfig | dict[str, Any] | None = None
) -> tuple[Checkpoint | None, ModelConfig | None]:
    """The checkpoint to fine-tune or resume from, loaded once, and the architecture to train: the checkpoint's own.
    ``changes`` (a config, or fields asked for) must agree with it, except the gate rule (a decision, not weights)."""
    if path is None:
        return None, None
    ckpt = load_checkpoint(path)
    changes = dict(changes or {}) if not isinstance(changes, ModelConfig) else changes
    rule = None if isinstance(changes, ModelConfig) else changes.pop("gate_rule", None)
    cfg = start_config(ckpt, changes, Path(path).name)
    return ckpt, cfg.replace(gate_rule=rule) if rule else cfg


FINETUNE_WARMUP = 0.1  # a fine-tune warms its learning rate up over this share of its steps


def finetune_recipe(parent: Checkpoint, cfg: TrainConfig, explicit: Collection[str] = ()) -> TrainConfig:
    """The recipe for fine-tuning a trained model: its own synthetic anomalies, the learning rate its training ended
    at (a fresh Adam at the starting rate throws a trained model far off) and a linear warm-up over FINETUNE_WARMUP of
    the steps. Fields in ``explicit`` (asked for by name) are kept as given."""
    base = parent.train_config or cfg
    ended = learning_rate(base, max(base.steps - 1, 0), base.steps)
    changes = {"lr": ended, "warmup_steps": max(1, int(FINETUNE_WARMUP * cfg.steps)), "synth": base.synth}
    return cfg.replace(**{k: v for k, v in changes.items() if k not in explicit})


def train_category(
    data: str | Path,
    category: str | None,
    out: str | Path,
    *,
    preset: str = "lite",
    model_cfg: ModelConfig | dict[str, Any] | None = None,
    train_cfg: TrainConfig | None = None,
    data_format: str | None = None,
    device: str = "auto",
    resume: str | Path | None = None,
    init_from: str | Path | None = None,
    callback: Callback | None = None,
    progress: bool = True,
    ship: bool = False,
    explicit: Collection[str] = (),
    own_defects: bool = False,
) -> TrainSummary:
    """Train on a category's good images, calibrate on its validation split, save one checkpoint.

    ``model_cfg`` is the architecture of a fresh run (default: the preset's). With ``init_from`` (fine-tuning) or
    ``resume`` the model is the checkpoint's, loaded once here; ``model_cfg`` may then be a config or a dict of the
    fields asked for, and one that differs from the checkpoint's is refused, never silently replaced; a fine-tune
    trains with ``finetune_recipe`` (training fields in ``explicit`` are kept as given) and its summary holds the
    parent's figures on the same validation data (``parent_validation``), so a worse model is known. A run stopped
    by its callback (a cancelled job) ends at once: no calibration and no finished checkpoint (the summary's
    checkpoint is None; a periodic snapshot at ``out`` stays resumable).

    Returns a `TrainSummary`: checkpoint path, steps, whether it was stopped, alpha, calibration metrics, history.
    """
    configure_threads()
    train_cfg = train_cfg or default_train_config(preset)
    fmt = data_format or detect_format(data)
    start, start_cfg = start_checkpoint(resume or init_from, model_cfg)
    if resume is not None and start.train_config is not None:  # a run continues with its own recipe
        train_cfg = start.train_config.replace(checkpoint_every=train_cfg.checkpoint_every)
    elif init_from is not None:
        train_cfg = finetune_recipe(start, train_cfg, explicit)
    if start_cfg is not None:
        model_cfg = start_cfg
    elif isinstance(model_cfg, dict):
        model_cfg = MODEL_PRESETS[preset].replace(**model_cfg)
    model_cfg = fit_metric_scale(data, category, model_cfg or MODEL_PRESETS[preset], fmt)
    kw = {"format": fmt, **loader_options(model_cfg)}
    train_set = open_dataset(data, category, Split.TRAIN, **kw)
    dev = resolve_device(device)
    validation = open_dataset(data, category, Split.VALIDATION, **kw)
    defects = own_defect_images(data, category, kw) if own_defects else []
    select = None
    if train_cfg.select_every > 0 and len(validation) > 0:
        held = [validation[i] for i in range(len(validation))]  # decoded once, scored many times
        select = make_selector(held, dev, train_cfg)
    provenance = {
        "data": Path(data).name,
        "category": category,
        "format": fmt,
        "preset": start.provenance.get("preset", preset) if start is not None else preset,
        "command": " ".join(Path(a).name if "/" in a else a for a in sys.argv),
        "n_train": len(train_set),
        "initialised_from": Path(init_from).name if init_from else None,
        "parent": Path(init_from).name if init_from else (start.provenance.get("parent") if start else None),
    }
    # a fresh run whose fused head ends depth-blind on validation is repeated with the next seed (at most
    # train_cfg.depth_restarts times); resuming or fine-tuning continues the weights given, once
    restarts = train_cfg.depth_restarts if start is None else 0
    blind_seeds: list[int] = []
    for attempt in range(restarts + 1):
        run_cfg = train_cfg.replace(seed=train_cfg.seed + attempt)
        t0 = time.time()
        result = train(
            model_cfg,
            run_cfg,
            train_set,
            device=device,
            out=out if run_cfg.checkpoint_every else None,
            start=start,
            resume=resume is not None,
            callback=callback,
            progress=progress,
            provenance=provenance,
            select=select,
        )
        provenance["train_seconds"] = round(time.time() - t0, 1) + provenance.get("train_seconds", 0.0)
        if result.stopped or int(os.environ.get("RANK", "0")) != 0:  # stopped: nothing to calibrate; under
            # torchrun only rank 0 calibrates and writes the checkpoint
            _finish_distributed()
            return TrainSummary(
                checkpoint=None,
                steps=result.checkpoint.provenance["steps"],
                stopped=result.stopped,
                alpha=None,
                validation=None,
                history=result.history,
            )
        ckpt = result.checkpoint
        ckpt.calibration = calibrate(
            result.model.to(dev),
            validation,
            dev,
            run_cfg.synth,
            position_norm=run_cfg.position_norm,
            train=train_set,
            defects=defects,
        )
        if "depth_note" not in ckpt.calibration.metrics or attempt == restarts:
            break
        blind_seeds.append(run_cfg.seed)
        if progress:
            print(f"seed {run_cfg.seed}: {ckpt.calibration.metrics['depth_note']}; training again", file=sys.stderr)
    if blind_seeds:
        provenance["depth_blind_seeds"] = blind_seeds  # runs replaced by a restart (TrainConfig.depth_restarts)
    parent_validation = None
    if init_from is not None:  # the parent on the same validation data: is the fine-tuned model worse?
        parent = (load_checkpoint(init_from) if resume is not None else start).build_model().to(dev).eval()
        parent_validation = calibrate(
            parent, validation, dev, run_cfg.synth, position_norm=run_cfg.position_norm, defects=defects
        ).metrics
        provenance["parent_validation"] = parent_validation
    ckpt.provenance = {**ckpt.provenance, **provenance, "n_validation": len(validation), "stopped": result.stopped}
    if ship:
        ckpt.provenance.pop("train_state", None)
    save_checkpoint(ckpt, out, half=ship)
    _finish_distributed()
    return TrainSummary(
        checkpoint=str(out),
        steps=ckpt.provenance["steps"],
        stopped=result.stopped,
        alpha=ckpt.calibration.alpha,
        validation=ckpt.calibration.metrics,
        history=result.history,
        parent_validation=parent_validation,
    )


def own_defect_images(data: str | Path, category: str | None, options: dict[str, Any]) -> list[Any]:
    """The labelled defect images of a user's own set (its test split's anomalous images), decoded once; none
    when the set has no test split yet (only good parts labelled)."""
    try:
        test = open_dataset(data, category, Split.TEST, **options)
    except InputError:
        return []
    return [s for s in (test[i] for i in range(len(test))) if s.label]


FINETUNE_STEPS = 200  # an app job that refines a trained model, when the caller names no length


def scratch_preset(data: str | Path, category: str) -> str:
    """The preset an app job trains from scratch: `base` on RGB-only data (e.g. photographs), `lite` on RGB-D."""
    return "lite" if open_dataset(data, category, Split.TRAIN, image_size=16).has_depth else "base"


def default_job_steps(data: str | Path, category: str, init_from: str | Path | None = None) -> int:
    """An app job's length when the caller names none: FINETUNE_STEPS from a trained model, else the recipe's own
    (``scratch_preset``), the length its published figures were measured at."""
    return FINETUNE_STEPS if init_from else TRAIN_PRESETS[scratch_preset(data, category)].steps


def train_job(
    data: str | Path,
    category: str,
    out: str | Path,
    *,
    steps: int,
    batch_size: int,
    init_from: str | Path | None = None,
    callback: Callback | None = None,
    seed: int | None = None,
    resume: str | Path | None = None,
    snapshot_every: int = 0,
    own_defects: bool = False,
) -> TrainSummary:
    """What the app's Fine-tune tab runs: from a checkpoint (its architecture, ``finetune_recipe``, ``batch_size``),
    or from scratch with the `lite` preset on RGB-D data and the `base` preset on RGB-only data (e.g. real
    photographs), at the preset's own batch size. With
    ``snapshot_every`` the run saves a resumable snapshot at ``out`` that often; ``resume`` continues one;
    ``own_defects``: the set's labelled defects join calibration and the comparison with the parent
    (``train_category``), for the app's annotated and reviewed set."""
    preset = "lite" if init_from else scratch_preset(data, category)
    changes = {"steps": steps, "checkpoint_every": snapshot_every}
    if init_from:  # from scratch the recipe keeps its own batch size, the one its figures were measured at
        changes["batch_size"] = batch_size
    cfg = default_train_config(preset).replace(**changes | ({} if seed is None else {"seed": seed}))
    return train_category(
        data,
        category,
        out,
        preset=preset,
        init_from=init_from,
        resume=resume,
        train_cfg=cfg,
        callback=callback,
        progress=False,
        own_defects=own_defects,
    )


def recalibrate_checkpoint(
    checkpoint: str | Path,
    data: str | Path,
    category: str | None,
    out: str | Path | None = None,
    *,
    data_format: str | None = None,
    device: str = "auto",
    half: bool = False,
    gate_rule: str | None = None,
    reference_only: bool = False,
) -> dict[str, Any]:
    """Re-fit a checkpoint's calibration (alpha, thresholds, heat-map scale, the typical-part reference) on a
    category's validation split, e.g. after the calibration rule changed or for a new production line; weights are
    untouched. ``gate_rule`` switches how its control gate picks a head (config.GATE_RULES); ``reference_only``
    fits the typical-part reference and leaves the rest of the calibration as it is.

    Writes ``out`` (default: the checkpoint itself, atomically) and returns the new calibration metrics.
    """
    configure_threads()
    ckpt = load_checkpoint(checkpoint)
    if gate_rule is not None:
        if gate_rule == "score" and ckpt.model_config.score_rule == "official":
            raise InputError(f"{Path(checkpoint).name} scores as the authors did, whose gate is the entropy rule")
        ckpt.model_config = ckpt.model_config.replace(gate_rule=gate_rule)
    cfg = ckpt.model_config
    validation = open_dataset(data, category, Split.VALIDATION, format=data_format, **loader_options(cfg))
    train_set = open_dataset(data, category, Split.TRAIN, format=data_format, **loader_options(cfg))
    dev = resolve_device(device)
    model = ckpt.build_model().to(dev).eval()
    train_cfg = ckpt.train_config
    synth = train_cfg.synth if train_cfg is not None else None
    position_norm = train_cfg is None or train_cfg.position_norm
    if reference_only:
        ckpt.calibration.reference = typical_reference(model, train_set, validation, dev, synth)
    else:
        ckpt.calibration = calibrate(model, validation, dev, synth, position_norm=position_norm, train=train_set)
    command = f"easynet calibrate --checkpoint {Path(checkpoint).name} --data {Path(data).name}"
    command += f" --category {category}" if category else ""
    command += " --reference-only" if reference_only else ""
    ckpt.provenance = {**ckpt.provenance, "n_validation": len(validation), "recalibrated": command}
    save_checkpoint(ckpt, out or checkpoint, half=half)
    return {"checkpoint": str(out or checkpoint), "alpha": ckpt.calibration.alpha, **ckpt.calibration.metrics}


def labelled_images(data: str | Path, category: str | None) -> list[tuple[Path, Path | None, int]]:
    """(rgb, depth or None, label 0 OK / 1 NG) of every judged image of a data set in the MVTec 3D-AD layout (the
    good images of every split and the defects of test), e.g. the set the app's review writes."""
    found = []
    for split in (Split.TRAIN, Split.VALIDATION, Split.TEST):
        try:
            ds = open_dataset(data, category, split, image_size=16)
        except InputError:
            continue  # a split the set does not have
        found += [(r.rgb, r.depth, int(r.defect != "good")) for r in ds.records]
    return found


def operating_point(
    checkpoint: str | Path,
    labels: list[tuple[Path, Path | None, int]],
    out: str | Path,
    *,
    target_miss: float | None = None,
    target_false_reject: float | None = None,
    device: str = "auto",
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A new version of a checkpoint whose threshold meets a target on judged images (easynet.operating): both heads'
    thresholds are multiplied by the cut-off found on the images' score / threshold ratios; the weights are untouched.
    Writes ``out`` and returns the cut-off with the counts it gives on ``labels``."""
    from easynet.operating import confusion, cutoff_for_false_reject, cutoff_for_miss
    from easynet.predict import Predictor

    if (target_miss is None) == (target_false_reject is None):
        raise InputError("give one target: the share of defects that may be missed, or of good parts rejected")
    predictor = Predictor.from_checkpoint(checkpoint, device)
    ratios = np.array([(p := predictor.predict(rgb, depth)).score / p.threshold for rgb, depth, _ in labels])
    truth = np.array([label for _, _, label in labels])
    if target_miss is not None:
        cutoff, target = cutoff_for_miss(ratios, truth, target_miss), {"miss": target_miss}
    else:
        cutoff, target = (
            cutoff_for_false_reject(ratios, truth, target_false_reject),
            {"false_reject": target_false_reject},
        )
    counts = confusion(ratios, truth, cutoff)
    return write_cutoff(checkpoint, out, cutoff, {**target, "counts": counts.__dict__, **(provenance or {})})


def write_cutoff(checkpoint: str | Path, out: str | Path, cutoff: float, record: dict[str, Any]) -> dict[str, Any]:
    """Save ``checkpoint`` with both heads' thresholds multiplied by ``cutoff`` (weights untouched) as ``out``, the
    operating point recorded in its calibration and provenance; returns the record."""
    if not (cutoff > 0 and np.isfinite(cutoff)):
        raise InputError(f"a threshold must be a positive number, got {cutoff}")
    ckpt = load_checkpoint(checkpoint)
    for head in (ckpt.calibration.rgb, ckpt.calibration.fused):
        head.threshold = float(head.threshold * cutoff)
    record = {"cutoff": round(float(cutoff), 6), **record}
    ckpt.calibration.metrics = {**ckpt.calibration.metrics, "operating_point": record}
    ckpt.calibration.rule += f"\n* Operating point from judged images: thresholds x {cutoff:.4f} ({record})."
    ckpt.provenance = {**ckpt.provenance, "parent": Path(checkpoint).stem, "operating_point": record}
    save_checkpoint(ckpt, out, half=ckpt.stored_half)  # the weights exactly as they were stored
    return record


def evaluate_category(
    checkpoint: str | Path,
    data: str | Path,
    category: str | None,
    *,
    gates: Sequence[str] = MODES,
    data_format: str | None = None,
    device: str = "auto",
    progress: Progress | None = None,
    precision: str = "fp32",
) -> tuple[EvalReport, Any, Any]:
    """Evaluate a checkpoint on a category's test split; ``precision`` "bf16" runs the network under bf16
    autocast even where the device only emulates it (the accuracy guard, benchmarks/bf16_guard.py).

    Returns (report, test dataset, head outputs); `report.to_dict()` is the `easynet evaluate --json` shape.
    """
    from easynet.predict import Predictor

    predictor = Predictor.from_checkpoint(checkpoint, device)
    cfg = predictor.cfg
    test = open_dataset(data, category, Split.TEST, format=data_format, **loader_options(cfg))
    gates = list(gates)
    if not cfg.has_depth or not getattr(test, "has_depth", True):
        gates = ["close"]
    by_gate, heads = evaluate(
        predictor.model, predictor.calibration, test, predictor.device, gates, progress, precision
    )
    report = EvalReport(category=category, checkpoint=str(checkpoint), n_images=len(test), gates=by_gate)
    return report, test, heads
