"""Fine-tune tab: queue a background training job on a category and follow it with a timer.

Every handler acts for the current session only (app/sessions.py): its jobs, its annotations, its uploads."""

from __future__ import annotations

import time
from typing import Any

import gradio as gr

from app import figures, jobs, models, workspace
from app.services import Services, bind, default_services
from app.ui import friendly, model_dropdown, number, upload_path
from easynet.card import quality_text
from easynet.config import TRAIN_PRESETS
from easynet.errors import InputError
from easynet.pipeline import FINETUNE_STEPS, default_job_steps, synthetic_categories
from easynet.results import headline

SYNTHETIC = synthetic_categories()

SOURCES = ("synthetic", "annotated", "zip")
SCRATCH = ("(from scratch: lite for RGB-D data, base for RGB-only)", "")
POLL_SECONDS = 2.0
SCRATCH_STEPS = {name: TRAIN_PRESETS[name].steps for name in ("lite", "base")}  # the recipes' own lengths


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return time.strftime("%H:%M:%S", time.gmtime(max(0.0, seconds)))


def job_markdown(job: jobs.Job, services: Services | None = None) -> str:
    services = services or default_services()
    total = job.total or job.steps
    state = "cancelling" if job.state == "running" and services.runner().cancelling(job) else job.state
    text = f"**Job {job.id}** · {job.category} · **{state}** · step {job.step}/{total}"
    if state == "running":
        text += f" · ETA {_fmt_eta(job.eta)}"
    if state == "cancelling":
        text += " · stops after the current step"
    if job.loss:
        text += f" · loss {job.loss[-1]['total']:.4f}"
    if job.state == "done":
        quality = quality_text(job.metrics) or "no validation metric recorded"
        text += f"\n\nSaved as model **{job.model}** ({quality})"
        parent = headline(job.parent_metrics)
        if parent is not None:
            text += f"; the model it started from scores {parent:.3f} on the same validation images"
        if job.worse:
            text += (
                ".\n\n⚠ **The fine-tuned model is worse than the model it started from.** It is listed, marked as "
                "worse, and never chosen as its category's default; keep using the one it started from."
            )
        else:
            text += "; it is now in every model dropdown and its category's default."
    if job.resumable:
        text += "\n\nThe server restarted while this job ran; **Resume** continues it from its last saved step."
    if job.error:
        text += f"\n\nError: {job.error}"
    queued = (services or default_services()).runner().queue()
    if queued:
        text += f"\n\nQueue (first runs next; 'other' = another session's job): {', '.join(queued)}"
    return text


def queue_rows(*, services: Services | None = None) -> list[list[Any]]:
    return [
        [j.id, j.category, j.state, f"{j.step}/{j.total or j.steps}", j.model or "", j.error or ""]
        for j in (services or default_services()).runner().jobs()
    ]


@friendly
def start(
    source: str,
    synthetic: str | None,
    annotated: str | None,
    upload: Any,
    init: str | None,
    steps: float,
    *,
    services: Services | None = None,
) -> tuple:
    """The /finetune_start endpoint: queue a job; returns (job id, status JSON, status text)."""
    services = services or default_services()
    files = services.workspace
    init_path = models.find(init).path if init else None  # before a zip is extracted, so a bad name leaves nothing
    if source == "synthetic":
        if synthetic not in SYNTHETIC:
            raise InputError(f"choose a synthetic category ({', '.join(SYNTHETIC)})")
        spec = {"category": synthetic, "synthetic": True}
    elif source == "annotated":
        category = workspace.safe_name(annotated, "category")
        files.check_annotated_for_training(category)  # before a job is queued: a refusal holds no slot
        # the reviewed and annotated defects are the user's own: they join calibration and the parent check
        spec = {"category": category, "data": files.annotations_root(), "own_defects": True}
    elif source == "zip":
        if upload_path(upload) is None:
            raise InputError("upload a zip of one category in the MVTec 3D-AD layout")
        root, category = files.extract_dataset_zip(upload_path(upload))
        spec = {"category": category, "data": root, "cleanup": [files.upload_folder(root) or root]}
    else:
        raise InputError(f"the source must be one of {', '.join(SOURCES)}, got {source!r}")
    if steps is None or steps == "" or steps == 0:  # the caller names no length
        steps = min(jobs.max_steps(), _default_steps(spec, init_path))
    job = services.runner().submit(steps=_steps(steps), init_from=init_path, **spec)
    return job.id, job.status() | {"token": job.token}, job_markdown(job, services)


def _default_steps(spec: dict[str, Any], init_path: Any) -> int:
    """A job's length when the caller names none: FINETUNE_STEPS from a model, else the recipe's own (the
    synthetic parts are RGB-D, so `lite`; a zip or the annotated set by what it holds)."""
    if init_path:
        return FINETUNE_STEPS
    return SCRATCH_STEPS["lite"] if spec.get("synthetic") else default_job_steps(spec["data"], spec["category"])


def _steps(steps: Any) -> int:
    """The step count a caller sent (a number; NaN, text or nothing are one sentence)."""
    return number(steps, "steps must be a whole number of training steps", whole=True)


