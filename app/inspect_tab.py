"""Inspect tab: one RGB (+ depth) image -> verdict, calibrated heat map, reconstructions, gate decision, 3D view."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from app import figures, models, ui
from app.services import Services, bind, default_services
from app.ui import GATE_HELP, GATES, STATE_TTL_S, compact_state, friendly, image_upload, model_dropdown, upload_path
from easynet.batch import display_heat_original, summarise
from easynet.data.io import read_depth, read_rgb
from easynet.errors import InputError
from easynet.predict import Prediction
from easynet.visualize import depth_preview, to_uint8

COLOUR_BY = ("anomaly", "rgb")
DEPTH_TYPES = [".tiff", ".tif", ".png", ".npy"]
IMAGE_HEIGHT = 260
OUTPUT_HEIGHT = 220
SAMPLE_COLUMNS = 8  # 16 shipped samples = two rows, all visible without scrolling on a 1366x768 screen
SAMPLE_HEIGHT = 330  # px: exactly the two rows
DISPLAY_MIN_SIDE = 256  # model-size pictures are enlarged (nearest neighbour) to at least this for display


def run(
    rgb: Any,
    depth: Any,
    model: str | None,
    gate: str = "control",
    sensitivity: float = 1.0,
    *,
    services: Services | None = None,
) -> tuple[Prediction, np.ndarray]:
    """Predict one image with a cached Predictor; returns (prediction, original RGB)."""
    rgb_path = upload_path(rgb)
    if rgb_path is None:
        raise InputError("upload an RGB image (or click a sample) first")
    image = read_rgb(rgb_path)
    predictor = (services or default_services()).predictors.get(model)
    return predictor.predict(image, upload_path(depth), gate=gate, sensitivity=float(sensitivity)), image


BANNER_COLOURS = {"OK": ("#e8f5e9", "#1b5e20", "#2e7d32"), "NG": ("#ffebee", "#b71c1c", "#c62828")}
BANNER_STYLE = (
    "border:2px solid {edge};background:{bg};color:{fg};border-radius:8px;padding:10px 14px;"
    "font-size:15px;line-height:1.45"
)


def banner_html(row: dict[str, Any], info: models.ModelInfo | None, sensitivity: float = 1.0) -> str:
    """The verdict banner: green OK / red NG, the score against the threshold, a sentence when the score is just
    over the threshold, the wrong-part warning and the category the model was trained on."""
    bg, fg, edge = BANNER_COLOURS[row["verdict"]]
    word = "OK · normal" if row["verdict"] == "OK" else "NG · anomalous"
    sign = "≥" if row["verdict"] == "NG" else "<"
    lines = [
        f'<div style="font-size:26px;font-weight:700">{word}</div>',
        f"score <b>{row['score']:.4f}</b> {sign} threshold <b>{row['threshold']:.4f}</b> "
        f"(×{row['score_over_threshold']:.2f}; {row['head']} head, gate {row['gate']}"
        f"{f', sensitivity {sensitivity:g}' if sensitivity != 1 else ''})",
    ]
    if row.get("borderline"):
        lines.append(
            "Borderline: the score is less than 10 % over the threshold, so only a small, faint area "
            "reaches the threshold colour (the middle of the colour bar); look closely before rejecting."
        )
    if row.get("warning"):
        lines.append(f"⚠ {html.escape(row['warning'][:1].upper() + row['warning'][1:])}.")
    if info is not None:
        trained = f"Model <b>{html.escape(info.name)}</b> was trained on <b>{html.escape(info.category or '?')}</b>"
        lines.append(f"{trained}{f' ({info.quality})' if info.quality else ''}.")
    style = BANNER_STYLE.format(edge=edge, bg=bg, fg=fg)
    return f'<div class="easynet-verdict verdict-{row["verdict"].lower()}" style="{style}">{"<br>".join(lines)}</div>'


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
    p: Prediction,
    image: np.ndarray,
    sensitivity: float,
    colour_by: str,
    model: str | None = None,
    *,
    services: Services | None = None,
) -> tuple:
    """Prediction -> the tab's outputs (without the state)."""
    inputs = p.inputs
    predictor, info = (services or default_services()).predictors.get(model), models.find(model)
    row = summarise(p, predictor.calibration, info.category)
    heat = display_heat_original(p, predictor.calibration)  # on the uploaded pixels, at their own aspect
    fig = figures.point_cloud(inputs.xyz, inputs.foreground_full, image, heat, colour_by)
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
        banner_html(row, info, sensitivity),
        figures.heat_picture(image, heat, DISPLAY_MIN_SIDE),
        *[enlarge(x) for x in pictures],
        gate_markdown(p),
        fig,
        p.to_json() | {"summary": row},
    )


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
    """The /predict endpoint: outputs + a state holding the inputs so that gate changes re-render."""
    services = services or default_services()
    p, image = run(rgb, depth, model, gate, sensitivity, services=services)
    out = render(p, image, sensitivity, colour_by, model, services=services)
    heat = display_heat_original(p, services.predictors.get(model).calibration)
    state = compact_state(upload_path(rgb), upload_path(depth), image, p.inputs.xyz, p.inputs.foreground_full, heat)
    return (*out, state)


def rerender(
    state: dict | None,
    model: str | None,
    gate: str,
    sensitivity: float,
    colour_by: str,
    *,
    services: Services | None = None,
) -> tuple:
    """Gate / sensitivity / model change: predict again from the stored inputs (no re-upload)."""
    if not state:
        return tuple(gr.skip() for _ in range(10))
    return predict(state["rgb"], state["depth"], model, gate, sensitivity, colour_by, services=services)


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
    """The shipped or fine-tuned model of a clicked sample's category, else the current choice."""
    found = [m for m in models.list_models() if category and m.category == category]
    shipped = [m for m in found if m.source == "shipped"] or found
    return shipped[0].name if shipped else current


def pick_sample(
    index: int, current: str | None, *, services: Services | None = None
) -> tuple[str, str | None, str | None]:
    """The /pick_sample endpoint: sample number `index` (gallery order) -> (rgb, depth, the model of its
    category, else `current`)."""
    pairs = (services or default_services()).workspace.sample_pairs()
    if not 0 <= int(index) < len(pairs):
        raise InputError(f"there is no sample {index}; choose 0 to {len(pairs) - 1}")
    rgb, depth = pairs[int(index)]
    return rgb, depth, model_for_sample(Path(rgb).parent.name, current)


def on_gallery_select(current: str | None, evt: gr.SelectData, *, services: Services | None = None) -> tuple:
    return pick_sample(evt.index, current, services=services)


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
