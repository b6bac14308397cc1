"""Compare tab: one sample under close/open/control side by side, and a whole category's metrics per gate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from app import figures, limits, models, ui, workspace
from app.inspect_tab import DEPTH_TYPES, model_for_sample
from app.services import Services, bind, default_services
from app.ui import GATES, friendly, image_upload, model_dropdown, upload_path
from easynet.data.io import read_rgb
from easynet.errors import InputError
from easynet.pipeline import synthetic_categories

SYNTHETIC = synthetic_categories()

SOURCES = ("synthetic", "folder", "annotated")


@friendly
def compare_sample(rgb: Any, depth: Any, model: str | None, *, services: Services | None = None) -> tuple:
    """The /compare endpoint: three heat maps on the verdict scale (each gate's threshold in the middle of the
    colour bar, so a map shows warm colours exactly where its verdict comes from), three scores, the gate that
    control chose."""
    rgb_path = upload_path(rgb)
    if rgb_path is None:
        raise InputError("upload an RGB image (or click a sample) first")
    predictor = (services or default_services()).predictors.get(model)
    card = predictor.card
    with limits.admitted(rgb_path, upload_path(depth)):
        image = read_rgb(rgb_path)
        results = predictor.predict_gates(image, upload_path(depth), GATES)  # the input is prepared once
    verdicts = {g: p.verdict for g, p in results.items()}
    pictures = [figures.heat_picture(image, results[g].heatmap_original, 256) for g in GATES]
    lines = ["| gate | head used | score | threshold | score / threshold | verdict |", "|---|---|---|---|---|---|"]
    for g, p in results.items():
        v = verdicts[g]
        lines.append(
            f"| {g} | {p.used} | {p.score:.4f} | {p.threshold:.4f} | {v.ratio:.2f} "
            f"| **{v.label}**{' (borderline)' if v.borderline else ''} |"
        )
    control = results["control"]
    chose = "close (RGB head)" if control.used == "rgb" else "open (fused head)"
    lines.append(f"\n**control chose {chose}**: {control.gate_reason}")
    reason = next((v.reason for v in verdicts.values() if v.label == "UNSURE"), None)
    if reason:
        lines.append(f"\n⚠ {reason[:1].upper() + reason[1:]}.")
    lines.append(
        f"\nModel **{card.name}** was trained on **{card.category or '?'}**"
        f"{f' ({card.quality})' if card.quality else ''}."
    )
    summary = {g: p.to_json() for g, p in results.items()}
    return (*pictures, "\n".join(lines), summary)


def sample_model(category: str | None, current: str | None) -> str | None:
    """The /compare_sample_model endpoint: the model of a clicked sample's category, else the current one."""
    return model_for_sample(category, current)


def model_for_test_data(
    source: str, synthetic: str | None, annotated: str | None, folder_category: str | None, current: str | None
) -> str | None:
    """The /evaluate_model endpoint: the model trained on the chosen test category, else the current choice."""
    category = {"synthetic": synthetic, "annotated": annotated, "folder": folder_category}.get(source)
    return model_for_sample((category or "").strip() or None, current)


def dataset_for(
    source: str,
    synthetic: str | None,
    folder: str | None,
    folder_category: str | None,
    annotated: str | None,
    *,
    services: Services | None = None,
) -> tuple[Path, str]:
    """(data root, category) for the chosen source; a synthetic category is generated on first use."""
    files = (services or default_services()).workspace
    if source == "synthetic":
        if not synthetic:
            raise InputError("choose a synthetic category")
        return files.ensure_synthetic(synthetic), synthetic
    if source == "annotated":
        category = workspace.safe_name(annotated, "category")
        if category not in files.annotated_categories():
            raise InputError(f"your annotated set has no category {category!r}; annotate images of it first")
        return files.annotations_root(), category
    if source == "folder":
        return files.allowed_folder(folder), workspace.safe_name(folder_category, "category")
    raise InputError(f"the source must be one of {', '.join(SOURCES)}, got {source!r}")


