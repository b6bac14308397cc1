"""Review tab: the queue of inspected images (NG and UNSURE first, then the nearest the threshold), a person's
verdict in one click or key (o / n), the mask corrected in the Annotate editor; the operating point from the judged
images, saved as a new model version; the audit trail and per-batch reports. State: app/reviews.py."""

from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app import models, reviews
from app.annotate import editor_value, mask_from_editor
from app.services import Services
from app.ui import friendly, model_dropdown, number
from easynet.data.io import read_mask, read_rgb
from easynet.errors import InputError
from easynet.operating import confusion, roc
from easynet.store import audit_csv

HEADERS = ["id", "image", "model", "model verdict", "score / threshold", "reason", "batch"]
TARGETS = ("miss at most", "reject at most")
CUT_EXPECTED = "the cut-off must be a number (1 = today's threshold)"
SHARE_EXPECTED = "the target must be a percentage"
VERSION_HEADERS = ["version", "active", "parent", "threshold x", "worse than parent"]
# o and n decide the open review while no text field has the focus (a hundred images in minutes)
KEYS_JS = """
<script>
document.addEventListener("keydown", (e) => {
  const tag = (e.target.tagName || "").toLowerCase();
  if (tag === "input" || tag === "textarea" || e.ctrlKey || e.metaKey || e.altKey) return;
  const id = {o: "review-ok", n: "review-ng"}[e.key.toLowerCase()];
  const button = id && document.querySelector(`#${id}`);
  if (button && button.offsetParent !== null) { e.preventDefault(); button.click(); }
});
</script>
"""


def _table(page: int) -> list[list[Any]]:
    return [
        [r["id"], r["name"], r["model"], r["model_verdict"], round(r["score"] / r["threshold"], 3), r["reason"] or "",
         r["batch"] or ""]
        for r in reviews.queue(page)
    ]  # fmt: skip


@friendly
def load(page: float = 0) -> tuple:
    """The /review_queue endpoint: one page of the queue, the count waiting, and the first item opened."""
    page = max(0, number(page or 0, "the page must be a whole number", whole=True))
    rows = _table(page)
    waiting = reviews.waiting()
    note = (
        f"**{waiting} image(s) wait for a verdict** (page {page + 1}; NG and UNSURE first, then the nearest the "
        "threshold)."
    )
    opened = show(rows[0][0]) if rows else (None, "The queue is empty: every inspected image has a verdict.", None, "")
    return (gr.update(value=rows, headers=HEADERS), note, *opened)


@friendly
def show(review_id: Any) -> tuple:
    """An item: its heat picture, the model's verdict, the editor with the model's mask, and its id."""
    row = reviews.item(review_id)
    image = read_rgb(row["image"])
    mask = read_mask(row["mask"]) > 0
    text = (
        f"**{row['name']}** · model **{row['model']}** said **{row['model_verdict']}** "
        f"(score {row['score']:.4f}, threshold {row['threshold']:.4f}){': ' + row['reason'] if row['reason'] else ''}."
        " Press **o** for OK or **n** for NG; for NG, correct the red mask first if needed."
    )
    return read_rgb(row["picture"]), text, editor_value(image, mask), str(row["id"])


def _decide(review_id: Any, verdict: str, defect: str | None, editor: Any, page: float) -> tuple:
    if not review_id:
        raise InputError("open an image of the queue first")
    row = reviews.item(review_id)
    mask = mask_from_editor(editor, read_rgb(row["image"])) if verdict == "NG" else None
    done = reviews.decide(review_id, verdict, defect, mask if mask is not None and mask.any() else None)
    message = f"Saved: {row['name']} is **{verdict}** (the model said {row['model_verdict']}) -> {done['entry']}."
    return (*load(page), message)


@friendly
def decide_ok(review_id: Any, defect: str | None, editor: Any, page: float = 0) -> tuple:
    return _decide(review_id, "OK", defect, editor, page)


@friendly
def decide_ng(review_id: Any, defect: str | None, editor: Any, page: float = 0) -> tuple:
    return _decide(review_id, "NG", defect, editor, page)


@friendly
def decide_api(review_id: Any, verdict: str, defect: str | None = None) -> dict[str, Any]:
    """The /review_decide endpoint: a line system posts the person's verdict on the review id /predict returned."""
    return reviews.decide(review_id, verdict, defect)


