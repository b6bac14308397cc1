"""Annotate tab: label OK/NG, correct the model's predicted defect mask, save into the workspace data set."""

from __future__ import annotations

from typing import Any

import cv2
import gradio as gr
import numpy as np

from app import limits, ui, workspace
from app.inspect_tab import DEPTH_TYPES
from app.services import Services, bind, default_services
from app.ui import friendly, image_upload, model_dropdown, upload_path
from easynet.data.io import read_mask, read_rgb
from easynet.errors import InputError

MARK_RGB = np.array([255, 0, 0], np.float32)  # the pre-filled mask is drawn into the photo in this colour...
MARK_ALPHA = 0.6  # ...at this opacity
MIN_MARK_DIFF = 60  # a marked pixel differs from the photo by at least this (sum over R, G, B) ...
CHANGED = 24  # ...and the editor's picture counts as painted where it differs from the photo by more than this
LABELS = ("OK", "NG")
BRUSH_SIZE = 6  # px: a thin stroke by default (Gradio's automatic size made three drags a 6,782 px blob)


def predicted_mask(image: np.ndarray, depth: Any, model: str | None, services: Services | None = None) -> np.ndarray:
    """(H, W) bool: the pixels whose anomaly score (the probability, position-normalised where the calibration
    says so) reaches the image threshold (the middle of the heat-map colour bar), resized to the original image."""
    p = (services or default_services()).predictors.get(model).predict(image, upload_path(depth), gate="control")
    prob = p.on_original(p.anomaly_map)  # on the photo's own pixels and aspect
    return prob >= p.threshold


