"""Inspect tab: one RGB (+ depth) image -> verdict, calibrated heat map, reconstructions, gate decision, 3D view."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from app import figures, limits, models, reviews, ui
from app.services import Services, bind, default_services
from app.ui import GATE_HELP, GATES, STATE_TTL_S, compact_state, friendly, image_upload, model_dropdown, upload_path
from easynet.data.io import read_depth, read_rgb
from easynet.errors import InputError
from easynet.predict import ModelCard, Prediction, Verdict
from easynet.visualize import depth_preview, to_uint8

COLOUR_BY = ("anomaly", "rgb")
DEPTH_TYPES = [".tiff", ".tif", ".png", ".npy"]
IMAGE_HEIGHT = 260
OUTPUT_HEIGHT = 220
SAMPLE_COLUMNS = 8  # 16 shipped samples = two rows, all visible without scrolling on a 1366x768 screen
SAMPLE_HEIGHT = 330  # px: exactly the two rows
DISPLAY_MIN_SIDE = 256  # model-size pictures are enlarged (nearest neighbour) to at least this for display
REVIEW_SIDE = 512  # the heat picture kept with each image in the review queue


def run(
    rgb: Any,
    depth: Any,
    model: str | None,
    gate: str = "control",
    sensitivity: float = 1.0,
    *,
    services: Services | None = None,
) -> tuple[Prediction, np.ndarray, ModelCard]:
    """Predict one image with a cached Predictor; returns (prediction, original RGB, the model's card)."""
    rgb_path = upload_path(rgb)
    if rgb_path is None:
        raise InputError("upload an RGB image (or click a sample) first")
    predictor = (services or default_services()).predictors.get(model)
    with limits.admitted(rgb_path, upload_path(depth)):  # memory for this image, or wait, or a sentence
        image = read_rgb(rgb_path)
        p = predictor.predict(image, upload_path(depth), gate=gate, sensitivity=float(sensitivity))
    return p, image, predictor.card


BANNER_COLOURS = {
    "OK": ("#e8f5e9", "#1b5e20", "#2e7d32"),
    "NG": ("#ffebee", "#b71c1c", "#c62828"),
    "UNSURE": ("#fff8e1", "#8a5300", "#f59f00"),
}
BANNER_WORDS = {"OK": "OK · normal", "NG": "NG · anomalous", "UNSURE": "UNSURE · check by hand"}
BANNER_STYLE = (
    "border:2px solid {edge};background:{bg};color:{fg};border-radius:8px;padding:10px 14px;"
    "font-size:15px;line-height:1.45"
)


def banner_html(verdict: Verdict, card: ModelCard | None, sensitivity: float = 1.0) -> str:
    """The verdict banner: green OK, red NG or amber UNSURE with its reason in large type, the score against the
    threshold, and the model with the category it was trained on."""
    bg, fg, edge = BANNER_COLOURS[verdict.label]
    sign = "≥" if verdict.score >= verdict.threshold else "<"
    lines = [f'<div style="font-size:26px;font-weight:700">{BANNER_WORDS[verdict.label]}</div>']
    if verdict.reason:
        size = "18px;font-weight:600" if verdict.label == "UNSURE" else "15px"
        text = html.escape(verdict.reason[:1].upper() + verdict.reason[1:])
        lines.append(f'<div class="easynet-reason" style="font-size:{size}">{text}.</div>')
    lines.append(
        f"score <b>{verdict.score:.4f}</b> {sign} threshold <b>{verdict.threshold:.4f}</b> "
        f"(×{verdict.ratio:.2f}; {verdict.head} head, gate {verdict.gate}"
        f"{f', sensitivity {sensitivity:g}' if sensitivity != 1 else ''})"
    )
    if card is not None:
        trained = f"Model <b>{html.escape(card.name)}</b> was trained on <b>{html.escape(card.category or '?')}</b>"
        lines.append(f"{trained}{f' ({card.quality})' if card.quality else ''}.")
    style = BANNER_STYLE.format(edge=edge, bg=bg, fg=fg)
    label = verdict.label.lower()
    return f'<div class="easynet-verdict verdict-{label}" style="{style}">{"<br>".join(lines)}</div>'


def gate_markdown(p: Prediction) -> str:
    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    def name(used: str) -> str:
        return "RGB + depth (fused)" if used == "fused" else "RGB only"

    head = name(p.used)
    if p.head_scores is not None:
        rule = "score rule: control uses the head whose score is the larger multiple of its threshold"
        paper = ""
        if p.entropy_rule_head is not None:
            paper = (
                f" · entropy RGB {fmt(p.entropy_rgb)}, fused {fmt(p.entropy_fused)}, alpha {p.alpha:.4f}: the "
                f"paper's entropy rule would use the {name(p.entropy_rule_head)} head"
            )
        return f"**Gate `{p.gate}`** used the **{head}** head: {p.gate_reason} ({rule}){paper}"
    rule = "control uses the fused head when H(fused) > H(rgb) + alpha"
    return (
        f"**Gate `{p.gate}`** used the **{head}** head: {p.gate_reason} · entropy RGB {fmt(p.entropy_rgb)}, "
        f"fused {fmt(p.entropy_fused)}, alpha {p.alpha:.4f} ({rule})"
    )


def enlarge(image: np.ndarray) -> np.ndarray:
    """Nearest-neighbour upscale of a small picture so browsers show pixels, not a thumbnail."""
    factor = int(np.ceil(DISPLAY_MIN_SIDE / max(1, min(image.shape[:2]))))
    return image if factor <= 1 else np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def render(
    p: Prediction, image: np.ndarray, colour_by: str, card: ModelCard, cloud: Any = None, heat: Any = None
) -> tuple:
    """Prediction -> (the tab's outputs without the state, the heat map); ``cloud`` and ``heat`` are passed when
    already computed."""
    inputs = p.inputs
    heat = p.heatmap_original if heat is None else heat  # on the uploaded pixels, at their own aspect
    if cloud is None:
        cloud = figures.point_cloud(inputs.xyz, inputs.foreground_full, image, heat, colour_by)
    if inputs.depth is None:
        depth_in = rec_depth = figures.placeholder("no depth given")
    else:
        depth_in = depth_preview(inputs.depth)
        rec_depth = (
            figures.placeholder(f"the {p.gate} gate did not run the depth branch")
            if p.rec_depth is None
            else depth_preview(np.where(inputs.foreground, p.rec_depth, 0))
        )
    pictures = [to_uint8(inputs.rgb), to_uint8(p.rec_rgb), depth_in, rec_depth]
    return (
        banner_html(p.verdict, card, p.sensitivity),
        figures.heat_picture(image, heat, DISPLAY_MIN_SIDE),
        *[enlarge(x) for x in pictures],
        gate_markdown(p),
        cloud,
        p.to_json(),
    ), heat


@friendly
def predict(
    rgb: Any,
    depth: Any,
    model: str | None,
    gate: str = "control",
    sensitivity: float = 1.0,
    colour_by: str = "anomaly",
    *,
    services: Services | None = None,
) -> tuple:
    """The /predict endpoint: outputs + a state holding the inputs and the prediction, so that a sensitivity change
    re-renders without the network and a gate change without a re-upload. The image joins the session's review
    queue; its JSON carries the review id (post the person's verdict with /review_decide)."""
    return _predict(rgb, depth, model, gate, sensitivity, colour_by, services=services, queue=True)


def _predict(
    rgb: Any,
    depth: Any,
    model: str | None,
    gate: str,
    sensitivity: float,
    colour_by: str,
    *,
    services: Services | None,
    queue: bool,
) -> tuple:
    p, image, card = run(rgb, depth, model, gate, sensitivity, services=services)
    out, heat = render(p, image, colour_by, card)
    if queue:  # an inspection, not a re-render of one
        review = reviews.record(p, upload_path(rgb), upload_path(depth), figures.fit_display(out[1], REVIEW_SIDE))
        out = (*out[:-1], out[-1] | {"review_id": review})
    state = compact_state(upload_path(rgb), upload_path(depth), image, p.inputs.xyz, p.inputs.foreground_full, heat)
    state |= {"prediction": p.light(), "card": card, "model": model, "gate": gate}
    return (*out, state)


@friendly
def rerender(
    state: dict | None,
    model: str | None,
    gate: str,
    sensitivity: float,
    colour_by: str,
    *,
    services: Services | None = None,
) -> tuple:
    """Gate / sensitivity / model change. Only the sensitivity changed: the stored prediction is judged again (no
    network run); otherwise predict again from the stored inputs (no re-upload)."""
    if not state:
        return tuple(gr.skip() for _ in range(10))
    if state.get("prediction") is None or state.get("model") != model or state.get("gate") != gate:
        return _predict(
            state["rgb"], state["depth"], model, gate, sensitivity, colour_by, services=services, queue=False
        )
    p = state["prediction"].with_sensitivity(float(sensitivity))
    image, step, heat = read_rgb(state["rgb"]), state["step"], p.heatmap_original
    thin = heat[::step, ::step]
    cloud = figures.point_cloud(state["xyz"], state["foreground"], state["image"], thin, colour_by)
    out, _ = render(p, image, colour_by, state["card"], cloud=cloud, heat=heat)
    return (*out, {**state, "prediction": p, "heat": thin})


def recolour(state: dict | None, colour_by: str) -> Any:
    if not state:
        return gr.skip()
    return figures.point_cloud(state["xyz"], state["foreground"], state["image"], state["heat"], colour_by)


@friendly
def preview_depth(depth: Any) -> np.ndarray | None:
    path = upload_path(depth)
    return None if path is None else enlarge(depth_preview(read_depth(path).z))


def sample_gallery(services: Services | None = None) -> list[tuple[str, str]]:
    """(rgb path, caption 'category · kind_NN') of every shipped sample, for the thumbnail gallery."""
    pairs = (services or default_services()).workspace.sample_pairs()
    return [(r, f"{Path(r).parent.name} · {Path(r).name.removesuffix('_rgb.png')}") for r, _ in pairs]


def model_for_sample(category: str | None, current: str | None) -> str | None:
    """The default model of a clicked sample's category (models.for_category), else the current choice."""
    return models.for_category(category) or current


def _sample(index: int, current: str | None, services: Services | None) -> tuple[str, str | None, str | None]:
    """Sample number `index` (gallery order) -> (rgb path, depth path, the model of its category, else
    `current`)."""
    pairs = (services or default_services()).workspace.sample_pairs()
    if not 0 <= int(index) < len(pairs):
        raise InputError(f"there is no sample {index}; choose 0 to {len(pairs) - 1}")
    rgb, depth = pairs[int(index)]
    return rgb, depth, model_for_sample(Path(rgb).parent.name, current)


def pick_sample(
    index: int, current: str | None, *, services: Services | None = None
) -> tuple[str, str | None, str | None]:
    """The /pick_sample endpoint: sample number `index` -> (its RGB file, its depth file, the model of its category,
    else `current`), the files named inside samples/ (never a server path)."""
    rgb, depth, model = _sample(index, current, services)
    name = lambda path: None if path is None else "/".join(Path(path).parts[-2:])  # noqa: E731
    return name(rgb), name(depth), model


def on_gallery_select(current: str | None, evt: gr.SelectData, *, services: Services | None = None) -> tuple:
    return _sample(evt.index, current, services)


def build(services: Services) -> gr.Dropdown:
    """Lay out the tab, its handlers acting on `services`; returns its model dropdown (refreshed by the app when
    models change)."""
    state = gr.State(None, time_to_live=STATE_TTL_S)
    samples = sample_gallery(services)
    gallery = gr.Gallery(
        samples,
        label="Samples: click one to inspect it with its category's model",
        columns=SAMPLE_COLUMNS,
        height=SAMPLE_HEIGHT,
        allow_preview=False,
        object_fit="cover",
        elem_id="inspect-samples",
        visible=bool(samples),
    )
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            model = model_dropdown(elem_id="inspect-model")
            with gr.Row():
                rgb = image_upload(label="RGB image", height=IMAGE_HEIGHT, elem_id="inspect-rgb")
                depth_view = gr.Image(
                    label="Depth preview",
                    height=IMAGE_HEIGHT,
                    interactive=False,
                    format="png",
                    elem_id="inspect-depth-preview",
                )
            depth = gr.File(
                label="Depth (.tiff xyz, 16-bit .png mm, .npy)",
                file_types=DEPTH_TYPES,
                elem_id="inspect-depth",
                height=90,
            )
            button = gr.Button("Inspect", variant="primary", elem_id="inspect-run")
            gate = gr.Radio(list(GATES), value="control", label="Gate", info=GATE_HELP, elem_id="inspect-gate")
            sensitivity = gr.Slider(
                0.25,
                4.0,
                value=1.0,
                step=0.05,
                label="Sensitivity",
                info="the calibrated threshold is divided by it (2 flags more images)",
            )
        with gr.Column(scale=2):
            verdict = gr.HTML(
                "<p>Click a sample above, or upload an RGB image (depth optional) and press <b>Inspect</b>.</p>",
                elem_id="inspect-verdict",
            )
            with gr.Row():
                heat = gr.Image(label="Heat map", format="png", elem_id="inspect-heat", height=OUTPUT_HEIGHT + 30)
                rgb_in = gr.Image(label="RGB input (model size)", format="png", height=OUTPUT_HEIGHT)
                rec_rgb = gr.Image(label="RGB reconstruction", format="png", height=OUTPUT_HEIGHT)
            gate_md = gr.Markdown(elem_id="inspect-gate-md")
            with gr.Row():
                depth_in = gr.Image(label="Depth input (model size)", format="png", height=OUTPUT_HEIGHT)
                rec_depth = gr.Image(label="Depth reconstruction", format="png", height=OUTPUT_HEIGHT)
            colour_by = gr.Radio(list(COLOUR_BY), value="anomaly", label="Colour the 3D points by")
            cloud = gr.Plot(label="3D point cloud (table removed), same colour scale", elem_id="inspect-cloud")
            with gr.Accordion("JSON (same fields as `easynet predict --json`)", open=False):
                result = gr.JSON()
    outputs = [verdict, heat, rgb_in, rec_rgb, depth_in, rec_depth, gate_md, cloud, result, state]
    inputs = [rgb, depth, model, gate, sensitivity, colour_by]
    hidden = {"api_visibility": "undocumented"}
    predict_, rerender_ = bind(predict, services), bind(rerender, services)
    queue = ui.inference_queue()
    button.click(predict_, inputs, outputs, api_name="predict", **queue)
    depth.change(preview_depth, depth, depth_view, api_name="depth_preview", **hidden)
    again = [state, model, gate, sensitivity, colour_by]
    gate.change(rerender_, again, outputs, api_name="predict_gate", **hidden, **queue)
    sensitivity.release(rerender_, again, outputs, api_name="predict_sensitivity", **hidden, **queue)
    colour_by.change(recolour, [state, colour_by], cloud, api_name="point_cloud", **hidden)
    gr.api(bind(friendly(pick_sample), services), api_name="pick_sample")
    gallery.select(
        bind(on_gallery_select, services), model, [rgb, depth, model], api_name="select_sample", **hidden
    ).then(predict_, inputs, outputs, api_name="predict_sample", **hidden)
    return model
