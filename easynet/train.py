"""Training: a plain PyTorch loop (Adam; an optional LR warm-up, then x0.2 at 80 % and 90 % or a cosine decay), with
a callback so the app can follow and stop it, periodic checkpoints, resume, AMP on CUDA (and opt-in bf16 on CPU)
and DistributedDataParallel under torchrun."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler
from tqdm.auto import tqdm

from easynet.checkpoint import Calibration, Checkpoint, save_checkpoint
from easynet.config import ModelConfig, TrainConfig
from easynet.errors import InputError, NonFiniteError
from easynet.losses import EasyNetLoss
from easynet.model import EasyNet
from easynet.runtime import native_bf16, resolve_device
from easynet.synth import AnomalySynthesizer, placement_region

CACHE_LIMIT_BYTES = 4 << 30  # decoded training images are kept in memory up to this size


class TrainingSet(Dataset):
    """Wraps a loader of clean samples; each item gets a synthetic anomaly from a reproducible RNG.

    Decoded, resized samples are kept in memory after their first use (when they fit in CACHE_LIMIT_BYTES),
    so PNG decoding and plane removal run once per image, not once per step. With ``cfg.crop_size`` each
    item is a random crop that overlaps the image (not only letterbox padding).
    """

    def __init__(
        self, samples: Sequence[Any], cfg: TrainConfig, use_depth: bool, depth_scale: float | None = None
    ) -> None:
        if len(samples) == 0:
            raise InputError("the training split holds no images; at least one good sample is needed")
        self.samples, self.seed, self.use_depth = samples, cfg.seed, use_depth
        if depth_scale is not None and not depth_scale > 0:
            raise InputError("a metric-depth model needs its depth scale fitted first (pipeline.fit_metric_scale)")
        self.synth = AnomalySynthesizer(cfg.synth)
        self.crop = cfg.crop_size
        self.epoch = 0
        self._cache: dict[int, Any] = {}
        self._regions: dict[int, Any] = {}
        self._cacheable = True

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.samples, "set_epoch"):
            self.samples.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def _sample(self, index: int) -> Any:
        if index in self._cache:
            return self._cache[index]
        s = self.samples[index]
        if hasattr(self.samples, "set_epoch"):  # samples change per epoch (e.g. Eyecandies lights): no cache
            return s
        if self._cacheable and s.rgb.nbytes * 2 * len(self.samples) <= CACHE_LIMIT_BYTES:
            self._cache[index] = s
        else:
            self._cacheable = False
        return s

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        s = self._sample(index)
        rng = np.random.default_rng((self.seed, self.epoch, index))
        depth = s.depth if self.use_depth else None
        if self.use_depth and depth is None:
            raise InputError(f"sample {s.name} has no depth but the model is RGB-D; train with --modality rgb")
        if index not in self._regions or index not in self._cache:
            self._regions[index] = placement_region(s, self.synth.cfg)
        rgb, region = s.rgb, self._regions[index]
        if self.crop and self.crop < rgb.shape[0]:
            window = crop_window(rgb.shape[0], self.crop, s.frame, rng)
            rgb, depth = rgb[window], None if depth is None else depth[window]
            region = None if region is None else region[window]
        syn = self.synth(rgb, depth, region, rng)
        item = {
            "aug_rgb": _chw(syn.rgb),
            "rgb": _chw(rgb),
            "mask": torch.from_numpy(syn.mask)[None],
            "mask_rgb": torch.from_numpy(syn.mask_rgb)[None],
        }
        if depth is not None:
            item["aug_depth"] = torch.from_numpy(np.ascontiguousarray(syn.depth))[None]
            item["depth"] = torch.from_numpy(np.ascontiguousarray(depth))[None]
        return item


def crop_window(size: int, crop: int, frame: Any, rng: np.random.Generator) -> tuple[slice, slice]:
    """A random crop x crop window of an (S, S) input whose centre lies on the image (not on padding)."""
    top, left, height, width = (
        (0, 0, size, size) if frame is None else (frame.top, frame.left, frame.height, frame.width)
    )
    cy = rng.uniform(top, top + height)
    cx = rng.uniform(left, left + width)
    y0 = int(np.clip(round(cy - crop / 2), 0, size - crop))
    x0 = int(np.clip(round(cx - crop / 2), 0, size - crop))
    return slice(y0, y0 + crop), slice(x0, x0 + crop)


def _chw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32))


@dataclass
class TrainEvent:
    """Progress report passed to the callback after every step."""

    step: int
    total: int
    loss: dict[str, float]
    lr: float
    elapsed: float
    eta: float


@dataclass
class TrainResult:
    model: EasyNet
    checkpoint: Checkpoint
    history: list[dict[str, float]] = field(default_factory=list)
    stopped: bool = False


Callback = Callable[[TrainEvent], "bool | None"]
Selector = Callable[[EasyNet], float]  # validation score of a model in eval mode (higher is better)


def _distributed() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


def _set_epoch(epoch: int, data: TrainingSet, sampler: Any) -> None:
    """New synthetic anomalies (and, under torchrun, a new shard order) for every pass over the data."""
    data.set_epoch(epoch)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)


def learning_rate(cfg: TrainConfig, step: int, total: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) of ``total``: a linear warm-up over
    ``cfg.warmup_steps``, then ``cfg.schedule``: "step" multiplies by ``cfg.gamma`` at each milestone fraction,
    "cosine" decays to 0 at the end."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / (cfg.warmup_steps + 1)
    if cfg.schedule == "cosine":
        done = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))
    passed = sum(step >= max(1, int(f * total)) for f in cfg.milestones)
    return cfg.lr * cfg.gamma**passed


def _optimise(loss: torch.Tensor, optimizer: Any, lr: float, scaler: torch.amp.GradScaler, step: int) -> None:
    """One optimizer and schedule step on ``loss``; a non-finite loss stops training before the optimizer
    spreads NaN into the weights."""
    if not bool(torch.isfinite(loss)):
        raise NonFiniteError(
            f"training diverged at step {step + 1}: the loss became {float(loss)}; the run stops before its "
            "weights turn non-finite; lower the learning rate or check the training images"
        )
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def train(
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    samples: Sequence[Any],
    *,
    device: str = "auto",
    out: str | Path | None = None,
    start: Checkpoint | None = None,
    resume: bool = False,
    callback: Callback | None = None,
    progress: bool = True,
    provenance: dict[str, Any] | None = None,
    select: Selector | None = None,
) -> TrainResult:
    """Train EasyNet on clean samples with synthetic anomalies.

    Args:
        samples: a loader returning ``Sample`` objects (train split).
        out: where periodic checkpoints (every ``cfg.checkpoint_every`` steps) and the final one go.
        start: a loaded checkpoint to start from: its weights (fine-tuning, with a fresh optimizer and schedule),
            or with ``resume`` its weights, optimizer and schedule (training continues from its step). Its
            architecture is used; ``model_cfg`` must agree with it (pipeline.train_category checks).
        callback: called after every step; returning False stops training (the result has stopped=True).
        select: with ``cfg.select_every``, scores the model every that many steps and at the end; the
            weights with the best score are kept (validation only: the caller must never pass test data).
    """
    world, rank, local_rank = _distributed()
    dev = _setup_device(device, world, local_rank)
    torch.manual_seed(cfg.seed + rank)
    model, model_cfg, start_step, train_state = _starting_model(model_cfg, start, resume)
    model.to(dev).train()
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(memory_format=layout)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)

    data = TrainingSet(samples, cfg, model_cfg.has_depth, model_cfg.metric_scale)
    loader, sampler = _loader(data, cfg, world, dev)
    total = cfg.epochs * max(1, len(loader)) if cfg.epochs > 0 else cfg.steps
    optimizer = _optimizer(model, cfg, train_state)
    criterion = EasyNetLoss(cfg)
    amp, amp_dtype = _autocast(cfg, dev)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16)

    history: list[dict[str, float]] = []
    keeper = _BestKeeper(select if cfg.select_every > 0 and rank == 0 else None)
    step, epoch, stopped, t0 = start_step, 0, False, time.time()
    bar = tqdm(total=total, initial=step, disable=not progress or rank != 0, desc="train", unit="step")
    while step < total and not stopped:
        _set_epoch(epoch, data, sampler)
        for batch in loader:
            batch = {k: _to(v, dev, layout) for k, v in batch.items()}
            with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp):
                pred = net(batch["aug_rgb"], batch.get("aug_depth"))
            terms = criterion(pred, batch["rgb"], batch.get("depth"), batch["mask"], batch["mask_rgb"])
            lr = learning_rate(cfg, step, total)
            _optimise(terms.total, optimizer, lr, scaler, step)
            step += 1
            losses = terms.as_floats()
            history.append({"step": step, **losses})
            bar.update(1)
            bar.set_postfix(loss=f"{losses['total']:.4f}")
            elapsed = time.time() - t0
            eta = elapsed / (step - start_step) * (total - step)
            event = TrainEvent(step, total, losses, lr, elapsed, eta)
            if callback is not None and callback(event) is False:
                stopped = True
            if world > 1:  # every rank must leave the loop together, or the others hang in all-reduce
                stopped = _any_rank(stopped, dev)
            if out is not None and rank == 0 and cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                save_checkpoint(_snapshot(model, model_cfg, cfg, optimizer, step, provenance), out)
            if cfg.select_every and step % cfg.select_every == 0 and step < total:
                keeper.consider(model, step)
            if stopped or step >= total:
                break
        epoch += 1
    bar.close()
    if not stopped:
        keeper.consider(model, step)
    provenance = {**(provenance or {}), **keeper.restore_best(model)}
    if world > 1:  # BN running statistics are per rank after the last step: keep rank 0's everywhere
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)
    model.eval()
    if world > 1:
        provenance = {**(provenance or {}), "world_size": world, "global_batch_size": cfg.batch_size * world}
    ckpt = _snapshot(model, model_cfg, cfg, optimizer, step, provenance)
    if out is not None and rank == 0:
        save_checkpoint(ckpt, out)
    if world > 1:
        dist.barrier()
    return TrainResult(model, ckpt, history, stopped)


def _autocast(cfg: TrainConfig, dev: torch.device) -> tuple[bool, torch.dtype]:
    """(autocast on?, its dtype): on the CPU bf16 when ``cfg.cpu_bf16`` asks for it and the CPU computes bf16
    natively (elsewhere it is emulated and slower, so fp32); on CUDA with ``cfg.amp``, bf16 where the GPU supports
    it, else fp16 (with a gradient scaler)."""
    if dev.type == "cpu":
        return cfg.cpu_bf16 and native_bf16(dev), torch.bfloat16
    amp = cfg.amp and dev.type == "cuda"
    return amp, torch.bfloat16 if amp and torch.cuda.is_bf16_supported() else torch.float16


def _to(t: torch.Tensor, dev: torch.device, layout: torch.memory_format) -> torch.Tensor:
    """A batch tensor on the training device, images (4-D) in the model's memory format."""
    t = t.to(dev, non_blocking=True)
    return t.contiguous(memory_format=layout) if t.dim() == 4 else t


