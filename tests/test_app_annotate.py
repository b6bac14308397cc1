"""Annotate tab: the saved mask is the on-screen mask, saves never overwrite each other, Delete hits its entry."""

from __future__ import annotations

import cv2
import gradio as gr
import numpy as np
import pytest


def _on_disk(relative: str) -> str:
    """Saved paths are relative to the session's annotation data set (no server paths leak)."""
    from app import workspace

    return str(workspace.annotations_root() / relative)


def _rgb(path) -> np.ndarray:
    return cv2.imread(str(path))[..., ::-1].copy()


def _as_browser_returns(value: dict, stroke: tuple[slice, slice], erase: tuple[slice, slice] | None = None) -> dict:
    """What Gradio 6's editor sends back after one red brush stroke (and an eraser pass over part of it): the
    shown picture with the stroke on top as the composite, and the stroke alone as the one layer."""
    layer = np.zeros((*value["composite"].shape[:2], 4), np.uint8)
    layer[stroke] = (255, 0, 0, 255)
    if erase is not None:
        layer[erase] = 0
    composite = value["composite"].copy()
    painted = layer[..., 3] > 0
    composite[painted] = (255, 0, 0)
    return {"background": value["background"], "layers": [layer], "composite": composite}


def test_prefilled_and_edited_mask_saves_exactly_the_on_screen_pixels(assets, monkeypatch):
    from app import annotate

    image = _rgb(assets.rgb)
    h, w = image.shape[:2]
    predicted = np.zeros((h, w), bool)
    predicted[h // 4 : h // 2, w // 4 : w // 2] = True  # a known pre-fill, independent of the tiny model
    monkeypatch.setattr(annotate, "predicted_mask", lambda *a: predicted)
    value, note, _ = annotate.prefill(str(assets.rgb), str(assets.depth), assets.model)
    assert "Pre-filled" in note
    stroke = (slice(3 * h // 4, 3 * h // 4 + 5), slice(2, w // 2))
    erase = (slice(3 * h // 4, 3 * h // 4 + 5), slice(2, w // 8))
    edited = _as_browser_returns(value, stroke, erase)
    on_screen = predicted.copy()
    on_screen[stroke] = True
    on_screen[erase] = False
    _, _, _, saved = annotate.save("screen", "NG", "train", "dent", str(assets.rgb), None, edited, assets.model)
    gt = cv2.imread(_on_disk(saved["files"]["gt"]), cv2.IMREAD_GRAYSCALE) > 0
    assert gt.sum() == on_screen.sum() and np.array_equal(gt, on_screen)

    # saved without touching the editor: the pre-fill alone
    _, _, _, saved = annotate.save("screen", "NG", "train", "dent", str(assets.rgb), None, value, assets.model)
    assert np.array_equal(cv2.imread(_on_disk(saved["files"]["gt"]), cv2.IMREAD_GRAYSCALE) > 0, predicted)

    # 'Clear the mask' then one stroke: the stroke alone
    cleared = annotate.clear_mask(str(assets.rgb))
    _, _, _, saved = annotate.save(
        "screen", "NG", "train", "dent", str(assets.rgb), None, _as_browser_returns(cleared, stroke), assets.model
    )
    only_stroke = np.zeros((h, w), bool)
    only_stroke[stroke] = True
    assert np.array_equal(cv2.imread(_on_disk(saved["files"]["gt"]), cv2.IMREAD_GRAYSCALE) > 0, only_stroke)


def test_a_red_photo_is_still_marked_visibly():
    from app import annotate

    image = np.zeros((8, 8, 3), np.uint8)
    image[..., 0] = 255  # already pure red: a red tint alone would not show
    mask = np.zeros((8, 8), bool)
    mask[2:5, 2:6] = True
    assert np.array_equal(annotate.mask_from_editor(annotate.editor_value(image, mask), image), mask)


def test_depth_uploaded_after_the_rgb_prefills_again(assets):
    from app import annotate

    _, note_rgb, _ = annotate.prefill(str(assets.rgb), None, assets.model)
    _, note_both, _ = annotate.prefill(str(assets.rgb), str(assets.depth), assets.model)
    assert "RGB only" in note_rgb and "RGB + depth" in note_both


def test_saves_without_reopening_add_entries_and_the_list_selects_the_new_one(assets):
    from app import annotate, workspace

    current, items = None, []
    for _ in range(3):  # the session state is passed on from save to save, as a browser or API client does
        _, entries, current, saved = annotate.save(
            "three", "OK", "train", "", str(assets.rgb), None, None, assets.model, current
        )
        items.append(saved["entry"])
        assert entries["value"] == saved["entry"] and current is None
    assert items == [f"three:train/good/{i:03d}" for i in range(3)]
    assert workspace.list_annotations("three") == items


def test_a_reopened_entry_is_relabelled_in_place_but_another_picture_is_not(assets, tmp_path):
    from app import annotate, workspace

    _, _, _, first = annotate.save("relabel", "OK", "train", "", str(assets.rgb), None, None, assets.model)
    reopened = annotate.reopen(first["entry"])
    _, _, current, moved = annotate.save(
        "relabel", "OK", "validation", "", reopened[1], None, None, assets.model, reopened[7]
    )
    assert moved["entry"] == "relabel:validation/good/000" and current == moved["entry"]
    other = tmp_path / "other.png"
    cv2.imwrite(str(other), 255 - cv2.imread(str(assets.rgb)))
    _, _, current, added = annotate.save(
        "relabel", "OK", "validation", "", str(other), None, None, assets.model, current
    )
    assert added["entry"] == "relabel:validation/good/001" and current is None
    assert workspace.list_annotations("relabel") == [moved["entry"], added["entry"]]


def test_delete_asks_first_and_removes_the_selected_entry_only(assets):
    from app import annotate, workspace

    items = [
        annotate.save("del", "OK", "train", "", str(assets.rgb), None, None, assets.model)[3]["entry"] for _ in range(3)
    ]
    pending, row, question = annotate.ask_delete(items[1])
    assert pending == items[1] and row["visible"] and items[1] in question
    assert workspace.list_annotations("del") == items  # asking deletes nothing
    assert annotate.cancel_delete()[0] == ""
    status, entries, _, _, row = annotate.delete(pending)
    assert workspace.list_annotations("del") == [items[0], items[2]] and items[1] in status
    assert entries["value"] is None and not row["visible"]
    with pytest.raises(gr.Error, match="choose a saved entry"):
        annotate.ask_delete(None)