@friendly
def status(job_id: str | None, token: str | None = None, *, services: Services | None = None) -> tuple:
    """The /finetune_status endpoint (also the timer tick): state, step, total, loss, checkpoint when done. A REST
    caller without a browser session names its job with the token /finetune_start returned."""
    services = services or default_services()
    try:
        job = services.runner().get(job_id or None, token=token or None)
    except InputError as err:
        if job_id:
            raise
        return {"state": None}, str(err), figures.loss_curve([]), queue_rows(services=services), {}
    curve = figures.loss_curve(job.loss)
    return job.status(), job_markdown(job, services), curve, queue_rows(services=services), job.metrics


def status_on_load(job_id: str | None, *, services: Services | None = None) -> tuple:
    """Page (re)load: show the running or newest job, so closing the tab loses nothing."""
    out = status(job_id, services=services)
    found = out[0].get("id") if isinstance(out[0], dict) else None
    return (found or job_id or "", *out)


@friendly
def cancel(job_id: str | None, token: str | None = None, *, services: Services | None = None) -> tuple:
    """The /finetune_cancel endpoint: a queued job is dropped, a running one stops after its current step (it reads
    "cancelling" at once)."""
    services = services or default_services()
    job = services.runner().cancel(job_id or None, token=token or None)
    return job.status(), job_markdown(job, services)


@friendly
def resume(job_id: str | None, token: str | None = None, *, services: Services | None = None) -> tuple:
    """The /finetune_resume endpoint: an interrupted job continues from its last saved step."""
    services = services or default_services()
    job = services.runner().resume(job_id or None, token=token or None)
    return job.id, job.status(), job_markdown(job, services)


def build(services: Services) -> tuple[gr.Dropdown, gr.Textbox, list[gr.components.Component], gr.Timer]:
    """Lay out the tab, its handlers acting on `services`; returns (its starting-checkpoint dropdown, the job-id
    box, the status outputs, the status timer)."""
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            source = gr.Radio(list(SOURCES), value="synthetic", label="Training data")
            synthetic = gr.Dropdown(
                list(SYNTHETIC),
                value=next(iter(SYNTHETIC)),
                label="Synthetic category",
                info="generated into the workspace on first use",
            )
            annotated = gr.Dropdown(
                services.workspace.annotated_categories(), label="Annotated category", allow_custom_value=True
            )
            upload = gr.File(
                label="Zip in MVTec 3D-AD layout (CATEGORY/train/good/rgb, xyz optional)", file_types=[".zip"]
            )
            init = model_dropdown(label="Start from", extra=[SCRATCH], auto=False)
            steps = gr.Number(
                value=0,
                precision=None,  # Gradio's rounding fails on NaN without a message; start() checks whole numbers
                minimum=0,
                maximum=jobs.max_steps(),
                label="Steps",
                info=f"0: the recipe's own length, {FINETUNE_STEPS} from a model; from scratch {SCRATCH_STEPS['lite']} "
                f"on RGB-D data, {SCRATCH_STEPS['base']} on photos without depth (about 20 min on 2 cores)",
            )
            with gr.Row():
                start_btn = gr.Button("Start", variant="primary", elem_id="finetune-start")
                cancel_btn = gr.Button("Cancel", variant="stop", elem_id="finetune-cancel")
                resume_btn = gr.Button("Resume", elem_id="finetune-resume")
            job_id = gr.Textbox(label="Job", info="the job shown here; empty = the running or newest job")
            token = gr.Textbox(visible=False)  # REST callers name a job by its token; the page's session owns it
        with gr.Column(scale=2):
            text = gr.Markdown("No job yet.")
            curve = gr.Plot(label="Loss")
            with gr.Row():
                metrics = gr.JSON(label="Validation metrics (when done)")
                state = gr.JSON(label="Status")
            queue = gr.Dataframe(
                headers=["job", "category", "state", "step", "model", "error"], label="Jobs", interactive=False
            )
    timer = gr.Timer(POLL_SECONDS, active=False)  # switched on by polling() only while a job is queued or running
    hidden = {"api_visibility": "undocumented", "show_progress": "hidden"}
    polling_ = bind(polling, services)
    start_btn.click(
        bind(start, services),
        [source, synthetic, annotated, upload, init, steps],
        [job_id, state, text],
        api_name="finetune_start",
    ).then(polling_, None, timer, api_name="finetune_poll_start", **hidden)
    outputs = [state, text, curve, queue, metrics]
    timer.tick(
        bind(status, services),
        [job_id, token],
        outputs,
        api_name="finetune_status",
        concurrency_limit=None,
        show_progress="hidden",
    ).then(polling_, None, timer, api_name="finetune_poll", **hidden)
    cancel_btn.click(bind(cancel, services), [job_id, token], [state, text], api_name="finetune_cancel")
    resume_btn.click(bind(resume, services), [job_id, token], [job_id, state, text], api_name="finetune_resume").then(
        polling_, None, timer, api_name="finetune_poll_resume", **hidden
    )
    source.change(
        lambda: gr.update(choices=services.workspace.annotated_categories()),
        None,
        annotated,
        api_name="finetune_annotated_categories",
        api_visibility="undocumented",
    )
    return init, job_id, outputs, timer


def polling(*, services: Services | None = None) -> gr.Timer:
    """The status timer ticks only while some job is queued or running: an idle page sends no requests."""
    return gr.Timer(active=any(j.state in jobs.ACTIVE for j in (services or default_services()).runner().jobs()))
