"""Compare tab: one sample under close/open/control side by side, and a whole category's metrics per gate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from app import figures, models, workspace
from app.inspect_tab import DEPTH_TYPES, _path, enlarge
from app.ui import GATES, friendly, image_upload, model_dropdown
from easynet.data.io import read_rgb
from easynet.data.synthetic import CATEGORIES as SYNTHETIC
from easynet.errors import InputError
from easynet.visualize import overlay

SOURCES = ("synthetic", "folder", "annotated")


def shared_scale(prob: np.ndarray, calibration: Any) -> np.ndarray:
    """Anomaly probability on one scale for both heads: the lower noise floor -> 0, the higher peak -> 1."""
    low = min(calibration.rgb.pixel_low, calibration.fused.pixel_low)
    high = max(calibration.rgb.pixel_high, calibration.fused.pixel_high)
    return np.clip((prob - low) / max(high - low, 1e-6), 0, 1).astype(np.float32)


@friendly
def compare_sample(rgb: Any, depth: Any, model: str | None) -> tuple:
    """The /compare endpoint: three heat maps on one scale, three scores, the gate that control chose."""
    rgb_path = _path(rgb)
    if rgb_path is None:
        raise InputError("upload an RGB image (or click a sample) first")
    image = read_rgb(rgb_path)
    predictor = models.predictors.get(model)
    results = {g: predictor.predict(image, _path(depth), gate=g) for g in GATES}
    pictures = [enlarge(overlay(image, results[g].on_original(shared_scale(results[g].anomaly_map,
                                                                           predictor.calibration))))
                for g in GATES]
    lines = ["| gate | head used | score | threshold | verdict |", "|---|---|---|---|---|"]
    for g, p in results.items():
        lines.append(f"| {g} | {p.used} | {p.score:.4f} | {p.threshold:.4f} | {'NG' if p.is_anomalous else 'OK'} |")
    control = results["control"]
    chose = "close (RGB head)" if control.used == "rgb" else "open (fused head)"
    lines.append(f"\n**control chose {chose}**: entropy RGB {control.entropy_rgb}, fused {control.entropy_fused}, "
                 f"alpha {control.alpha:.4f}")
    summary = {g: p.to_json() for g, p in results.items()}
    return (*pictures, "\n".join(lines), summary)


def dataset_for(source: str, synthetic: str | None, folder: str | None, folder_category: str | None,
                annotated: str | None) -> tuple[Path, str]:
    """(data root, category) for the chosen source; a synthetic category is generated on first use."""
    if source == "synthetic":
        if not synthetic:
            raise InputError("choose a synthetic category")
        return workspace.ensure_synthetic(synthetic), synthetic
    if source == "annotated":
        return workspace.annotations_root(), workspace.safe_name(annotated, "category")
    if source == "folder":
        return workspace.allowed_folder(folder), workspace.safe_name(folder_category, "category")
    raise InputError(f"the source must be one of {', '.join(SOURCES)}, got {source!r}")


@friendly
def evaluate(source: str, synthetic: str | None, folder: str | None, folder_category: str | None,
             annotated: str | None, model: str | None, progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008
    """The /evaluate_category endpoint: I-AUROC / P-AUROC / AUPRO per gate and per defect kind."""
    from easynet.pipeline import evaluate_category

    progress(0.0, desc="preparing the data set")
    root, category = dataset_for(source, synthetic, folder, folder_category, annotated)
    info = models.find(model)

    def step(done: int, total: int) -> None:
        progress((done, total), desc="scoring test images")

    report, _, _ = evaluate_category(info.path, root, category, gates=GATES, progress=step)
    header, rows = figures.metric_rows(report)
    note = f"**{info.name}** on **{category}** ({report.get('n_images', '?')} test images from {source})"
    return gr.update(value=rows, headers=header), figures.metric_bars(report), report, note


def build() -> list[gr.Dropdown]:
    """Lay out the tab; returns its model dropdowns."""
    with gr.Accordion("One sample under the three gate modes", open=True):
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                model = model_dropdown()
                rgb = image_upload(label="RGB image", height=220)
                depth = gr.File(label="Depth", file_types=DEPTH_TYPES)
                button = gr.Button("Compare the gates", variant="primary")
            with gr.Column(scale=2):
                with gr.Row():
                    heats = [gr.Image(label=f"{g} (shared scale)", format="png") for g in GATES]
                table = gr.Markdown()
                with gr.Accordion("JSON", open=False):
                    result = gr.JSON()
        pairs = workspace.sample_pairs()
        if pairs:
            gr.Examples([[r, d] for r, d in pairs], [rgb, depth], label="Samples", examples_per_page=12,
                        example_labels=[f"{Path(r).parent.name} · {Path(r).name[:-8]}" for r, _ in pairs],
                        api_name="compare_load_sample")
    button.click(compare_sample, [rgb, depth, model], [*heats, table, result], api_name="compare")

    with gr.Accordion("A whole category: metrics per gate and per defect kind", open=True):
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                eval_model = model_dropdown()
                source = gr.Radio(list(SOURCES), value="synthetic", label="Test data")
                synthetic = gr.Dropdown(list(SYNTHETIC), value=next(iter(SYNTHETIC)), label="Synthetic category",
                                        info="generated into the workspace on first use")
                folder = gr.Textbox(label="Data set root on the server (MVTec 3D-AD layout)")
                folder_category = gr.Textbox(label="Category in that folder")
                annotated = gr.Dropdown(workspace.annotated_categories(), label="Annotated category",
                                        allow_custom_value=True)
                run = gr.Button("Evaluate", variant="primary")
            with gr.Column(scale=2):
                note = gr.Markdown()
                metrics = gr.Dataframe(label="Metrics", interactive=False)
                bars = gr.Plot(label="Per gate")
                with gr.Accordion("Report JSON", open=False):
                    report = gr.JSON()
    inputs = [source, synthetic, folder, folder_category, annotated, eval_model]
    run.click(evaluate, inputs, [metrics, bars, report, note], api_name="evaluate_category")
    source.change(lambda: gr.update(choices=workspace.annotated_categories()), None, annotated,
                  api_name="annotated_categories")
    return [model, eval_model]
