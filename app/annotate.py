"""Annotate tab: label OK/NG, correct the model's predicted defect mask, save into the workspace data set."""

from __future__ import annotations

from typing import Any

import cv2
import gradio as gr
import numpy as np

from app import models, workspace
from app.inspect_tab import DEPTH_TYPES, _path
from app.ui import friendly, image_upload, model_dropdown
from easynet.data.io import read_rgb
from easynet.errors import InputError

MASK_THRESHOLD = 0.5  # on the calibrated heat-map scale
MASK_RGBA = (255, 0, 0, 150)  # how a mask is painted in the editor layer
LABELS = ("OK", "NG")


def predicted_mask(image: np.ndarray, depth: Any, model: str | None) -> np.ndarray:
    """(H, W) bool: the calibrated heat map >= MASK_THRESHOLD, resized to the original image."""
    p = models.predictors.get(model).predict(image, _path(depth), gate="control")
    return p.heatmap_original >= MASK_THRESHOLD


def editor_value(image: np.ndarray, mask: np.ndarray | None) -> dict[str, Any]:
    """An ImageEditor value: the photo as background, the mask as one red half-transparent layer."""
    layer = np.zeros((*image.shape[:2], 4), np.uint8)
    composite = image.copy()
    if mask is not None and mask.any():
        layer[mask] = MASK_RGBA
        a = MASK_RGBA[3] / 255
        composite[mask] = (image[mask] * (1 - a) + np.array(MASK_RGBA[:3]) * a).astype(np.uint8)
    return {"background": image, "layers": [layer], "composite": composite}