def _setup_device(device: str, world: int, local_rank: int) -> torch.device:
    """The device of this process; under torchrun also its CUDA device and the process group."""
    dev = resolve_device(device)
    if world > 1:
        if dev.type == "cuda":
            dev = torch.device("cuda", local_rank)
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dev


def _starting_model(
    model_cfg: ModelConfig, start: Checkpoint | None, resume: bool
) -> tuple[EasyNet, ModelConfig, int, dict[str, Any] | None]:
    """(model, its config, first step, saved optimizer/schedule state): fresh, resumed or initialised from weights."""
    if start is None:
        return EasyNet(model_cfg), model_cfg, 0, None
    model = EasyNet(model_cfg)
    model.load_state_dict(start.state_dict, strict=True)
    if not resume:
        return model, model_cfg, 0, None
    train_state = start.provenance.get("train_state")
    if train_state is None:
        raise InputError("the checkpoint has no optimizer state to resume from; use it as --init instead")
    return model, model_cfg, int(train_state["step"]), train_state


def _loader(data: TrainingSet, cfg: TrainConfig, world: int, dev: torch.device) -> tuple[DataLoader, Any]:
    """The shuffled batches (a DistributedSampler under torchrun, a seeded RandomSampler otherwise)."""
    if world > 1:
        sampler: Any = DistributedSampler(data, shuffle=True, seed=cfg.seed)
    else:
        sampler = RandomSampler(data, generator=torch.Generator().manual_seed(cfg.seed))
    loader = DataLoader(
        data,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.num_workers,
        drop_last=len(data) >= cfg.batch_size * world,
        pin_memory=dev.type == "cuda",
        persistent_workers=cfg.num_workers > 0,  # workers keep their decoded-image cache across epochs
    )
    return loader, sampler


