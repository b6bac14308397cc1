"""Batch tab: many RGB(-D) files or zips -> a sortable OK/NG table, overlay thumbnails and a report zip
(report.csv, report.json, overlays/), with progress and a Cancel that keeps the images already done."""

from __future__ import annotations

import html
import logging
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import gradio as gr

from app import limits, reviews
from app.services import Services, bind, default_services
from app.ui import GATE_HELP, GATES, INTERNAL_ERROR, error, model_dropdown, release_memory, upload_path
from easynet.batch import collect, inspect_items, write_report
from easynet.errors import EasyNetError, InputError
from easynet.predict import ModelCard

HEADERS = ["name", "model", "verdict", "reason", "score", "threshold", "score / threshold", "head", "typicality"]
DATATYPES = ["str", "str", "str", "str", "number", "number", "number", "str", "number"]
COLUMN_WIDTHS = ["11%", "10%", "8%", "31%", "8%", "8%", "8%", "7%", "9%"]
FILE_TYPES = [".png", ".jpg", ".jpeg", ".bmp", ".tiff", ".tif", ".npy", ".zip"]
UPDATE_EVERY_S = 1.0
KEEP_BATCHES = 10  # a session keeps its newest reports; older ones are deleted when a batch ends
log = logging.getLogger(__name__)  # the table and gallery are re-sent at most this often while a batch runs
_cancel: set[str] = set()  # sessions whose running batch should stop after the current image
_cancel_lock = threading.Lock()


def _session(request: gr.Request | None) -> str:
    """The cancel key of a request: its Gradio session; a call without one gets a key of its own (no other caller
    can cancel it)."""
    return getattr(request, "session_hash", None) or f"call-{secrets.token_hex(8)}"


def table_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            r["name"],
            r.get("model", ""),
            r["verdict"],
            r.get("reason") or "",
            r.get("score"),
            r.get("threshold"),
            r.get("score_over_threshold"),
            r.get("head", ""),
            r.get("typicality"),
        ]
        for r in rows
    ]


def gallery_items(rows: list[dict[str, Any]]) -> list[str]:
    """The overlay pictures; each carries its name, verdict and score in its own band (a gallery caption would
    cover the colour bar at the bottom)."""
    return [r["overlay"] for r in rows if r.get("overlay")]


def summary_html(
    rows: list[dict[str, Any]], total: int, card: ModelCard | None, done: bool, cancelled: bool = False
) -> str:
    """A banner over the batch: red when any image is NG, amber when any is UNSURE (and none NG), green when all are
    OK, grey while running."""
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("OK", "NG", "UNSURE", "error")}
    state = "cancelled" if cancelled else ("done" if done else "running")
    colour = "#c62828" if counts["NG"] else "#f59f00" if counts["UNSURE"] else "#2e7d32" if done and rows else "#616161"
    unreadable = f", {counts['error']} unreadable" if counts["error"] else ""
    text = (
        f"<b>{len(rows)} / {total} images {state}</b>: <b>{counts['OK']} OK</b>, <b>{counts['NG']} NG</b>, "
        f"<b>{counts['UNSURE']} UNSURE</b>{unreadable}"
    )
    if counts["UNSURE"]:
        text += f"<br>⚠ {counts['UNSURE']} image(s) need a person's look: the reason column says why."
    if card is not None:
        text += (
            f"<br>Model <b>{html.escape(card.name)}</b> was trained on <b>{html.escape(card.category or '?')}"
            f"</b>{f' ({card.quality})' if card.quality else ''}."
        )
    return (
        f'<div class="easynet-batch-summary" style="border:2px solid {colour};border-radius:8px;'
        f'padding:8px 12px;font-size:15px">{text}</div>'
    )