def mask_from_editor(value: Any, shape: tuple[int, int]) -> np.ndarray | None:
    """Union of the painted layers (alpha > 0) at the image size; None when the editor holds no layer."""
    if not isinstance(value, dict) or not value.get("layers"):
        return None
    mask = np.zeros(shape, bool)
    for layer in value["layers"]:
        layer = np.asarray(layer)
        painted = layer[..., 3] > 0 if layer.ndim == 3 and layer.shape[2] == 4 else np.asarray(layer) > 0
        if painted.ndim == 3:
            painted = painted.any(axis=2)
        if painted.shape != shape:
            painted = cv2.resize(painted.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0
        mask |= painted
    return mask


@friendly
def prefill(rgb: Any, depth: Any, model: str | None) -> tuple:
    """Editor pre-filled from the model's prediction so the engineer corrects rather than draws."""
    path = _path(rgb)
    if path is None:
        return None, "Upload an RGB image to annotate.", None
    image = read_rgb(path)
    try:
        mask = predicted_mask(image, depth, model)
        note = f"Pre-filled from the model ({int(mask.sum())} px predicted defective). Correct it, then save."
    except InputError as err:
        mask, note = None, f"No prediction ({err}); paint the defect yourself."
    return editor_value(image, mask), note, None


def _entry_choices() -> dict[str, Any]:
    entries = workspace.list_annotations()
    return gr.update(choices=entries, value=entries[-1] if entries else None)


def _split(item: str | None) -> tuple[str, str]:
    if not item or ":" not in item:
        raise InputError("choose a saved entry first")
    category, entry = item.split(":", 1)
    return category, entry


@friendly
def save(category: str, label: str, ok_split: str, defect: str, rgb: Any, depth: Any, editor: Any,
         model: str | None, current: str | None = None) -> tuple:
    """The /annotate_save endpoint. Without a painted layer an NG image takes the model's predicted mask."""
    path = _path(rgb)
    if path is None:
        raise InputError("upload an RGB image to annotate first")
    image = read_rgb(path)
    mask = mask_from_editor(editor, image.shape[:2])
    if mask is None and label == "NG":
        mask = predicted_mask(image, depth, model)
    replace = None
    if current and ":" in current and current.split(":", 1)[0] == category:
        replace = current.split(":", 1)[1]
    entry = workspace.save_annotation(category, label, path, _path(depth), mask, defect, ok_split, replace)
    item = f"{workspace.safe_name(category, 'category')}:{entry}"
    base = workspace.annotations_root()  # paths relative to the session's data set, never server paths
    files = {k: v.relative_to(base).as_posix() if v else None
             for k, v in workspace.entry_files(category, entry).items()}
    status = f"Saved **{item}** ({label}{', ' + str(int(mask.sum())) + ' defect px' if label == 'NG' else ''})."
    return status, _entry_choices(), item, {"entry": item, "files": files}


@friendly
def reopen(item: str | None) -> tuple:
    """Load a saved entry back into the editor for relabelling."""
    category, entry = _split(item)
    files = workspace.entry_files(category, entry)
    split, defect, _ = entry.split("/")
    image = read_rgb(files["rgb"])
    mask = None
    if files["gt"] is not None:
        mask = cv2.imread(str(files["gt"]), cv2.IMREAD_GRAYSCALE) > 0
    label = "OK" if defect == workspace.GOOD else "NG"
    xyz = str(files["xyz"]) if files["xyz"] else None
    return (category, str(files["rgb"]), xyz, label, split if label == "OK" else "train",
            "" if label == "OK" else defect, editor_value(image, mask), item,
            f"Reopened **{item}**: change the label or the mask and save to relabel it.")


@friendly
def delete(item: str | None) -> tuple:
    category, entry = _split(item)
    workspace.delete_annotation(category, entry)
    return f"Deleted **{item}**.", _entry_choices(), None


def download() -> str:
    return str(workspace.zip_annotations())


def build() -> gr.Dropdown:
    """Lay out the tab; returns its model dropdown."""
    current = gr.State(None)
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            model = model_dropdown(label="Model for the pre-filled mask")
            category = gr.Textbox(label="Category", value="my_part", info="folder name of the data set category")
            rgb = image_upload(label="RGB image", height=200)
            depth = gr.File(label="Depth (saved as xyz .tiff)", file_types=DEPTH_TYPES)
            label = gr.Radio(list(LABELS), value="NG", label="Label")
            ok_split = gr.Radio(list(workspace.OK_SPLITS), value="train", label="An OK image goes to",
                                info="train/good and validation/good feed fine-tuning; test/good evaluation")
            defect = gr.Textbox(label="Defect type (NG)", value="scratch")
            with gr.Row():
                refill = gr.Button("Pre-fill from model")
                save_btn = gr.Button("Save", variant="primary")
        with gr.Column(scale=2):
            status = gr.Markdown("Upload an image; the model's predicted defect mask is painted in red for you.")
            editor = gr.ImageEditor(type="numpy", format="png", transforms=(), image_mode="RGBA",
                                    label="Defect mask (paint with the brush, erase mistakes)", height=480,
                                    sources=(), brush=gr.Brush(colors=["#ff0000"], color_mode="fixed"))
            with gr.Row():
                entries = gr.Dropdown(workspace.list_annotations(), label="Saved entries", scale=3)
                open_btn = gr.Button("Reopen", scale=1)
                delete_btn = gr.Button("Delete", variant="stop", scale=1)
            with gr.Row():
                zip_btn = gr.Button("Download the data set (zip)")
                zip_file = gr.File(label="annotations.zip", interactive=False)
            saved = gr.JSON(label="Last saved", visible=False)
    rgb.upload(prefill, [rgb, depth, model], [editor, status, current], api_name="annotate_prefill")
    refill.click(lambda *a: prefill(*a)[:2], [rgb, depth, model], [editor, status], api_name="annotate_refill")
    save_btn.click(save, [category, label, ok_split, defect, rgb, depth, editor, model, current],
                   [status, entries, current, saved], api_name="annotate_save")
    open_btn.click(reopen, entries, [category, rgb, depth, label, ok_split, defect, editor, current, status],
                   api_name="annotate_open")
    delete_btn.click(delete, entries, [status, entries, current], api_name="annotate_delete")
    zip_btn.click(download, None, zip_file, api_name="annotate_download")
    # the page is built for no session: the list fills with this session's entries when it is opened
    entries.focus(lambda value: gr.update(choices=workspace.list_annotations(), value=value), entries, entries,
                  api_name="annotate_entries", show_progress="hidden")
    return model
