"""Inspect tab: one RGB (+ depth) image -> verdict, calibrated heat map, reconstructions, gate decision, 3D view."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from app import figures, models, workspace
from app.ui import GATE_HELP, GATES, STATE_TTL_S, compact_state, friendly, image_upload, model_dropdown
from easynet.data.io import read_depth, read_rgb
from easynet.errors import InputError
from easynet.predict import Prediction
from easynet.visualize import depth_preview, to_uint8

COLOUR_BY = ("anomaly", "rgb")
DEPTH_TYPES = [".tiff", ".tif", ".png", ".npy"]
IMAGE_HEIGHT = 260
OUTPUT_HEIGHT = 220
DISPLAY_MIN_SIDE = 256  # model-size pictures are enlarged (nearest neighbour) to at least this for display


def _path(value: Any) -> str | None:
    """A filepath from a gr.Image/gr.File value (str, dict with 'path', or an object with .name)."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        return value.get("path") or value.get("name")
    return str(getattr(value, "name", value))


def run(rgb: Any, depth: Any, model: str | None, gate: str = "control",
        sensitivity: float = 1.0) -> tuple[Prediction, np.ndarray]:
    """Predict one image with a cached Predictor; returns (prediction, original RGB)."""
    rgb_path = _path(rgb)
    if rgb_path is None:
        raise InputError("upload an RGB image (or click a sample) first")
    image = read_rgb(rgb_path)
    predictor = models.predictors.get(model)
    return predictor.predict(image, _path(depth), gate=gate, sensitivity=float(sensitivity)), image


def verdict_markdown(p: Prediction, sensitivity: float) -> str:
    verdict = "NG (anomalous)" if p.is_anomalous else "OK (normal)"
    sign = "≥" if p.is_anomalous else "<"
    return (f"## {verdict}\nscore **{p.score:.4f}** {sign} threshold **{p.threshold:.4f}** "
            f"(calibrated threshold ÷ sensitivity {sensitivity:g}); normalised score {p.score / p.threshold:.2f}")


def gate_markdown(p: Prediction) -> str:
    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    head = "RGB + depth (fused)" if p.used == "fused" else "RGB only"
    rule = "control uses the fused head when H(fused) > H(rgb) + alpha"
    return (f"**Gate `{p.gate}`** used the **{head}** head · entropy RGB {fmt(p.entropy_rgb)}, "
            f"fused {fmt(p.entropy_fused)}, alpha {p.alpha:.4f} ({rule})")


def enlarge(image: np.ndarray) -> np.ndarray:
    """Nearest-neighbour upscale of a small picture so browsers show pixels, not a thumbnail."""
    factor = int(np.ceil(DISPLAY_MIN_SIDE / max(1, min(image.shape[:2]))))
    return image if factor <= 1 else np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def render(p: Prediction, image: np.ndarray, sensitivity: float, colour_by: str) -> tuple:
    """Prediction -> the tab's outputs (without the state)."""
    inputs = p.inputs
    heat = p.heatmap_original  # on the uploaded pixels, at the image's own aspect
    fig = figures.point_cloud(inputs.xyz, inputs.foreground_full, image, heat, colour_by)
    if inputs.depth is None:
        depth_in = rec_depth = figures.placeholder("no depth given")
    else:
        depth_in = depth_preview(inputs.depth)
        rec_depth = figures.placeholder(f"the {p.gate} gate did not run the depth branch") \
            if p.rec_depth is None else depth_preview(np.where(inputs.foreground, p.rec_depth, 0))
    pictures = [figures.heat_picture(image, heat), to_uint8(inputs.rgb), to_uint8(p.rec_rgb), depth_in, rec_depth]
    return (verdict_markdown(p, sensitivity), *[enlarge(x) for x in pictures], gate_markdown(p), fig, p.to_json())


@friendly
def predict(rgb: Any, depth: Any, model: str | None, gate: str = "control", sensitivity: float = 1.0,
            colour_by: str = "anomaly") -> tuple:
    """The /predict endpoint: outputs + a state holding the inputs so that gate changes re-render."""
    p, image = run(rgb, depth, model, gate, sensitivity)
    state = compact_state(_path(rgb), _path(depth), image, p.inputs.xyz, p.inputs.foreground_full,
                          p.heatmap_original)
    return (*render(p, image, sensitivity, colour_by), state)


def rerender(state: dict | None, model: str | None, gate: str, sensitivity: float, colour_by: str) -> tuple:
    """Gate / sensitivity / model change: predict again from the stored inputs (no re-upload)."""
    if not state:
        return tuple(gr.skip() for _ in range(10))
    return predict(state["rgb"], state["depth"], model, gate, sensitivity, colour_by)