def _figure(ratios: np.ndarray, labels: np.ndarray, cut: float) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("score / threshold by the person's verdict", "ROC"))
    for label, name, colour in ((0, "judged OK", "#2e7d32"), (1, "judged NG", "#c62828")):
        fig.add_trace(go.Histogram(x=ratios[labels == label], name=name, marker_color=colour, opacity=0.6), 1, 1)
    for x, name, dash in ((1.0, "today's threshold", "dot"), (cut, "chosen threshold", "solid")):
        fig.add_vline(x=x, line_dash=dash, line_color="#333", row=1, col=1, annotation_text=name)
    fr, caught, _ = roc(ratios, labels)
    fig.add_trace(go.Scatter(x=fr, y=caught, mode="lines", name="ROC", line={"color": "#1f77b4"}), 1, 2)
    for x, name, symbol in ((1.0, "today", "circle-open"), (cut, "chosen", "x")):
        c = confusion(ratios, labels, x)
        fig.add_trace(
            go.Scatter(
                x=[c.false_reject_rate], y=[1 - c.miss_rate], mode="markers", name=name,
                marker={"size": 12, "symbol": symbol, "color": "#333"},
            ),
            1,
            2,
        )  # fmt: skip
    fig.update_layout(height=340, barmode="overlay", margin={"l": 40, "r": 10, "t": 40, "b": 40})
    fig.update_xaxes(title_text="false-reject rate", row=1, col=2)
    fig.update_yaxes(title_text="defects caught", row=1, col=2)
    return fig


@friendly
def operating(model: str | None, cut: float = 1.0) -> tuple:
    """The /operating_point endpoint: histograms, ROC and the counts at cut-off ``cut`` (1 = today's threshold)."""
    if not model or model == models.AUTO:
        raise InputError("choose the model whose threshold to set")
    ratios, labels = reviews.judged(model)
    if not len(labels):
        return None, f"No judged images of {model} yet: review some in the queue above."
    cut = number(cut, CUT_EXPECTED)
    c = confusion(ratios, labels, cut)
    text = (
        f"{int((labels == 0).sum())} judged OK, {int((labels == 1).sum())} judged NG. At {float(cut):.3f} x today's "
        f"threshold: {c.caught} defects caught, **{c.missed} missed** ({c.miss_rate:.1%}), **{c.false_rejects} good "
        f"parts rejected** ({c.false_reject_rate:.1%}), {c.passed} passed."
    )
    return _figure(ratios, labels, float(cut)), text


@friendly
def find(model: str | None, target: str, share: float) -> tuple:
    """The cut-off that meets a target on the judged images ("miss at most 1 %" of defects, "reject at most 2 %")."""
    kind = "miss" if target == TARGETS[0] else "false reject"
    cut = reviews.cutoff(model, kind, number(share, SHARE_EXPECTED) / 100)
    return (gr.update(value=round(cut, 4)), *operating(model, cut))


@friendly
def save(model: str | None, cut: float, target: str, share: float) -> tuple:
    """A new version of the model at this threshold (weights untouched), active at once."""
    cut, share = number(cut, CUT_EXPECTED), number(share, SHARE_EXPECTED)
    version = reviews.save_version(model, cut, {"kind": target, "percent": share})
    return f"Saved **{model} v{version}** (threshold x {float(cut):.4f}); Inspect and Batch use it now.", versions(
        model
    )


@friendly
def versions(model: str | None) -> dict[str, Any]:
    """The /model_versions endpoint: every version of a model with its figures, the active one marked."""
    if not model or model == models.AUTO:
        return gr.update(value=[])
    rows = []
    for v in models.versions(model):
        op = (v["facts"] or {}).get("operating", {})
        rows.append(
            [v["version"], "active" if v["active"] else "", op.get("parent", ""),
             round(op.get("cutoff", 1.0), 4) if op else 1.0, "yes" if v["worse"] else ""]
        )  # fmt: skip
    return gr.update(value=rows, headers=VERSION_HEADERS)


@friendly
def rollback(model: str | None, version: float) -> tuple:
    version = number(version, "the version must be a whole number", whole=True)
    models.activate(model, version)
    return f"**{model} v{version}** is active again.", versions(model)


def active_versions() -> dict[str, Any]:
    """The /active_versions endpoint: per category, the model and version Inspect and Batch use by default."""
    out = {}
    for m in models.list_models():
        if m.category and models.for_category(m.category) == m.name:
            out[m.category] = {"model": m.name, "version": m.version, "source": m.source}
    return out


@friendly
def report(batch: str | None) -> dict[str, Any]:
    """The /review_batch_report endpoint: model against person for one batch."""
    if not batch:
        raise InputError("choose a batch")
    return reviews.batch_report(batch)


@friendly
def export() -> str:
    """The audit trail of this workspace as CSV (the file the button downloads)."""
    from app import workspace
    from easynet.atomic import atomic_write_text

    text = audit_csv(workspace.store().audit_rows())
    return str(atomic_write_text(workspace.own("exports") / "audit.csv", text))


