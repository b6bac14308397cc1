"""Background fine-tuning: one job at a time per server, a FIFO queue, each job's state in the workspace database.

A job's row (easynet.store, table ``jobs``) is written on every change (throttled while training), so a reloaded
page, another browser tab or a restarted server sees the same state. Jobs that were running or queued when the
server stopped are ``interrupted``; one that saved a snapshot can be resumed from it (``resume``).

Each job belongs to the session that started it (app/sessions.py) and to the client address it came from: other
sessions can neither see, cancel nor use it, except with the job's token, which ``submit`` returns to its caller
(REST clients without a browser session follow and cancel their jobs with it). Quotas bound the queue per session,
per client address (so minting sessions takes no more slots) and in all; a job's extracted upload and its work
folder are deleted when it ends, except an interrupted job's, which waits to be resumed. A finished model is moved
into place first and then registered together with the job's final state, in one transaction.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app import models, sessions, workspace
from easynet.errors import EasyNetError, InputError
from easynet.results import TrainSummary, headline, worse_than
from easynet.settings import env_int
from easynet.store import dumps, loads

ACTIVE = ("queued", "running")
INTERRUPTED = "interrupted"
RESTART_ERROR = "interrupted by a server restart"
SAVE_EVERY_S = 1.0  # at most one state write per second while training
MAX_LOSS_POINTS = 1000  # the loss history is thinned to this many points
MAX_STEPS = 100_000
SPACE_MAX_STEPS = 2_000  # on a Hugging Face Space (SPACE_ID set) a job shares a small CPU with every visitor
MAX_STEPS_ENV = "EASYNET_MAX_STEPS"
MAX_ACTIVE_PER_SESSION = 2  # queued + running jobs of one session, and of one client address
MAX_ACTIVE_PER_SESSION_ENV = "EASYNET_MAX_JOBS_PER_SESSION"
MAX_ACTIVE_TOTAL = 8  # queued + running jobs of the whole server
MAX_ACTIVE_TOTAL_ENV = "EASYNET_MAX_JOBS"
SNAPSHOT = "checkpoint.pt"  # the file a job trains into (periodic snapshots, then the result)
log = logging.getLogger(__name__)


@dataclass
class Job:
    """One fine-tuning run and its progress (stored as JSON in its database row)."""

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
    parent_metrics: dict[str, Any] | None = None  # the starting model on the same validation data
    worse: bool | None = None  # worse than the starting model on validation (never made active)
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None
    owner: str = sessions.LOCAL  # the session that started it (a folder name, never a secret)
    client: str | None = None  # the client address it came from (quota)
    token: str = field(default_factory=lambda: secrets.token_hex(16))  # proof of ownership for REST callers
    cleanup: list[str] = field(default_factory=list)  # folders deleted when the job ends (its extracted upload)
    work: str = ""  # the folder it writes to while it trains (<workspace>/jobs/<id>.work), deleted when it ends
    resume_from: str | None = None  # a snapshot to continue from (a resumed interrupted job)
    own_defects: bool = False  # the annotated (reviewed) set: its labelled defects join calibration and the check

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def status(self) -> dict[str, Any]:
        """The compact view behind /finetune_status (file names only, never a server path, never the token)."""
        last = self.loss[-1]["total"] if self.loss else None
        return {
            "id": self.id,
            "state": self.state,
            "step": self.step,
            "total": self.total or self.steps,
            "loss": last,
            "eta": self.eta,
            "category": self.category,
            "checkpoint": Path(self.checkpoint).name if self.checkpoint else None,
            "model": self.model,
            "metrics": self.metrics,
            "validation": headline(self.metrics),
            "parent_validation": headline(self.parent_metrics),
            "worse_than_parent": self.worse,
            "error": self.error,
            "resumable": self.resumable,
        }

    @property
    def resumable(self) -> bool:
        return self.state == INTERRUPTED and (Path(self.work) / SNAPSHOT).is_file()


def max_steps() -> int:
    """Steps one job may ask for: EASYNET_MAX_STEPS, else SPACE_MAX_STEPS on a Space, else MAX_STEPS."""
    return env_int(MAX_STEPS_ENV, SPACE_MAX_STEPS if os.environ.get("SPACE_ID") else MAX_STEPS)


def scrub(text: str) -> str:
    """An error message without server paths (the workspace and the repository become relative names)."""
    for base, name in (
        (str(workspace.root()), "workspace"),
        (str(workspace.assets_root()), "."),
        (str(workspace.SOURCE_TREE), "."),
    ):
        text = text.replace(base, name)
    return text


TrainFn = Callable[[Job, Callable[[Any], bool]], TrainSummary]


def default_train(job: Job, callback: Callable[[Any], bool]) -> TrainSummary:
    """Generate the synthetic data if needed, then the library's app training (pipeline.train_job) into the job's
    work folder, with periodic snapshots so that an interrupted job can be resumed."""
    from easynet.pipeline import train_job

    data = workspace.ensure_synthetic(job.category) if job.synthetic else job.data
    out = Path(job.work) / SNAPSHOT
    return train_job(
        data,
        job.category,
        out,
        steps=job.steps,
        batch_size=job.batch_size,
        init_from=job.init_from,
        callback=callback,
        resume=job.resume_from,
        snapshot_every=max(10, job.steps // 10),
        own_defects=job.own_defects,
    )


class JobRunner:
    """FIFO queue + one worker thread; `cancel` sets a flag that the training callback reads."""

    def __init__(self, folder: Path, train_fn: TrainFn = default_train) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.store = workspace.store(self.folder.parent)  # the workspace that holds the jobs folder
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
        for row in self.store.query("SELECT data FROM jobs ORDER BY id"):
            try:
                job = Job(**{k: v for k, v in loads(row["data"]).items() if k in names})
            except (ValueError, TypeError):
                log.warning("skipping an unreadable job row")
                continue
            if job.state in ACTIVE:  # it was running or waiting when the server stopped
                job.state, job.error, job.finished = INTERRUPTED, RESTART_ERROR, time.time()
                if not job.resumable:
                    self._clean(job)
                self._save(job)
            self._jobs[job.id] = job

    def _save(self, job: Job, db: Any = None) -> None:
        values = (job.id, job.owner, job.client, job.token, job.state, job.created, job.finished, dumps(job.to_json()))
        sql = (
            "INSERT INTO jobs (id, owner, client, token, state, created, finished, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state, "
            "finished = excluded.finished, data = excluded.data"
        )
        if db is not None:
            db.execute(sql, values)
        else:
            with self.store.transaction() as conn:
                conn.execute(sql, values)

    # --- public ---
    def submit(
        self,
        category: str,
        data: str | Path = "",
        steps: int = 200,
        synthetic: bool = False,
        init_from: str | Path | None = None,
        batch_size: int = 4,
        owner: str | None = None,
        cleanup: list[str | Path] | tuple = (),
        client: str | None = None,
        own_defects: bool = False,
    ) -> Job:
        """Queue a job for `owner` (default: the current session) and `client` (default: the request's address).
        `cleanup` folders are deleted when the job ends, and at once when it is refused (a quota or an impossible
        value)."""
        owner = owner or sessions.owner()
        client = client if client is not None else sessions.client()
        try:
            with self._cond:
                self._check_quota(int(steps), owner, client)
                number = max((int(i) for i in self._jobs if i.isdigit()), default=0) + 1
                job = Job(
                    f"{number:04d}",
                    category,
                    str(data),
                    int(steps),
                    synthetic,
                    str(init_from) if init_from else None,
                    int(batch_size),
                    total=int(steps),
                    owner=owner,
                    client=client,
                    cleanup=[str(c) for c in cleanup],
                    own_defects=own_defects,
                )
                job.work = str(self.folder / f"{job.id}.work")
                self._jobs[job.id] = job
                self._enqueue(job)
        except BaseException:
            for folder in cleanup:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        return job

    def _enqueue(self, job: Job) -> None:
        """Put a job in the queue (the caller holds the lock) and make sure the worker runs."""
        self._queue.append(job.id)
        self._save(job)
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._worker, name="easynet-finetune", daemon=True)
            self._thread.start()
        self._cond.notify_all()

    def _check_quota(self, steps: int, owner: str, client: str | None) -> None:
        limit = max_steps()
        if not 1 <= steps <= limit:
            raise InputError(f"steps must be between 1 and {limit} on this server, got {steps}")
        active = [j for j in self._jobs.values() if j.state in ACTIVE]
        per_session = env_int(MAX_ACTIVE_PER_SESSION_ENV, MAX_ACTIVE_PER_SESSION)
        mine = sum(j.owner == owner for j in active)
        if owner != sessions.LOCAL and mine >= per_session:  # LOCAL: the operator's own calls (no web request)
            raise InputError(
                f"this session already has {mine} fine-tuning jobs queued or running, the limit; wait "
                "for one to finish or cancel one"
            )
        from_client = sum(j.client == client for j in active) if client else 0
        if owner not in (sessions.LOCAL, sessions.TEAM) and from_client >= per_session:
            raise InputError(
                f"your address already has {from_client} fine-tuning jobs queued or running, the limit (new "
                "sessions do not raise it); wait for one to finish or cancel one"
            )
        total = env_int(MAX_ACTIVE_TOTAL_ENV, MAX_ACTIVE_TOTAL)
        if len(active) >= total:
            raise InputError(
                f"the server already has {len(active)} fine-tuning jobs queued or running, the limit; "
                "try again when one has finished"
            )

    def get(self, job_id: str | None = None, owner: str | None = None, token: str | None = None) -> Job:
        """A job of `owner` (default: the current session) by id, or any job whose `token` is given; without an id
        the owner's running job, else its newest one. Another session's job is reported as not existing."""
        owner = owner or sessions.owner()
        with self._cond:
            if job_id and token:
                job = self._jobs.get(job_id.strip())
                if job is not None and secrets.compare_digest(job.token, str(token)):
                    return job
            mine = {i: j for i, j in self._jobs.items() if j.owner == owner}
            if job_id:
                if job_id.strip() not in mine:
                    raise InputError(f"there is no fine-tuning job {job_id!r} in this session")
                return mine[job_id.strip()]
            running = [j for j in mine.values() if j.state == "running"]
            jobs = running or sorted(mine.values(), key=lambda j: j.id)
            if not jobs:
                raise InputError("no fine-tuning job yet; start one first")
            return jobs[-1]

    def jobs(self, owner: str | None = None) -> list[Job]:
        """The jobs of `owner` (default: the current session), newest first."""
        owner = owner or sessions.owner()
        with self._cond:
            return sorted((j for j in self._jobs.values() if j.owner == owner), key=lambda j: j.id, reverse=True)

    def queue(self, owner: str | None = None) -> list[str]:
        """Queued job ids in order: another session's jobs appear as 'other' (they run first all the same)."""
        owner = owner or sessions.owner()
        with self._cond:
            return [i if self._jobs[i].owner == owner else "other" for i in self._queue]

    def active_owners(self) -> set[str]:
        """Owners whose session folders must stay: active jobs, and interrupted ones waiting to be resumed."""
        with self._cond:
            return {j.owner for j in self._jobs.values() if j.state in ACTIVE or j.resumable}

    def cancel(self, job_id: str | None = None, owner: str | None = None, token: str | None = None) -> Job:
        """A queued job is dropped at once; a running one is marked "cancelling" and stops after its current step."""
        job = self.get(job_id, owner, token)
        with self._cond:
            if job.id in self._queue:
                self._queue.remove(job.id)
                job.state, job.finished = "cancelled", time.time()
                self._clean(job)
                self._save(job)
            elif job.state == "running":
                self._cancel.add(job.id)
            elif job.state == INTERRUPTED:
                job.state = "cancelled"
                self._clean(job)
                self._save(job)
        return job

    def cancelling(self, job: Job) -> bool:
        """Whether a running job has been asked to stop (the page says so at once)."""
        with self._cond:
            return job.id in self._cancel

    def resume(self, job_id: str | None = None, owner: str | None = None, token: str | None = None) -> Job:
        """Queue an interrupted job again, from its last snapshot (quotas apply as to a new job)."""
        job = self.get(job_id, owner, token)
        with self._cond:
            if not job.resumable:
                raise InputError(f"job {job.id} is {job.state}, with no saved step to resume from")
            self._check_quota(job.steps, job.owner, job.client)
            job.resume_from = str(Path(job.work) / f"resume-{job.step}.pt")
            os.replace(Path(job.work) / SNAPSHOT, job.resume_from)
            job.state, job.error, job.finished = "queued", None, None
            self._enqueue(job)
        return job

    def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        """Block until the job has finished (tests and scripts; any owner)."""
        deadline = time.time() + timeout
        while self._jobs[job_id].state in ACTIVE and time.time() < deadline:
            time.sleep(0.05)
        return self._jobs[job_id]

    def _clean(self, job: Job) -> None:
        """Delete what a job no longer needs once it has ended: its extracted upload and its work folder."""
        for folder in [*job.cleanup, job.work or str(self.folder / f"{job.id}.work")]:
            shutil.rmtree(folder, ignore_errors=True)

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

    def _callback(self, job: Job) -> Callable[[Any], bool]:
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

        return callback

    def _run(self, job: Job) -> None:
        Path(job.work).mkdir(parents=True, exist_ok=True)
        state, error, target = "done", None, None
        try:
            summary = self.train_fn(job, self._callback(job))
            if job.id in self._cancel:  # a run stopped by the cancel returns no model; one that finished first does
                state = "cancelled"
                if summary.checkpoint:
                    Path(summary.checkpoint).unlink(missing_ok=True)
            else:
                job.metrics = dict(summary.validation or {})
                job.parent_metrics = summary.parent_validation
                job.worse = worse_than(job.metrics, job.parent_metrics)
                target = workspace.own("models", job.owner) / f"{job.category}_ft_{job.id}.pt"
                os.replace(summary.checkpoint, target)  # in place first; listed only once registered below
                job.checkpoint, job.model, job.eta = str(target), target.stem, 0.0
        except EasyNetError as err:
            state, error = "failed", scrub(str(err))
        except Exception as err:  # any crash is reported on the job, the server keeps running
            log.exception("fine-tuning job %s crashed", job.id)
            state, error = "failed", scrub(f"{type(err).__name__}: {err}")
        self._clean(job)  # before the final state is visible: an ended job has left nothing behind
        with self._cond, self.store.transaction() as db:  # the final state and the model's listing together
            job.state, job.error, job.finished = state, error, time.time()
            self._cancel.discard(job.id)
            if state == "done" and target is not None:
                models.register(db, job.owner, target, job.category, job.init_from, job.metrics, job.parent_metrics)
            self._save(job, db)
        try:
            workspace.sweep_sessions(self.active_owners())
        except (OSError, EasyNetError):
            log.warning("sweeping old session folders failed", exc_info=True)


_runners: dict[Path, JobRunner] = {}
_runners_lock = threading.Lock()


def runner() -> JobRunner:
    """The runner of the current workspace (one per server and workspace)."""
    folder = workspace.sub("jobs")
    with _runners_lock:
        if folder not in _runners:
            _runners[folder] = JobRunner(folder)
        return _runners[folder]
