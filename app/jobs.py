"""Background fine-tuning: one job at a time per server, a FIFO queue, each job's state persisted as JSON.

A job's file <workspace>/jobs/<id>.json is rewritten atomically on every change (throttled while training),
so a reloaded page, another browser tab or a restarted server sees the same state. Jobs that were running
when the server stopped are reported as failed ("interrupted by a server restart").
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app import workspace
from easynet.errors import EasyNetError, InputError
from easynet.visualize import atomic_write_bytes

STATES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE = ("queued", "running")
RESTART_ERROR = "interrupted by a server restart"
SAVE_EVERY_S = 1.0  # at most one state write per second while training
MAX_LOSS_POINTS = 1000  # the loss history is thinned to this many points
MAX_STEPS = 100_000
log = logging.getLogger(__name__)


@dataclass
class Job:
    """One fine-tuning run and its progress (the JSON written to disk)."""

    id: str
    category: str
    data: str  # data set root (MVTec 3D-AD layout); empty for a synthetic category generated on start
    steps: int
    synthetic: bool = False
    init_from: str | None = None  # checkpoint path to start from
    batch_size: int = 4
    state: str = "queued"
    step: int = 0
    total: int = 0
    loss: list[dict[str, float]] = field(default_factory=list)  # {"step", "total", ...named terms}
    eta: float | None = None
    elapsed: float = 0.0
    checkpoint: str | None = None
    model: str | None = None  # the registry name of the saved checkpoint
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def status(self) -> dict[str, Any]:
        """The compact view behind /finetune_status."""
        last = self.loss[-1]["total"] if self.loss else None
        return {"id": self.id, "state": self.state, "step": self.step, "total": self.total or self.steps,
                "loss": last, "eta": self.eta, "category": self.category, "checkpoint": self.checkpoint,
                "model": self.model, "metrics": self.metrics, "error": self.error}


TrainFn = Callable[[Job, Callable[[Any], bool]], dict[str, Any]]


def default_train(job: Job, callback: Callable[[Any], bool]) -> dict[str, Any]:
    """Generate the synthetic data if needed, then train_category into a file under jobs/.

    From scratch, RGB-D data trains the `lite` preset and RGB-only data (no xyz folders, e.g. real photos)
    the `base` preset for real images; a fine-tune keeps its starting checkpoint's model.
    """
    from easynet.data.registry import open_dataset
    from easynet.pipeline import default_train_config, train_category

    data = workspace.ensure_synthetic(job.category) if job.synthetic else job.data
    rgb_only = not job.init_from and not open_dataset(data, job.category, "train", image_size=16).has_depth
    preset = "base" if rgb_only else "lite"
    cfg = default_train_config(preset).replace(steps=job.steps, batch_size=job.batch_size)
    out = workspace.sub("jobs") / f"{job.id}.pt"
    return train_category(data, job.category, out, init_from=job.init_from, train_cfg=cfg, callback=callback,
                          progress=False, preset=preset)


class JobRunner:
    """FIFO queue + one worker thread; `cancel` sets a flag that the training callback reads."""

    def __init__(self, folder: Path, train_fn: TrainFn = default_train) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.train_fn = train_fn
        self._jobs: dict[str, Job] = {}
        self._queue: deque[str] = deque()
        self._cancel: set[str] = set()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._load()

    # --- persistence ---
    def _load(self) -> None:
        names = {f.name for f in dataclasses.fields(Job)}
        for path in sorted(self.folder.glob("*.json")):
            try:
                job = Job(**{k: v for k, v in json.loads(path.read_text()).items() if k in names})
            except (ValueError, TypeError):
                log.warning("skipping unreadable job file %s", path)
                continue
            if job.state in ACTIVE:
                job.state, job.error, job.finished = "failed", RESTART_ERROR, time.time()
                self._save(job)
            self._jobs[job.id] = job

    def _save(self, job: Job) -> None:
        atomic_write_bytes(self.folder / f"{job.id}.json", json.dumps(job.to_json(), indent=1).encode())

    # --- public ---
    def submit(self, category: str, data: str | Path = "", steps: int = 200, synthetic: bool = False,
               init_from: str | Path | None = None, batch_size: int = 4) -> Job:
        if not 1 <= int(steps) <= MAX_STEPS:
            raise InputError(f"steps must be between 1 and {MAX_STEPS}, got {steps}")
        with self._cond:
            number = max((int(i) for i in self._jobs if i.isdigit()), default=0) + 1
            job = Job(f"{number:04d}", category, str(data), int(steps), synthetic,
                      str(init_from) if init_from else None, int(batch_size), total=int(steps))
            self._jobs[job.id] = job
            self._queue.append(job.id)
            self._save(job)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._worker, name="easynet-finetune", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return job

    def get(self, job_id: str | None = None) -> Job:
        """A job by id; without an id the running job, else the newest one."""
        with self._cond:
            if job_id:
                if job_id.strip() not in self._jobs:
                    raise InputError(f"there is no fine-tuning job {job_id!r}")
                return self._jobs[job_id.strip()]
            running = [j for j in self._jobs.values() if j.state == "running"]
            jobs = running or sorted(self._jobs.values(), key=lambda j: j.id)
            if not jobs:
                raise InputError("no fine-tuning job yet; start one first")
            return jobs[-1]

    def jobs(self) -> list[Job]:
        """All jobs, newest first."""
        with self._cond:
            return sorted(self._jobs.values(), key=lambda j: j.id, reverse=True)

    def queue(self) -> list[str]:
        with self._cond:
            return list(self._queue)

    def cancel(self, job_id: str | None = None) -> Job:
        job = self.get(job_id)
        with self._cond:
            if job.id in self._queue:
                self._queue.remove(job.id)
                job.state, job.finished = "cancelled", time.time()
                self._save(job)
            elif job.state == "running":
                self._cancel.add(job.id)
        return job

    def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        """Block until the job has finished (tests and scripts)."""
        deadline = time.time() + timeout
        while self.get(job_id).state in ACTIVE and time.time() < deadline:
            time.sleep(0.05)
        return self.get(job_id)

    # --- worker ---
    def _worker(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                job = self._jobs[self._queue.popleft()]
                job.state = "running"
                self._save(job)
            self._run(job)

    def _run(self, job: Job) -> None:
        last_save = [0.0]

        def callback(event: Any) -> bool:
            job.step, job.total, job.eta, job.elapsed = event.step, event.total, event.eta, event.elapsed
            job.loss.append({"step": event.step, **{k: round(float(v), 6) for k, v in event.loss.items()}})
            if len(job.loss) > MAX_LOSS_POINTS:
                job.loss = job.loss[::2]
            if time.time() - last_save[0] > SAVE_EVERY_S:
                last_save[0] = time.time()
                self._save(job)
            return job.id not in self._cancel

        state, error = "done", None
        try:
            summary = self.train_fn(job, callback)
            if job.id in self._cancel:
                Path(summary.get("checkpoint", "")).unlink(missing_ok=True)
                state = "cancelled"
            else:
                job.metrics = dict(summary.get("validation") or {})
                target = workspace.sub("models") / f"{job.category}_ft_{job.id}.pt"
                os.replace(summary["checkpoint"], target)
                job.checkpoint, job.model, job.eta = str(target), target.stem, 0.0
        except EasyNetError as err:
            state, error = "failed", str(err)
        except Exception as err:  # noqa: BLE001 - any crash is reported on the job, the server keeps running
            log.exception("fine-tuning job %s crashed", job.id)
            state, error = "failed", f"{type(err).__name__}: {err}"
        with self._cond:  # the final state becomes visible together with its file
            job.state, job.error, job.finished = state, error, time.time()
            self._cancel.discard(job.id)
            self._save(job)


_runners: dict[Path, JobRunner] = {}
_runners_lock = threading.Lock()


def runner() -> JobRunner:
    """The runner of the current workspace (one per server and workspace)."""
    folder = workspace.sub("jobs")
    with _runners_lock:
        if folder not in _runners:
            _runners[folder] = JobRunner(folder)
        return _runners[folder]
