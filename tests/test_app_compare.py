"""Compare and Evaluate pick the model of the sample or test category; heat maps agree with their verdicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHIPPED = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "checkpoints").glob("*.pt"))


@pytest.mark.skipif(len(SHIPPED) < 2, reason="needs two shipped checkpoints of different categories")
def test_compare_and_evaluate_pick_the_models_of_the_sample_and_the_test_category(assets):
    from app import compare, models

    first, second = SHIPPED[0], SHIPPED[1]
    assert models.find(second).category == second
    assert compare.sample_model(second, first) == second  # a clicked sample switches the model
    assert compare.sample_model("unknown_part", first) == first  # no model of that category: keep the choice
    assert compare.model_for_test_data("synthetic", second, None, None, first) == second
    assert compare.model_for_test_data("annotated", None, second, None, first) == second
    assert compare.model_for_test_data("folder", None, None, f" {second} ", first) == second
    assert compare.model_for_test_data("folder", None, None, "", first) == first


@pytest.mark.skipif(len(SHIPPED) < 2, reason="needs two shipped checkpoints of different categories")
def test_the_page_wires_sample_clicks_and_category_changes_to_the_model(assets):
    from app_helpers import load_demo

    demo = load_demo()
    config = demo.get_config_file()
    names = {d.get("api_name") for d in config["dependencies"]}
    assert {"compare_sample_model", "evaluate_model", "select_sample", "pick_sample"} <= names
    by_id = {c["id"]: c for c in config["components"]}
    for api_name, target in (("compare_sample_model", "compare-model"), ("evaluate_model_0", "evaluate-model")):
        dep = next(d for d in config["dependencies"] if d.get("api_name") == api_name)
        assert [by_id[o]["props"].get("elem_id") for o in dep["outputs"]] == [target]
    evaluate_model = next(c for c in config["components"] if c["props"].get("elem_id") == "evaluate-model")
    from easynet.data.synthetic import CATEGORIES

    first_synthetic = next(iter(CATEGORIES))
    if first_synthetic in SHIPPED:
        assert evaluate_model["props"]["value"] == first_synthetic


def test_each_compare_map_shows_its_verdict(assets):
    from app import compare

    *pictures, table, summary = compare.compare_sample(str(assets.rgb), str(assets.depth), assets.model)
    assert "was trained on" in table and "e-" not in table.split("control chose")[1].split("\n")[0]
    for gate in ("close", "open", "control"):
        verdict = summary[gate]["summary"]
        expected = "NG" if summary[gate]["is_anomalous"] else "OK"
        assert verdict["verdict"] == expected or (verdict["verdict"] == "UNSURE" and verdict["reason"])
        assert verdict["threshold"] == round(summary[gate]["threshold"], 4)
    assert all(p.shape == pictures[0].shape and p.dtype == np.uint8 for p in pictures)


def test_pick_sample_returns_the_pair_and_its_categorys_model(assets):
    from app import inspect_tab, workspace

    pairs = workspace.sample_pairs()
    if not pairs:
        pytest.skip("no shipped samples")
    rgb, depth, model = inspect_tab.pick_sample(len(pairs) - 1, "keep")
    category = Path(rgb).parent.name
    assert (rgb, depth) == tuple("/".join(Path(p).parts[-2:]) for p in pairs[-1])  # names, never server paths
    assert not Path(rgb).is_absolute() and model == (category if category in SHIPPED else "keep")
