"""Small UI promises: the 3D camera sees every point, legends sit above the plot, no idle polling, no empty
'1 2 3' table, validation figures carry their image count."""

from __future__ import annotations

import numpy as np


def test_the_3d_view_is_fitted_to_the_points():
    from app import figures

    rng = np.random.default_rng(0)
    xyz = np.zeros((40, 60, 3), np.float32)
    xyz[..., 0] = np.linspace(-0.3, 0.5, 60)[None, :]  # a wide part, off the origin
    xyz[..., 1] = np.linspace(-0.1, 0.2, 40)[:, None]
    xyz[..., 2] = 0.6 + rng.normal(0, 0.01, (40, 60))
    fig = figures.point_cloud(xyz, None, np.zeros((40, 60, 3), np.uint8), np.zeros((8, 8), np.float32))
    scene = fig.layout.scene
    trace = fig.data[0]
    for axis, values in (("xaxis", trace.x), ("yaxis", trace.y), ("zaxis", trace.z)):
        low, high = getattr(scene, axis).range
        assert low < min(values) and max(values) < high
    eye = scene.camera.eye
    assert np.linalg.norm([eye.x, eye.y, eye.z]) >= 2.0  # plotly's scene box spans [-1, 1]: the eye is outside it
    assert trace.marker.colorbar.ticktext == ("noise floor", "threshold", "2x threshold")


def test_legends_sit_above_the_plot_and_empty_tables_have_headers(assets):
    from app import figures

    curve = figures.loss_curve([{"step": 1, "total": 1.0, "ssim": 0.5}, {"step": 2, "total": 0.8, "ssim": 0.4}])
    assert curve.layout.legend.yanchor == "bottom" and curve.layout.legend.y >= 1
    from app_helpers import load_demo

    config = load_demo().get_config_file()
    frames = [c for c in config["components"] if c["type"] == "dataframe"]
    assert frames and all(c["props"]["value"]["headers"] and "1" not in c["props"]["value"]["headers"] for c in frames)


def test_the_job_timer_is_off_while_no_job_is_active(assets):
    from app import finetune

    assert finetune.polling().active is False
    from app_helpers import load_demo

    timer = next(c for c in load_demo().get_config_file()["components"] if c["type"] == "timer")
    assert timer["props"]["active"] is False


def test_validation_figures_state_their_image_count():
    from app.models import quality_text

    assert (
        quality_text({"i_auroc_control": 1.0, "n_images": 4, "n_synthetic": 3})
        == "val I-AUROC 1.000 on 4 images (3 synthetic)"
    )
    assert quality_text({"i_auroc_control": 0.9}) == "val I-AUROC 0.900 (image count not recorded)"
    assert quality_text({}) is None