def build(services: Services) -> gr.Dropdown:
    """Lay out the tab; returns its model dropdown (refreshed by the app when models change)."""
    current = gr.Textbox(visible=False, elem_id="review-current")
    page = gr.Number(value=0, visible=False)  # handlers check whole numbers (Gradio's rounding fails on NaN)
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            waiting = gr.Markdown("Open this tab to see the queue.", elem_id="review-waiting")
            table = gr.Dataframe(value=[], headers=HEADERS, interactive=False, label="Queue", elem_id="review-queue")
            with gr.Row():
                refresh = gr.Button("Refresh", elem_id="review-refresh")
                later = gr.Button("Next page")
        with gr.Column(scale=3):
            text = gr.Markdown(elem_id="review-item")
            picture = gr.Image(label="Heat map", interactive=False, format="png", height=260, elem_id="review-picture")
            with gr.Row():
                ok = gr.Button("OK (o)", variant="primary", elem_id="review-ok")
                ng = gr.Button("NG (n)", variant="stop", elem_id="review-ng")
                defect = gr.Textbox(label="Defect type (NG)", value="defect", elem_id="review-defect")
            editor = gr.ImageEditor(
                type="numpy", format="png", transforms=(), image_mode="RGBA", sources=(), height=360,
                label="Defect mask (red is saved for NG; the model's mask to start with)", elem_id="review-editor",
                brush=gr.Brush(default_size=6, colors=["#ff0000"], color_mode="fixed"),
            )  # fmt: skip
            saved = gr.Markdown(elem_id="review-saved")
    with gr.Accordion("Operating point: set the threshold from the judged images", open=False):
        with gr.Row():
            model = model_dropdown(label="Model", elem_id="review-model", auto=False)
            target = gr.Radio(list(TARGETS), value=TARGETS[0], label="Target", elem_id="review-target")
            share = gr.Number(value=1.0, label="% of defects missed / good parts rejected", elem_id="review-share")
            find_btn = gr.Button("Find the threshold", elem_id="review-find")
        cut = gr.Slider(0.05, 5.0, value=1.0, step=0.0001, label="threshold x (1 = today's)", elem_id="review-cut")
        plot = gr.Plot(label="Judged images")
        counts = gr.Markdown(elem_id="review-counts")
        with gr.Row():
            save_btn = gr.Button("Save as a new version", variant="primary", elem_id="review-save")
            back = gr.Number(value=1, label="version", minimum=1)
            back_btn = gr.Button("Make this version active (roll back)", elem_id="review-rollback")
        version_note = gr.Markdown(elem_id="review-version")
        version_table = gr.Dataframe(
            value=[], headers=VERSION_HEADERS, interactive=False, label="Versions", elem_id="review-versions"
        )
    with gr.Accordion("Audit trail and batch reports", open=False):
        with gr.Row():
            batch = gr.Dropdown([], label="Batch", allow_custom_value=True, elem_id="review-batch")
            report_btn = gr.Button("Model against person")
            csv_btn = gr.Button("Download the audit trail (CSV)", elem_id="review-csv")
        batch_report = gr.JSON()
        csv_file = gr.File(label="audit.csv", interactive=False)

    queue_out = [table, waiting, picture, text, editor, current]
    refresh.click(load, page, queue_out, api_name="review_queue")
    hidden = {"api_visibility": "undocumented"}
    later.click(lambda p: int(p or 0) + 1, page, page, api_name="review_next_page", **hidden).then(
        load, page, queue_out, api_name="review_page", **hidden
    )
    table.select(on_select, None, [picture, text, editor, current], api_name="review_open", **hidden)
    for button, handler, name in ((ok, decide_ok, "review_ok"), (ng, decide_ng, "review_ng")):
        button.click(handler, [current, defect, editor, page], [*queue_out, saved], api_name=name)
    gr.api(decide_api, api_name="review_decide")
    gr.api(active_versions, api_name="active_versions")
    cut.release(operating, [model, cut], [plot, counts], api_name="operating_point")
    find_btn.click(find, [model, target, share], [cut, plot, counts], api_name="operating_find")
    save_btn.click(save, [model, cut, target, share], [version_note, version_table], api_name="operating_save")
    back_btn.click(rollback, [model, back], [version_note, version_table], api_name="model_rollback")
    model.change(versions, model, version_table, api_name="model_versions")
    report_btn.click(report, batch, batch_report, api_name="review_batch_report")
    csv_btn.click(export, None, csv_file, api_name="audit_csv")
    batch.focus(lambda: gr.update(choices=reviews.batches()), None, batch, api_name="review_batches", **hidden)
    return model


def on_select(evt: gr.SelectData) -> tuple:
    """A click on a queue row opens that image."""
    return show(evt.row_value[0])