def run(
    files: Any,
    model: str | None,
    gate: str = "control",
    sensitivity: float = 1.0,
    request: gr.Request = None,
    progress: gr.Progress = gr.Progress(),  # noqa: B008
    *,
    services: Services | None = None,
) -> Iterator[tuple]:
    """The /batch endpoint: (table, thumbnails, summary, report zip, report JSON), streamed while it runs.

    Files are images with depth files named like them (NAME.png + NAME.tiff / NAME_xyz.tiff / NAME_depth.png)
    and/or zips of them; /batch_cancel stops the batch after the current image and still writes the report.
    """
    services = services or default_services()
    session = _session(request)
    scratch = batches = None
    with _cancel_lock:
        _cancel.discard(session)
    try:
        paths = [
            p for p in (upload_path(f) for f in (files if isinstance(files, list) else [files] if files else [])) if p
        ]
        if not paths:
            raise InputError("upload RGB images (with their depth files) or a zip of them first")
        files = services.workspace
        batches = files.own("batches")  # in the session's folder: swept with it after its TTL
        limits.check_disk(batches.parent, files.root(), sum(Path(p).stat().st_size for p in paths))
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{time.monotonic_ns() % 10**9:09d}"
        out = batches / stamp
        scratch = out / "unpacked"  # the extracted zips: deleted when the request ends, however it ends
        items = collect(paths, scratch=scratch)
        predictor = services.predictors.get(model)
        info = predictor.card
        rows: list[dict[str, Any]] = []
        last = 0.0
        progress((0, len(items)), desc="inspecting", unit="images")
        admit = lambda item: limits.admitted(item.rgb, item.depth)  # noqa: E731
        for row, p, item in inspect_items(predictor, items, out, gate, float(sensitivity), admit):
            if p is not None:  # every inspected image joins the review queue, this batch named
                picture = cv2.imread(row["overlay"])[..., ::-1]
                row["review_id"] = reviews.record(p, item.rgb, item.depth, picture, batch=stamp, name=item.name)
            rows.append(row)
            progress((len(rows), len(items)), desc="inspecting", unit="images")
            with _cancel_lock:
                stop = session in _cancel
            if stop:
                break
            if time.monotonic() - last > UPDATE_EVERY_S and len(rows) < len(items):
                last = time.monotonic()
                yield (
                    table_rows(rows),
                    gallery_items(rows),
                    summary_html(rows, len(items), info, False),
                    None,
                    gr.skip(),
                )
        cancelled = len(rows) < len(items)
        meta = {
            "model": info.name,
            "trained_on": info.category,
            "gate": gate,
            "sensitivity": float(sensitivity),
            "total": len(items),
            "done": len(rows),
            "cancelled": cancelled,
        }
        archive = write_report(rows, out, meta)
        report = {**meta, "rows": [{k: v for k, v in r.items() if k != "overlay"} for r in rows]}
        yield (
            table_rows(rows),
            gallery_items(rows),
            summary_html(rows, len(items), info, True, cancelled),
            str(archive),
            report,
        )
    except EasyNetError as err:
        raise error(str(err)) from None
    except gr.Error:
        raise
    except Exception as err:  # a bug must not reach the user as a traceback
        log.exception("the batch handler failed")
        raise error(INTERNAL_ERROR.format(name=type(err).__name__)) from None
    finally:
        with _cancel_lock:
            _cancel.discard(session)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        keep_recent(batches)
        release_memory()


def keep_recent(batches: Path | None, keep: int = KEEP_BATCHES) -> None:
    """Delete a session's batch reports beyond its newest ``keep`` (their folders and zips)."""
    if batches is None or not batches.is_dir():
        return
    folders = sorted((p for p in batches.iterdir() if p.is_dir()), key=lambda p: p.name)
    for old in folders[:-keep] if len(folders) > keep else []:
        shutil.rmtree(old, ignore_errors=True)
        old.with_suffix(".zip").unlink(missing_ok=True)


def cancel(request: gr.Request = None) -> str:
    """The /batch_cancel endpoint: the running batch of this session stops after its current image."""
    with _cancel_lock:
        _cancel.add(_session(request))
    return "Cancelling: the batch stops after the current image and writes the report of the images done."


def build(services: Services) -> gr.Dropdown:
    """Lay out the tab, its handlers acting on `services`; returns its model dropdown."""
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            model = model_dropdown(elem_id="batch-model")
            files = gr.File(
                label="RGB images + depth files (NAME.png + NAME.tiff) or zips",
                file_count="multiple",
                file_types=FILE_TYPES,
                elem_id="batch-files",
                height=160,
            )
            gate = gr.Radio(list(GATES), value="control", label="Gate", info=GATE_HELP)
            sensitivity = gr.Slider(0.25, 4.0, value=1.0, step=0.05, label="Sensitivity")
            with gr.Row():
                start = gr.Button("Inspect all", variant="primary", elem_id="batch-run")
                stop = gr.Button("Cancel", variant="stop", elem_id="batch-cancel")
            note = gr.Markdown(elem_id="batch-cancel-note")
            report_zip = gr.File(
                label="Report (report.csv, report.json, overlays/)", interactive=False, elem_id="batch-report"
            )
        with gr.Column(scale=2):
            summary = gr.HTML(
                "<p>Upload images (and their depth files) or a zip, then <b>Inspect all</b>.</p>",
                elem_id="batch-summary",
            )
            table = gr.Dataframe(
                value=[],
                headers=HEADERS,
                datatype=DATATYPES,
                interactive=False,
                label="Results (click a column header to sort)",
                elem_id="batch-table",
                max_height=360,
                wrap=True,  # the reason column wraps instead of running past the page
                column_widths=COLUMN_WIDTHS,
            )
            gallery = gr.Gallery(label="Overlays", columns=6, height=300, object_fit="contain", elem_id="batch-gallery")
            with gr.Accordion("Report JSON", open=False):
                report = gr.JSON()
    outputs = [table, gallery, summary, report_zip, report]
    start.click(bind(run, services), [files, model, gate, sensitivity], outputs, api_name="batch")
    start.click(lambda: "", None, note, api_name="batch_clear_note", api_visibility="undocumented")
    stop.click(cancel, None, note, api_name="batch_cancel", concurrency_limit=None)
    return model