def marked(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The photo with `mask` drawn in half-transparent red; every marked pixel differs visibly from the photo."""
    out = image[..., :3].copy()
    if mask is None or not mask.any():
        return out
    photo = image[..., :3][mask].astype(np.float32)
    tinted = photo * (1 - MARK_ALPHA) + MARK_RGB * MARK_ALPHA
    faint = np.abs(tinted - photo).sum(axis=1) < MIN_MARK_DIFF  # a photo already red there: use its inverse
    tinted[faint] = 255 - photo[faint]
    out[mask] = (tinted + 0.5).astype(np.uint8)
    return out


def editor_value(image: np.ndarray, mask: np.ndarray | None) -> dict[str, Any]:
    """An ImageEditor value showing the photo with the mask drawn into it.

    Gradio 6's editor shows the composite (else the background) and drops `layers` sent by the server, so a
    pre-filled mask sent as a layer was invisible to the eraser and missing from the next save. The mask is
    therefore drawn into the picture itself and read back from the picture (`mask_from_editor`): what is on
    screen is what is saved.
    """
    picture = marked(image, mask)
    return {"background": picture, "layers": [], "composite": picture}


def _as_rgb(a: Any, shape: tuple[int, int]) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.shape[2] == 4:  # transparent pixels show the page's white
        alpha = a[..., 3:4].astype(np.float32) / 255
        a = a[..., :3].astype(np.float32) * alpha + 255 * (1 - alpha)
    a = a[..., :3].astype(np.float32)
    if a.shape[:2] != shape:
        a = cv2.resize(a, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return a


def mask_from_editor(value: Any, image: np.ndarray) -> np.ndarray | None:
    """The defect mask on screen: pixels where the editor's picture differs from the photo, plus any painted layer
    pixel (alpha > 0), at the photo's size. None when the editor holds nothing (API callers may send None)."""
    if not isinstance(value, dict):
        return None
    shape = image.shape[:2]
    picture = value.get("composite")
    if picture is None:
        picture = value.get("background")
    layers = [np.asarray(x) for x in value.get("layers") or [] if x is not None]
    if picture is None and not layers:
        return None
    mask = np.zeros(shape, bool)
    if picture is not None:
        mask |= np.abs(_as_rgb(picture, shape) - image[..., :3].astype(np.float32)).sum(axis=2) > CHANGED
    for layer in layers:
        painted = layer[..., 3] > 0 if layer.ndim == 3 and layer.shape[2] == 4 else layer > 0
        if painted.ndim == 3:
            painted = painted.any(axis=2)
        if painted.shape != shape:
            painted = cv2.resize(painted.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0
        mask |= painted
    return mask


@friendly
def prefill(rgb: Any, depth: Any, model: str | None, *, services: Services | None = None) -> tuple:
    """Editor pre-filled from the model's prediction so the engineer corrects rather than draws."""
    path = upload_path(rgb)
    if path is None:
        return None, "Upload an RGB image to annotate.", None
    with limits.admitted(path, upload_path(depth)):
        image = read_rgb(path)
        try:
            mask = predicted_mask(image, depth, model, services)
            used = "RGB + depth" if upload_path(depth) else "RGB only (uploading the depth pre-fills again)"
            note = (
                f"Pre-filled from the model on {used}: {int(mask.sum())} px predicted defective. Correct it, then save."
            )
        except InputError as err:
            mask, note = None, f"No prediction ({err}); paint the defect yourself."
    return editor_value(image, mask), note, None


def _entry_choices(services: Services, selected: str | None = None) -> dict[str, Any]:
    """The saved entries, with `selected` (the entry just saved) chosen; nothing chosen without one."""
    entries = services.workspace.list_annotations()
    return gr.update(choices=entries, value=selected if selected in entries else None)


def _split(item: str | None) -> tuple[str, str]:
    if not item or ":" not in item:
        raise InputError("choose a saved entry first")
    category, entry = item.split(":", 1)
    return category, entry


def _relabels(services: Services, current: str | None, category: str, image: np.ndarray) -> str | None:
    """The entry id that this save replaces: the reopened entry, if the image being saved is still its picture.

    A save of any other picture (a new upload, or an API call in the same session) adds a new entry.
    """
    if not current or ":" not in current or current.split(":", 1)[0] != category:
        return None
    entry = current.split(":", 1)[1]
    try:
        files = services.workspace.entry_files(category, entry)
    except InputError:
        return None
    old = read_rgb(files["rgb"])
    return entry if old.shape == image.shape and np.array_equal(old, image) else None


@friendly
def save(
    category: str,
    label: str,
    ok_split: str,
    defect: str,
    rgb: Any,
    depth: Any,
    editor: Any,
    model: str | None,
    current: str | None = None,
    *,
    services: Services | None = None,
) -> tuple:
    """The /annotate_save endpoint. The mask is what the editor shows (the picture and any painted layer);
    an NG image sent without an editor value (API) takes the model's predicted mask.

    Returns (status, entries, current, saved JSON). `current` stays set only while relabelling a reopened entry.
    """
    services = services or default_services()
    path = upload_path(rgb)
    if path is None:
        raise InputError("upload an RGB image to annotate first")
    image = read_rgb(path)
    mask = mask_from_editor(editor, image)
    if mask is None and label == "NG":
        mask = predicted_mask(image, depth, model, services)
    replace = _relabels(services, current, category, image)
    ws = services.workspace
    entry = ws.save_annotation(category, label, path, upload_path(depth), mask, defect, ok_split, replace)
    item = f"{workspace.safe_name(category, 'category')}:{entry}"
    base = ws.annotations_root()  # paths relative to the session's data set, never server paths
    files = {k: v.relative_to(base).as_posix() if v else None for k, v in ws.entry_files(category, entry).items()}
    what = f"{label}, {int(mask.sum())} defect px" if label == "NG" else label
    status = f"Saved **{item}** ({what}){f', replacing {current}' if replace else ''}."
    return status, _entry_choices(services, item), item if replace else None, {"entry": item, "files": files}


@friendly
def reopen(item: str | None, *, services: Services | None = None) -> tuple:
    """Load a saved entry back into the editor for relabelling."""
    category, entry = _split(item)
    files = (services or default_services()).workspace.entry_files(category, entry)
    split, defect, _ = entry.split("/")
    image = read_rgb(files["rgb"])
    mask = None
    if files["gt"] is not None:
        mask = read_mask(files["gt"])
    label = "OK" if defect == workspace.GOOD else "NG"
    xyz = str(files["xyz"]) if files["xyz"] else None
    return (
        category,
        str(files["rgb"]),
        xyz,
        label,
        split if label == "OK" else "train",
        "" if label == "OK" else defect,
        editor_value(image, mask),
        item,
        f"Reopened **{item}**: change the label or the mask and save to relabel it.",
    )


@friendly
def ask_delete(item: str | None) -> tuple:
    """Delete, first click: name the entry and show the confirmation buttons."""
    _split(item)
    return item, gr.update(visible=True), f"Delete **{item}** for good? Its files are removed from the data set."


def cancel_delete() -> tuple:
    return "", gr.update(visible=False), "Nothing deleted."


@friendly
def delete(item: str | None, *, services: Services | None = None) -> tuple:
    """The /annotate_delete endpoint: remove exactly the entry named (in the page: the one confirmed)."""
    services = services or default_services()
    category, entry = _split(item)
    services.workspace.delete_annotation(category, entry)
    return f"Deleted **{item}**.", _entry_choices(services), None, "", gr.update(visible=False)


def clear_mask(rgb: Any) -> Any:
    """The photo without any mask, to paint the defect from scratch."""
    path = upload_path(rgb)
    return gr.skip() if path is None else editor_value(read_rgb(path), None)


def download(*, services: Services | None = None) -> str:
    return str((services or default_services()).workspace.zip_annotations())


def build(services: Services) -> gr.Dropdown:
    """Lay out the tab, its handlers acting on `services`; returns its model dropdown."""
    current = gr.State(None)
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            model = model_dropdown(label="Model for the pre-filled mask", elem_id="annotate-model")
            category = gr.Textbox(
                label="Category",
                value="my_part",
                info="folder name of the data set category",
                elem_id="annotate-category",
            )
            rgb = image_upload(label="RGB image", height=200, elem_id="annotate-rgb")
            depth = gr.File(label="Depth (saved as xyz .tiff)", file_types=DEPTH_TYPES, elem_id="annotate-depth")
            label = gr.Radio(list(LABELS), value="NG", label="Label")
            ok_split = gr.Radio(
                list(workspace.OK_SPLITS),
                value="train",
                label="An OK image goes to",
                info="train/good and validation/good feed fine-tuning; test/good evaluation",
            )
            defect = gr.Textbox(label="Defect type (NG)", value="scratch")
            with gr.Row():
                refill = gr.Button("Pre-fill from model")
                clear = gr.Button("Clear the mask")
                save_btn = gr.Button("Save", variant="primary", elem_id="annotate-save")
        with gr.Column(scale=2):
            status = gr.Markdown(
                "Upload an image; the model's predicted defect mask is painted in red for you.",
                elem_id="annotate-status",
            )
            editor = gr.ImageEditor(
                type="numpy",
                format="png",
                transforms=(),
                image_mode="RGBA",
                label="Defect mask: red is saved as defect (brush adds; eraser removes strokes; "
                "'Clear the mask' starts again)",
                height=480,
                elem_id="annotate-editor",
                sources=(),
                brush=gr.Brush(default_size=BRUSH_SIZE, colors=["#ff0000"], color_mode="fixed"),
            )
            editor.preprocess = limits.checked_editor(editor.preprocess)  # the pixel limit, from the header
            with gr.Row():
                entries = gr.Dropdown(
                    services.workspace.list_annotations(),
                    value=None,
                    allow_custom_value=True,  # API callers name an entry of theirs (checked by entry_files)
                    label="Saved entries",
                    scale=3,
                    elem_id="annotate-entries",
                )
                open_btn = gr.Button("Reopen", scale=1)
                delete_btn = gr.Button("Delete", variant="stop", scale=1, elem_id="annotate-delete")
            with gr.Row(visible=False) as confirm_row:
                confirm_btn = gr.Button("Yes, delete it", variant="stop", elem_id="annotate-confirm-delete")
                keep_btn = gr.Button("No, keep it")
            with gr.Row():
                zip_btn = gr.Button("Download the data set (zip)")
                zip_file = gr.File(label="annotations.zip", interactive=False)
            saved = gr.JSON(label="Last saved", visible=False)
    hidden = {"api_visibility": "undocumented"}
    prefill_ = bind(prefill, services)
    queue = ui.inference_queue()
    targets = [editor, status, current]
    rgb.upload(prefill_, [rgb, depth, model], targets, api_name="annotate_prefill", **queue)
    depth.upload(prefill_, [rgb, depth, model], targets, api_name="annotate_prefill_depth", **hidden, **queue)
    refill.click(
        lambda *a: prefill_(*a)[:2],
        [rgb, depth, model],
        [editor, status],
        api_name="annotate_refill",
        **hidden,
        **queue,
    )
    clear.click(clear_mask, rgb, editor, api_name="annotate_clear", **hidden)
    save_btn.click(
        bind(save, services),
        [category, label, ok_split, defect, rgb, depth, editor, model, current],
        [status, entries, current, saved],
        api_name="annotate_save",
    )
    open_btn.click(
        bind(reopen, services),
        entries,
        [category, rgb, depth, label, ok_split, defect, editor, current, status],
        api_name="annotate_open",
    )
    pending = gr.Textbox(visible=False)  # the entry awaiting confirmation (a textbox: API callers name it)
    delete_btn.click(ask_delete, entries, [pending, confirm_row, status], api_name="annotate_ask_delete", **hidden)
    keep_btn.click(cancel_delete, None, [pending, confirm_row, status], api_name="annotate_keep", **hidden)
    confirm_btn.click(
        bind(delete, services), pending, [status, entries, current, pending, confirm_row], api_name="annotate_delete"
    )
    zip_btn.click(bind(download, services), None, zip_file, api_name="annotate_download")
    # the page is built for no session: the list fills with this session's entries when it is opened
    entries.focus(
        lambda value: gr.update(choices=services.workspace.list_annotations(), value=value),
        entries,
        entries,
        api_name="annotate_entries",
        show_progress="hidden",
    )
    return model