def recolour(state: dict | None, colour_by: str) -> Any:
    if not state:
        return gr.skip()
    return figures.point_cloud(state["xyz"], state["foreground"], state["image"], state["heat"], colour_by)


@friendly
def preview_depth(depth: Any) -> np.ndarray | None:
    path = _path(depth)
    return None if path is None else enlarge(depth_preview(read_depth(path).z))


def example_rows() -> tuple[list[list[str | None]], list[str]]:
    """Rows (rgb, depth, category) for the sample gallery, and their labels."""
    pairs = workspace.sample_pairs()
    labels = [f"{Path(r).parent.name} · {Path(r).name.removesuffix('_rgb.png')}" for r, _ in pairs]
    return [[r, d, Path(r).parent.name] for r, d in pairs], labels


def model_for_sample(category: str | None, current: str | None) -> str | None:
    """The shipped or fine-tuned model of a clicked sample's category, else the current choice."""
    found = [m for m in models.list_models() if category and m.category == category]
    shipped = [m for m in found if m.source == "shipped"] or found
    return shipped[0].name if shipped else current


def build() -> gr.Dropdown:
    """Lay out the tab; returns its model dropdown (refreshed by the app when models change)."""
    state = gr.State(None, time_to_live=STATE_TTL_S)
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            model = model_dropdown(elem_id="inspect-model")
            rgb = image_upload(label="RGB image", height=IMAGE_HEIGHT, elem_id="inspect-rgb")
            depth = gr.File(label="Depth (.tiff xyz, 16-bit .png mm, .npy)", file_types=DEPTH_TYPES,
                            elem_id="inspect-depth")
            depth_view = gr.Image(label="Depth preview", height=160, interactive=False, format="png",
                                  elem_id="inspect-depth-preview")
            gate = gr.Radio(list(GATES), value="control", label="Gate", info=GATE_HELP, elem_id="inspect-gate")
            sensitivity = gr.Slider(0.25, 4.0, value=1.0, step=0.05, label="Sensitivity",
                                    info="the calibrated threshold is divided by it (2 flags more images)")
            button = gr.Button("Inspect", variant="primary", elem_id="inspect-run")
            rows, labels = example_rows()
            sample_category = gr.Textbox(visible=False)
            examples = gr.Examples(rows, [rgb, depth, sample_category], label="Samples (click one)",
                                   example_labels=labels or None, examples_per_page=20,
                                   api_name="load_sample") if rows else None
        with gr.Column(scale=2):
            verdict = gr.Markdown("Upload an RGB image (depth optional) or click a sample, then **Inspect**.",
                                  elem_id="inspect-verdict")
            gate_md = gr.Markdown(elem_id="inspect-gate-md")
            with gr.Row():
                heat = gr.Image(label="Heat map (calibrated scale 0-1)", format="png", elem_id="inspect-heat",
                                height=OUTPUT_HEIGHT)
                rgb_in = gr.Image(label="RGB input (model size)", format="png", height=OUTPUT_HEIGHT)
                rec_rgb = gr.Image(label="RGB reconstruction", format="png", height=OUTPUT_HEIGHT)
            with gr.Row():
                depth_in = gr.Image(label="Depth input (model size)", format="png", height=OUTPUT_HEIGHT)
                rec_depth = gr.Image(label="Depth reconstruction", format="png", height=OUTPUT_HEIGHT)
            colour_by = gr.Radio(list(COLOUR_BY), value="anomaly", label="Colour the 3D points by")
            cloud = gr.Plot(label="3D point cloud (table removed)", elem_id="inspect-cloud")
            with gr.Accordion("JSON (same fields as `easynet predict --json`)", open=False):
                result = gr.JSON()
    outputs = [verdict, heat, rgb_in, rec_rgb, depth_in, rec_depth, gate_md, cloud, result, state]
    inputs = [rgb, depth, model, gate, sensitivity, colour_by]
    button.click(predict, inputs, outputs, api_name="predict")
    depth.change(preview_depth, depth, depth_view, api_name="depth_preview")
    again = [state, model, gate, sensitivity, colour_by]
    gate.change(rerender, again, outputs, api_name="predict_gate")
    sensitivity.release(rerender, again, outputs, api_name="predict_sensitivity")
    colour_by.change(recolour, [state, colour_by], cloud, api_name="point_cloud")
    if examples is not None:
        examples.load_input_event.then(model_for_sample, [sample_category, model], model,
                                       api_name="sample_model").then(predict, inputs, outputs,
                                                                      api_name="predict_sample")
    return model