def _optimizer(model: EasyNet, cfg: TrainConfig, train_state: dict[str, Any] | None) -> torch.optim.Optimizer:
    """Adam, with its state restored when resuming (the learning rate follows the step: ``learning_rate``)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    if train_state is not None:
        optimizer.load_state_dict(train_state["optimizer"])
    return optimizer


class _BestKeeper:
    """Keeps a copy of the weights with the best validation score seen so far."""

    def __init__(self, select: Selector | None) -> None:
        self.select, self.best, self.best_step, self.state = select, -np.inf, 0, None
        self.history: list[dict[str, float]] = []

    def consider(self, model: EasyNet, step: int) -> None:
        if self.select is None:
            return
        model.eval()
        score = float(self.select(model))
        model.train()
        self.history.append({"step": step, "score": round(score, 5)})
        if score > self.best:  # ties keep the earlier (less trained) weights
            self.best, self.best_step = score, step
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def restore_best(self, model: EasyNet) -> dict[str, Any]:
        """Loads the best weights into ``model``; returns what to record in the checkpoint's provenance."""
        if self.state is None:
            return {}
        model.load_state_dict(self.state)
        return {
            "selected_step": self.best_step,
            "selection_score": round(self.best, 5),
            "selection_history": self.history,
        }


def _any_rank(flag: bool, dev: torch.device) -> bool:
    t = torch.tensor([int(flag)], device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _snapshot(model, model_cfg, cfg, optimizer, step, provenance) -> Checkpoint:
    state = {"step": step, "optimizer": optimizer.state_dict()}
    prov = {**(provenance or {}), "steps": step, "train_state": state}
    weights = {k: v.detach().cpu().clone(memory_format=torch.contiguous_format) for k, v in model.state_dict().items()}
    return Checkpoint(model_cfg, weights, Calibration(), cfg, prov)
