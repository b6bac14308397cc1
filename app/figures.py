"""Plotly figures (3D point cloud, loss curve, metric bars) and small picture helpers for the tabs."""

from __future__ import annotations

import os
from typing import Any

import cv2
import numpy as np
import plotly.graph_objects as go

from easynet.visualize import to_uint8

MAX_POINTS_ENV = "EASYNET_MAX_POINTS"
DEFAULT_MAX_POINTS = 40_000
CLOUD_HEIGHT = 480  # px; fixed so the page does not jump
CHART_HEIGHT = 320
POINT_SIZE = 2
CAMERA_DISTANCE = 2.2  # plotly camera eye distance in scene units (the data box spans about 2): whole part in view
CAMERA_DIRECTION = (0.3, -0.5, 0.81)  # slightly above and to the right of the sensor's line of sight
LEGEND_ON_TOP = {"orientation": "h", "x": 0, "y": 1.02, "xanchor": "left", "yanchor": "bottom"}
GATE_COLOURS = {"close": "#1f77b4", "open": "#ff7f0e", "control": "#2ca02c"}


def max_points() -> int:
    try:
        return max(1, int(os.environ.get(MAX_POINTS_ENV, DEFAULT_MAX_POINTS)))
    except ValueError:
        return DEFAULT_MAX_POINTS


def _message(text: str, height: int) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font={"size": 14})
    fig.update_layout(
        height=height,
        xaxis={"visible": False},
        yaxis={"visible": False},
        plot_bgcolor="white",
        paper_bgcolor="white",
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
    )
    return fig


def _resize(a: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if a.shape[:2] == hw:
        return a
    return cv2.resize(a, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)


def point_cloud(
    xyz: np.ndarray | None,
    foreground: np.ndarray | None,
    rgb: np.ndarray,
    heat: np.ndarray,
    colour_by: str = "anomaly",
    seed: int = 0,
) -> go.Figure:
    """The table-removed points of an organised cloud, coloured by the calibrated heat map or by RGB.

    Args:
        xyz: (H, W, 3) metres at the original size (None without depth).
        foreground: (H, W) bool object mask after table removal.
        rgb: (h, w, 3) image (any size; resized to H, W).
        heat: (s, s) calibrated heat map in [0, 1] (resized to H, W).
    """
    if xyz is None:
        return _message("No depth given: the 3D view needs an xyz .tiff, a depth .png or a .npy", CLOUD_HEIGHT)
    hw = xyz.shape[:2]
    keep = np.isfinite(xyz).all(axis=2) & (xyz[..., 2] != 0)
    if foreground is not None and foreground.any():
        keep &= foreground
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        return _message("No object points left after removing the table", CLOUD_HEIGHT)
    if idx.size > max_points():
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_points(), replace=False))
    pts = xyz.reshape(-1, 3)[idx]
    if colour_by == "rgb":
        colours = to_uint8(_resize(rgb, hw)).reshape(-1, 3)[idx]
        marker = {"color": [f"rgb({r},{g},{b})" for r, g, b in colours], "size": POINT_SIZE}
    else:
        values = np.clip(_resize(heat.astype(np.float32), hw).reshape(-1)[idx], 0, 1)
        marker = {
            "color": values,
            "colorscale": "Jet",
            "cmin": 0.0,
            "cmax": 1.0,
            "size": POINT_SIZE,
            "colorbar": {
                "title": {"text": "anomaly"},
                "thickness": 12,
                "tickvals": [0, 0.5, 1],
                "ticktext": ["noise floor", "threshold", "2x threshold"],
            },
        }
    # camera looks along +z with y down (image convention): flip y and z so the object faces the viewer
    fig = go.Figure(
        go.Scatter3d(x=pts[:, 0], y=-pts[:, 1], z=-pts[:, 2], mode="markers", marker=marker, hoverinfo="skip")
    )
    fig.update_layout(height=CLOUD_HEIGHT, margin={"l": 0, "r": 0, "t": 0, "b": 0}, scene=fitted_scene(pts))
    return fig