@friendly
def evaluate(
    source: str,
    synthetic: str | None,
    folder: str | None,
    folder_category: str | None,
    annotated: str | None,
    model: str | None,
    progress: gr.Progress = gr.Progress(),  # noqa: B008
    *,
    services: Services | None = None,
) -> tuple:
    """The /evaluate_category endpoint: I-AUROC / P-AUROC / AUPRO per gate and per defect kind."""
    from easynet.pipeline import evaluate_category

    progress(0.0, desc="preparing the data set")
    root, category = dataset_for(source, synthetic, folder, folder_category, annotated, services=services)
    info = models.find(model)

    def step(done: int, total: int) -> None:
        progress((done, total), desc="scoring test images")

    result, _, _ = evaluate_category(info.path, root, category, gates=GATES, progress=step)
    report = result.to_dict() | {"checkpoint": info.name}  # the `evaluate --json` shape, the model by its name
    header, rows = figures.metric_rows(report)
    note = f"**{info.name}** on **{category}** ({report.get('n_images', '?')} test images from {source})"
    if info.category and info.category != category:
        note += f"; ⚠ this model was trained on **{info.category}**, not {category}"
    return gr.update(value=rows, headers=header), figures.metric_bars(report), report, note


def build(services: Services) -> list[gr.Dropdown]:
    """Lay out the tab, its handlers acting on `services`; returns its model dropdowns."""
    hidden = {"api_visibility": "undocumented"}
    with gr.Accordion("One sample under the three gate modes", open=True):
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                model = model_dropdown(elem_id="compare-model")
                rgb = image_upload(label="RGB image", height=220)
                depth = gr.File(label="Depth", file_types=DEPTH_TYPES)
                button = gr.Button("Compare the gates", variant="primary")
            with gr.Column(scale=2):
                with gr.Row():
                    heats = [gr.Image(label=f"{g} gate", format="png") for g in GATES]
                table = gr.Markdown()
                with gr.Accordion("JSON", open=False):
                    result = gr.JSON()
        pairs = services.workspace.sample_pairs()
        sample_category = gr.Textbox(visible=False)
        if pairs:
            examples = gr.Examples(
                [[r, d, Path(r).parent.name] for r, d in pairs],
                [rgb, depth, sample_category],
                label="Samples (the model switches to the sample's category)",
                examples_per_page=16,
                example_labels=[f"{Path(r).parent.name} · {Path(r).name[:-8]}" for r, _ in pairs],
                api_name="compare_load_sample",
                api_visibility="undocumented",
            )
            examples.load_input_event.then(
                sample_model, [sample_category, model], model, api_name="compare_sample_model", **hidden
            )
    button.click(
        bind(compare_sample, services),
        [rgb, depth, model],
        [*heats, table, result],
        api_name="compare",
        **ui.inference_queue(),
    )

    with gr.Accordion("A whole category: metrics per gate and per defect kind", open=True):
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                first = next(iter(SYNTHETIC))
                eval_model = model_dropdown(elem_id="evaluate-model", value=models.for_category(first))
                source = gr.Radio(list(SOURCES), value="synthetic", label="Test data")
                synthetic = gr.Dropdown(
                    list(SYNTHETIC),
                    value=first,
                    label="Synthetic category",
                    info="generated into the workspace on first use; the model follows it",
                )
                folder = gr.Textbox(label="Data set root on the server (MVTec 3D-AD layout)")
                folder_category = gr.Textbox(label="Category in that folder")
                annotated = gr.Dropdown(
                    services.workspace.annotated_categories(), label="Annotated category", allow_custom_value=True
                )
                run = gr.Button("Evaluate", variant="primary")
            with gr.Column(scale=2):
                note = gr.Markdown()
                metrics = gr.Dataframe(
                    value=[],
                    headers=["gate", "I-AUROC", "P-AUROC", "AUPRO"],
                    label="Metrics (appear after Evaluate)",
                    interactive=False,
                )
                bars = gr.Plot(label="Per gate")
                with gr.Accordion("Report JSON", open=False):
                    report = gr.JSON()
    inputs = [source, synthetic, folder, folder_category, annotated, eval_model]
    run.click(bind(evaluate, services), inputs, [metrics, bars, report, note], api_name="evaluate_category")
    choose = [source, synthetic, annotated, folder_category, eval_model]
    for i, trigger in enumerate((synthetic.change, annotated.change, folder_category.blur)):
        trigger(model_for_test_data, choose, eval_model, api_name=f"evaluate_model_{i}", **hidden)
    source.change(
        lambda: gr.update(choices=services.workspace.annotated_categories()),
        None,
        annotated,
        api_name="annotated_categories",
        **hidden,
    ).then(model_for_test_data, choose, eval_model, api_name="evaluate_model", **hidden)
    return [model, eval_model]
