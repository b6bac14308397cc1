"""EasyNet-3D web app: `python app.py` (host/port from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT).

`demo` is built at module level so that `gradio app.py` (reload mode), Hugging Face Spaces and the tests can
import it; `launch()` runs only under __main__, with `launch_settings()` (upload size limit from
EASYNET_MAX_UPLOAD_MB, login from EASYNET_AUTH). Each browser session has its own jobs, annotations and
uploads (app/sessions.py). Limits are listed in README.md ("Limits").
"""

from __future__ import annotations

import os
from typing import Any

import gradio as gr

from app import annotate, batch_tab, compare, finetune, inspect_tab, jobs, models, review_tab, sessions, ui, workspace
from app.services import Services, bind, default_services

TITLE = "EasyNet-3D"
INTRO = (
    "# EasyNet-3D · RGB-D industrial anomaly detection\n"
    "Reconstruct the image, compare, and let the entropy gate decide whether depth helps "
    "([EasyNet, ACM MM 2023](https://arxiv.org/abs/2307.13925)). "
    "**Inspect** one part, **Batch** many, **Review** the verdicts (they become labels, the threshold and the next "
    "model), **Compare** the gate modes, **Annotate** your own images, **Fine-tune** a model."
)
MAX_UPLOAD_ENV = "EASYNET_MAX_UPLOAD_MB"
DEFAULT_MAX_UPLOAD_MB = 500  # per uploaded file; data set zips are the largest uploads
CACHE_SWEEP_S, CACHE_MAX_AGE_S = 900, 7200  # Gradio's upload/output cache: checked every 15 min, kept 2 hours
STATE_SESSIONS = 2000  # sessions whose gr.State Gradio keeps in memory (its default is 10,000)


def launch_settings() -> dict[str, Any]:
    """Keyword arguments for `demo.launch()`: Gradio refuses larger uploads before they reach a handler."""
    value = os.environ.get(MAX_UPLOAD_ENV, str(DEFAULT_MAX_UPLOAD_MB))
    try:
        megabytes = float(value)
    except ValueError:
        raise SystemExit(f"{MAX_UPLOAD_ENV} must be a number of megabytes, got {value!r}") from None
    settings: dict[str, Any] = {
        "max_file_size": int(megabytes * gr.FileSize.MB),
        "state_session_capacity": STATE_SESSIONS,
    }
    auth = sessions.auth_pairs()
    if auth:  # everyone logged in shares one team workspace
        settings["auth"] = auth
    # the pictures and reports a session gets are written under <workspace>/sessions; Gradio serves exactly that
    # folder (wherever the workspace lives, e.g. /data/workspace on a Space), nothing wider
    settings["allowed_paths"] = [str(workspace.sub(workspace.SESSIONS))]
    settings["head"] = review_tab.KEYS_JS  # o / n decide the open review
    return settings


def warm_imports() -> None:
    """Import, once and before serving, what a fine-tuning job and a status plot import in their own threads (two
    threads importing scikit-learn and plotly's narwhals at the same instant deadlocked a first job)."""
    import narwhals.stable.v1  # noqa: F401
    import plotly.graph_objects  # noqa: F401
    import sklearn.covariance
    import sklearn.metrics  # noqa: F401

    import easynet.pipeline  # noqa: F401


warm_imports()


def build_demo(services: Services | None = None) -> gr.Blocks:
    """The whole app; every tab's handlers act on `services` (the app's own by default)."""
    services = services or default_services()
    with gr.Blocks(title=TITLE, delete_cache=(CACHE_SWEEP_S, CACHE_MAX_AGE_S)) as demo:
        browser_session = gr.BrowserState(
            None, storage_key=sessions.BROWSER_STORAGE_KEY, secret=sessions.browser_secret()
        )
        gr.Markdown(INTRO)
        with gr.Tabs():
            with gr.Tab("Inspect", id="inspect") as inspect_tab_:
                pickers = [inspect_tab.build(services)]
            with gr.Tab("Batch", id="batch") as batch_tab_:
                pickers.append(batch_tab.build(services))
            with gr.Tab("Review", id="review") as review_tab_:
                review_model = review_tab.build(services)
            with gr.Tab("Compare", id="compare") as compare_tab:
                pickers += compare.build(services)
            with gr.Tab("Annotate", id="annotate") as annotate_tab:
                pickers.append(annotate.build(services))
            with gr.Tab("Fine-tune", id="finetune") as finetune_tab:
                init, job_id, status_outputs, job_timer = finetune.build(services)
        extras = [(None, True)] * len(pickers) + [(None, False), ([finetune.SCRATCH], False)]
        pickers += [review_model, init]
        seen = gr.State("")

        def refresh(signature: str, *values: Any) -> tuple:
            """New or removed models reach every model dropdown; nothing is sent when none changed."""
            now = "|".join(label for label, _ in models.choices())
            if now == signature:
                return (signature, *[gr.skip() for _ in values])
            return (now, *[ui.refreshed(v, extra, auto) for v, (extra, auto) in zip(values, extras)])

        # the model lists are refreshed when a tab is opened and when a fine-tuning job's status arrives (a finished
        # model appears in every picker at once); no timer polls while nothing runs
        hidden = {"api_visibility": "undocumented", "show_progress": "hidden"}
        for i, tab in enumerate((inspect_tab_, batch_tab_, compare_tab, annotate_tab, finetune_tab, review_tab_)):
            tab.select(refresh, [seen, *pickers], [seen, *pickers], api_name=f"refresh_models_{i}", **hidden)
        job_timer.tick(refresh, [seen, *pickers], [seen, *pickers], api_name="refresh_models_job", **hidden)
        # the browser's session token first, so that the job shown after a reload is this browser's
        demo.load(
            ui.friendly(sessions.adopt),
            browser_session,
            browser_session,
            api_name="session",  # an API client keeps its session across calls and restarts with its own token
            api_visibility="undocumented",
            show_progress="hidden",
        ).then(
            bind(finetune.status_on_load, services),
            job_id,
            [job_id, *status_outputs],
            api_name="finetune_on_load",
            **hidden,
        ).then(bind(finetune.polling, services), None, job_timer, api_name="finetune_poll_on_load", **hidden)
    return demo


demo = build_demo()

if __name__ == "__main__":
    workspace.Sweeper(lambda: jobs.runner().active_owners()).start()  # old session folders, on a timer
    demo.launch(**launch_settings())