def fitted_scene(pts: np.ndarray) -> dict[str, Any]:
    """A scene whose axes span the points (plus a margin) and whose camera sees all of them: the view is fitted
    to the part, not to plotly's default distance."""
    shown = np.stack([pts[:, 0], -pts[:, 1], -pts[:, 2]], axis=1)
    low, high = shown.min(axis=0), shown.max(axis=0)
    pad = 0.05 * max(float((high - low).max()), 1e-6)
    axes = {
        f"{a}axis": {"visible": False, "range": [float(lo - pad), float(hi + pad)]}
        for a, lo, hi in zip("xyz", low, high)
    }
    eye = np.asarray(CAMERA_DIRECTION) / np.linalg.norm(CAMERA_DIRECTION) * CAMERA_DISTANCE
    return {
        "aspectmode": "data",
        **axes,
        "camera": {"eye": dict(zip("xyz", map(float, eye))), "center": {"x": 0, "y": 0, "z": 0}},
    }


def loss_curve(history: list[dict[str, float]]) -> go.Figure:
    """Total and named loss terms against the step."""
    if not history:
        return _message("The loss curve appears once training starts", CHART_HEIGHT)
    steps = [h["step"] for h in history]
    fig = go.Figure()
    for key in [k for k in history[-1] if k != "step"]:
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=[h.get(key) for h in history],
                mode="lines",
                name=key,
                line={"width": 3 if key == "total" else 1.5},
            )
        )
    fig.update_layout(
        height=CHART_HEIGHT,
        xaxis_title="step",
        yaxis_title="loss",
        margin={"l": 50, "r": 10, "t": 40, "b": 40},
        legend=LEGEND_ON_TOP,
    )
    return fig


def metric_rows(report: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """(header, rows) of I-AUROC / P-AUROC / AUPRO and per-defect I-AUROC per gate."""
    gates = report.get("gates", {})
    defects = sorted({d for g in gates.values() for d in (g.get("per_defect_i_auroc") or {})})
    header = ["gate", "I-AUROC", "P-AUROC", "AUPRO"] + [f"I-AUROC {d}" for d in defects]
    rows = []
    for gate, m in gates.items():
        per = m.get("per_defect_i_auroc") or {}
        values = [m.get("i_auroc"), m.get("p_auroc"), m.get("aupro")] + [per.get(d) for d in defects]
        rows.append([gate] + [None if v is None else round(float(v), 4) for v in values])
    return header, rows


def metric_bars(report: dict[str, Any]) -> go.Figure:
    """Grouped bars: one group per metric, one bar per gate."""
    header, rows = metric_rows(report)
    if not rows:
        return _message("No metrics yet", CHART_HEIGHT)
    fig = go.Figure()
    for row in rows:
        fig.add_trace(go.Bar(x=header[1:], y=row[1:], name=row[0], marker_color=GATE_COLOURS.get(row[0])))
    fig.update_layout(
        barmode="group",
        height=CHART_HEIGHT,
        yaxis={"range": [0, 1]},
        margin={"l": 40, "r": 10, "t": 40, "b": 40},
        legend=LEGEND_ON_TOP,
    )
    return fig


DISPLAY_MAX_SIDE = 1024  # pictures sent to the browser are at most this many pixels on their long side


def fit_display(image: np.ndarray, max_side: int = DISPLAY_MAX_SIDE) -> np.ndarray:
    """``image`` shrunk (INTER_AREA) so that its long side is at most ``max_side``; small ones are returned as they
    are. A 6000 px upload is drawn at 1024 px: the browser shows no more, and the server keeps its memory."""
    factor = max_side / max(image.shape[:2])
    if factor >= 1:
        return image
    size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def heat_picture(rgb: np.ndarray, heat: np.ndarray, min_side: int = 256) -> np.ndarray:
    """A heat map on the verdict scale blended over the RGB at the RGB's size (at most DISPLAY_MAX_SIDE, enlarged to
    at least `min_side` pixels), with the colour bar below it."""
    from easynet.visualize import overlay, with_colour_bar

    rgb = fit_display(rgb)
    picture = overlay(rgb, fit_display(heat) if heat.shape[:2] != rgb.shape[:2] else heat)
    factor = int(np.ceil(min_side / max(1, min(picture.shape[:2]))))
    if factor > 1:
        picture = np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1)
    return with_colour_bar(picture)


def placeholder(text: str, size: tuple[int, int] = (128, 256)) -> np.ndarray:
    """A grey picture carrying a short message, for image slots that have nothing to show."""
    image = np.full((*size, 3), 235, np.uint8)
    scale = 0.4
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    org = (max(2, (size[1] - w) // 2), (size[0] + h) // 2)
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (90, 90, 90), 1, cv2.LINE_AA)
    return image
