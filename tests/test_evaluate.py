"""Calibration reads only validation; evaluation JSON has the documented shape; scores are comparable."""

import json

import numpy as np
import pytest
import torch

from easynet.calibrate import CALIBRATION_RULE, _youden_threshold
from easynet.data import registry
from easynet.data.types import Split
from easynet.evaluate import gate_scores


def test_calibration_never_reads_the_test_split(tiny_tree, tmp_path, monkeypatch):
    from easynet.config import MODEL_PRESETS, TRAIN_PRESETS
    from easynet.pipeline import train_category

    opened = []
    real = registry.open_dataset

    def spy(root, category=None, split=Split.TEST, **kw):
        opened.append(Split(split))
        return real(root, category, split, **kw)

    monkeypatch.setattr("easynet.pipeline.open_dataset", spy)
    summary = train_category(
        tiny_tree,
        "toy",
        tmp_path / "m.pt",
        model_cfg=MODEL_PRESETS["lite"].replace(image_size=32),
        train_cfg=TRAIN_PRESETS["official"].replace(steps=1, batch_size=2),
        progress=False,
        device="cpu",
    )
    assert Split.TEST not in opened and opened[-1] == Split.VALIDATION  # (metric depth: TRAIN once more, for the scale)
    check_train_summary(summary, tmp_path / "m.pt")


def check_train_summary(summary, path):
    """train_category's typed result (not a dict), as the CLI and the app's jobs read it."""
    from easynet.results import TrainSummary

    assert isinstance(summary, TrainSummary) and not isinstance(summary, dict)
    assert summary.checkpoint == str(path) and summary.steps == 1 and summary.stopped is False
    assert isinstance(summary.alpha, float) and isinstance(summary.validation, dict)
    assert isinstance(summary.history, list) and all(isinstance(h, dict) for h in summary.history)
    keys = {"checkpoint", "steps", "stopped", "alpha", "validation", "history", "parent_validation"}
    assert set(summary.to_dict()) == keys and summary.parent_validation is None  # not a fine-tune


def test_evaluate_category_returns_a_typed_report_with_the_json_shape(tiny_tree, tiny_checkpoint):
    from easynet.pipeline import evaluate_category
    from easynet.results import EvalReport

    report, _, _ = evaluate_category(tiny_checkpoint, tiny_tree, "toy", gates=["close", "control"], device="cpu")
    assert isinstance(report, EvalReport) and report.category == "toy" and report.n_images > 0
    shape = report.to_dict()
    assert list(shape) == ["category", "checkpoint", "n_images", "gates"]  # the `evaluate --json` shape, in order
    assert set(shape["gates"]["close"]) == {"i_auroc", "i_ap", "p_auroc", "p_ap", "aupro", "per_defect_i_auroc"}
    assert set(shape["gates"]["control"]) == set(shape["gates"]["close"]) | {"fused_fraction"}
    assert json.loads(json.dumps(shape)) == shape


def test_youden_threshold_hand_computed():
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    # J(t >= 0.8) = 1/2 - 0 = 0.5; J(0.4) = 1/2 - 1/2 = 0; J(0.35) = 1 - 1/2 = 0.5; J(0.1) = 0.
    # Tie: the lower threshold 0.35 wins (catch every defect), placed half-way to the next score 0.1.
    assert _youden_threshold(labels, scores) == pytest.approx(0.225)
    # many clean images with low scores: F1 would sit at the lowest anomaly, Youden above the clean ones
    labels = np.array([0] * 6 + [1] * 2)
    scores = np.array([0.1, 0.2, 0.2, 0.3, 0.3, 0.6, 0.5, 0.9])
    # t=0.9: J=0.5; t=0.6: 0.5-1/6; t=0.5: 1-1/6 = 0.833 (best); t=0.3: 1-3/6
    assert _youden_threshold(labels, scores) == pytest.approx(0.4)


def test_gate_scores_normalise_each_head():
    from easynet.checkpoint import Calibration
    from easynet.evaluate import HeadOutputs

    cal = Calibration(alpha=0.0)
    cal.rgb.threshold, cal.fused.threshold = 0.5, 0.2
    heads = HeadOutputs(
        prob_rgb=np.zeros((2, 4, 4)),
        prob_fused=np.zeros((2, 4, 4)),
        score_rgb=np.array([0.5, 0.25]),
        score_fused=np.array([0.1, 0.4]),
        entropy_rgb=np.array([0.5, 0.5]),
        entropy_fused=np.array([0.4, 0.6]),
    )
    scores, _, used = gate_scores(heads, cal, "control")
    assert used.tolist() == [False, True]
    assert scores.tolist() == pytest.approx([1.0, 2.0])  # 0.5 / 0.5 and 0.4 / 0.2


def test_score_gate_rule_picks_the_more_alarmed_head():
    """Hand-computed: per image, score / threshold of each head; the larger one is used (ties: RGB); the
    entropies and alpha play no part."""
    from easynet.checkpoint import Calibration
    from easynet.evaluate import HeadOutputs

    cal = Calibration(alpha=-100.0)  # the entropy rule would send every image to the fused head
    cal.rgb.threshold, cal.fused.threshold = 0.5, 0.2
    heads = HeadOutputs(
        prob_rgb=np.zeros((3, 4, 4)),
        prob_fused=np.zeros((3, 4, 4)),
        score_rgb=np.array([0.5, 0.25, 0.4]),  # ratios 1.0, 0.5, 0.8
        score_fused=np.array([0.1, 0.4, 0.16]),  # ratios 0.5, 2.0, 0.8
        entropy_rgb=np.array([0.5, 0.5, 0.5]),
        entropy_fused=np.array([0.4, 0.6, 0.5]),
        gate_rule="score",
    )
    scores, _, used = gate_scores(heads, cal, "control")
    assert used.tolist() == [False, True, False]
    assert scores.tolist() == pytest.approx([1.0, 2.0, 0.8])
    assert gate_scores(heads, cal, "control", "entropy")[2].tolist() == [True, True, True]


def test_cli_end_to_end(tiny_tree, tiny_checkpoint, tmp_path, capsys):
    from easynet.cli import main

    report_path = tmp_path / "r.json"
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(tiny_checkpoint),
                "--data",
                str(tiny_tree),
                "--category",
                "toy",
                "--json",
                str(report_path),
                "--save-maps",
                str(tmp_path / "maps"),
            ]
        )
        == 0
    )
    report = json.loads(report_path.read_text())
    assert set(report) == {"category", "checkpoint", "n_images", "gates"}
    assert set(report["gates"]) == {"close", "open", "control"}
    for name, g in report["gates"].items():
        keys = {"i_auroc", "i_ap", "p_auroc", "p_ap", "aupro", "per_defect_i_auroc"}
        assert set(g) == keys | ({"fused_fraction"} if name == "control" else set())
        assert set(g["per_defect_i_auroc"]) == {"hole"}
    assert "I-AUROC" in capsys.readouterr().out
    assert len(list((tmp_path / "maps").glob("*.npy"))) == 2 * report["n_images"]

    rgb = tiny_tree / "toy/test/hole/rgb/000.png"
    xyz = tiny_tree / "toy/test/hole/xyz/000.tiff"
    out, pj = tmp_path / "pred", tmp_path / "p.json"
    code = main(
        [
            "predict",
            "--checkpoint",
            str(tiny_checkpoint),
            "--rgb",
            str(rgb),
            "--depth",
            str(xyz),
            "--gate",
            "open",
            "--out",
            str(out),
            "--json",
            str(pj),
        ]
    )
    pred = json.loads(pj.read_text())
    for key in ("score", "threshold", "gate", "used", "entropy_rgb", "entropy_fused", "alpha", "summary"):
        assert key in pred
    assert pred["used"] == "fused" and pred["gate"] == "open"
    verdict = pred["summary"]["verdict"]
    assert code == {"OK": 0, "NG": 3, "UNSURE": 4}[verdict]  # the exit status carries the verdict
    assert verdict == ("NG" if pred["score"] >= pred["threshold"] else "OK") or pred["summary"]["typicality"] > 1
    for name in ("heatmap.png", "overlay.png", "reconstruction_rgb.png", "reconstruction_depth.png", "anomaly_map.npy"):
        assert (out / name).is_file()
    code = main(["predict", "--checkpoint", str(tiny_checkpoint), "--rgb", str(rgb), "--json", str(pj)])
    alone = json.loads(pj.read_text())
    assert alone["used"] == "rgb"  # RGB alone: the gate is closed
    # an RGB-D model given no depth never says OK: UNSURE, or NG when the RGB head already sees a defect
    assert alone["summary"]["verdict"] in ("UNSURE", "NG") and code in (3, 4)

    assert main(["info", "--checkpoint", str(tiny_checkpoint), "--image-size", "32"]) == 0
    assert main(["predict", "--checkpoint", str(tmp_path / "missing.pt"), "--rgb", str(rgb)]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_cli_train_on_tree(tiny_tree, tmp_path):
    from easynet.checkpoint import load_checkpoint
    from easynet.cli import main

    out = tmp_path / "cli.pt"
    assert (
        main(
            [
                "train",
                "--data",
                str(tiny_tree),
                "--category",
                "toy",
                "--out",
                str(out),
                "--steps",
                "2",
                "--batch-size",
                "2",
                "--image-size",
                "32",
                "--set",
                "layers=1",
                "--quiet",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    ckpt = load_checkpoint(out)
    assert ckpt.model_config.layers == 1 and ckpt.provenance["steps"] == 2
    assert ckpt.calibration.rule == CALIBRATION_RULE


def test_calibration_rule_survives_python_OO(tiny_tree, tiny_checkpoint, tmp_path):
    import subprocess
    import sys

    from easynet.checkpoint import load_checkpoint

    out = tmp_path / "oo.pt"
    args = [
        "calibrate",
        "--checkpoint",
        str(tiny_checkpoint),
        "--data",
        str(tiny_tree),
        "--category",
        "toy",
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    subprocess.run([sys.executable, "-OO", "-m", "easynet", *args], check=True, capture_output=True)
    assert CALIBRATION_RULE.startswith("* The calibration set is every validation image")
    assert load_checkpoint(out).calibration.rule == CALIBRATION_RULE  # docstrings are stripped under -OO


def test_info_paper_reports_140_6_million(capsys):
    from easynet.cli import main

    assert main(["info", "--preset", "paper", "--image-size", "32"]) == 0
    assert "140.6 M" in capsys.readouterr().out


def test_cli_calibrate_refits_calibration_and_keeps_weights(tiny_tree, tiny_checkpoint, tmp_path, capsys):
    from easynet.checkpoint import Calibration, load_checkpoint, save_checkpoint
    from easynet.cli import main

    stale = load_checkpoint(tiny_checkpoint)
    stale.calibration = Calibration(alpha=123.0)  # a calibration nobody fitted
    src = save_checkpoint(stale, tmp_path / "stale.pt")
    out = tmp_path / "fresh.pt"
    args = ["calibrate", "--checkpoint", str(src), "--data", str(tiny_tree), "--category", "toy", "--out", str(out)]
    assert main(args + ["--device", "cpu"]) == 0
    fresh = load_checkpoint(out)
    assert fresh.calibration.alpha != 123.0
    assert fresh.calibration.metrics["n_images"] > 0  # fitted on the validation images and their synthetics
    assert "calibrate" in fresh.provenance["recalibrated"]
    for k, v in stale.state_dict.items():
        assert torch.equal(v, fresh.state_dict[k]), k
    assert "calibrated" in capsys.readouterr().out
    assert main(args[:-1] + [str(tmp_path / "half.pt"), "--half", "--device", "cpu"]) == 0
    half = load_checkpoint(tmp_path / "half.pt").state_dict
    for k, v in stale.state_dict.items():  # stored as float16, loaded back as float32
        expected = v.half().float() if v.is_floating_point() else v
        assert torch.equal(half[k], expected), k


def test_cli_calibrate_switches_the_gate_rule(tiny_tree, tiny_checkpoint, tmp_path, capsys):
    """`calibrate --gate-rule entropy` switches a `lite` checkpoint (score rule) to the paper's rule in its model
    config, records both rules' validation I-AUROC, and the control I-AUROC is the entropy rule's; a checkpoint
    with the authors' score rule refuses the score rule in one sentence."""
    from easynet.checkpoint import load_checkpoint, save_checkpoint
    from easynet.cli import main

    assert load_checkpoint(tiny_checkpoint).model_config.gate_rule == "score"
    out = tmp_path / "entropy.pt"
    args = ["calibrate", "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_tree), "--category", "toy"]
    assert main([*args, "--out", str(out), "--gate-rule", "entropy", "--device", "cpu"]) == 0
    assert "control gate rule entropy" in capsys.readouterr().out
    ckpt = load_checkpoint(out)
    metrics = ckpt.calibration.metrics
    assert ckpt.model_config.gate_rule == "entropy" and metrics["gate_rule"] == "entropy"
    assert metrics["i_auroc_control"] == metrics["i_auroc_control_entropy"]
    assert "i_auroc_control_score" in metrics
    official = load_checkpoint(tiny_checkpoint)
    official.model_config = official.model_config.replace(score_rule="official", gate_rule="entropy")
    src = save_checkpoint(official, tmp_path / "official.pt")
    assert main(["calibrate", "--checkpoint", str(src), *args[3:], "--gate-rule", "score", "--device", "cpu"]) == 1
    assert "whose gate is the entropy rule" in capsys.readouterr().err


def test_pair_folder_calibration_never_sees_test_pairs(tmp_path, monkeypatch):
    """A plain pair folder: training and calibration get good pairs only, none of the test split's."""
    from helpers import make_pair_folder

    from easynet import pipeline
    from easynet.config import MODEL_PRESETS, TRAIN_PRESETS

    root = make_pair_folder(tmp_path / "pairs", size=32, n_good=6, n_bad=2)
    seen = {}
    real_calibrate, real_train = pipeline.calibrate, pipeline.train

    def spy_calibrate(model, validation, *args, **kw):
        seen["calibration"] = [validation[i].name for i in range(len(validation))]
        seen["calibration_labels"] = [validation[i].label for i in range(len(validation))]
        return real_calibrate(model, validation, *args, **kw)

    def spy_train(model_cfg, train_cfg, samples, **kw):
        seen["train"] = [samples[i].name for i in range(len(samples))]
        return real_train(model_cfg, train_cfg, samples, **kw)

    monkeypatch.setattr(pipeline, "calibrate", spy_calibrate)
    monkeypatch.setattr(pipeline, "train", spy_train)
    pipeline.train_category(
        root,
        None,
        tmp_path / "m.pt",
        model_cfg=MODEL_PRESETS["lite"].replace(image_size=32),
        train_cfg=TRAIN_PRESETS["official"].replace(steps=1, batch_size=2),
        progress=False,
        device="cpu",
    )
    test = registry.open_dataset(root, None, Split.TEST, image_size=32)
    test_names = {r.name for r in test.records}
    assert {"bad_6", "bad_7"} <= test_names
    assert seen["calibration"] and not set(seen["calibration"]) & test_names
    assert not set(seen["train"]) & test_names and not set(seen["train"]) & set(seen["calibration"])
    assert seen["calibration_labels"] == [0] * len(seen["calibration"])


def _fake_heads(kinds: list[str], informative: bool, fused_sees_depth: bool = True):
    """Hand-made head outputs: 'good' images score low on both heads; 'geometry' anomalies only on the fused head,
    'colour' ones only on the RGB head, and the entropy difference tells the kinds apart (informative); or the fused
    head finds everything and the entropies are the same for every image (not informative)."""
    from easynet.evaluate import HeadOutputs

    rgb = np.array([{"good": 0.1, "geometry": 0.1, "colour": 0.9 if informative else 0.1}[k] for k in kinds])
    geometry = 0.9 if fused_sees_depth else 0.1
    fused = np.array([{"good": 0.1, "geometry": geometry, "colour": 0.1 if informative else 0.9}[k] for k in kinds])
    diff = np.array([{"good": 0.0, "geometry": 1.0, "colour": -1.0}[k] if informative else 0.0 for k in kinds])
    maps = np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 8, 8).repeat(len(kinds), 0)
    return HeadOutputs(maps, maps, rgb, fused, np.zeros(len(kinds)), diff)


@pytest.mark.parametrize("informative", [True, False])
def test_calibration_reports_the_fused_fraction_and_an_alpha_at_the_end_of_its_range(
    tiny_tree, monkeypatch, informative
):
    from easynet import calibrate as ev
    from easynet.config import MODEL_PRESETS, SynthConfig
    from easynet.model import EasyNet

    validation = registry.open_dataset(tiny_tree, "toy", Split.VALIDATION, image_size=32)
    kinds: list[str] = []

    def fake_run_heads(model, items, device, progress=None):
        for item in items:  # the synthesizer's own kinds: depth-only anomalies are geometry, the others colour
            kinds.append("good" if not item.label else "geometry" if item.kind == "depth" else "colour")
        return _fake_heads(kinds, informative)

    monkeypatch.setattr(ev, "run_heads", fake_run_heads)
    synth = SynthConfig(kind_weights=(0.0, 0.5, 0.5))  # anomalies in RGB only or in depth only
    cal = ev.calibrate(EasyNet(MODEL_PRESETS["lite"].replace(image_size=32)), validation, torch.device("cpu"), synth)
    assert {"geometry", "colour"} <= set(kinds)
    geometry_share = kinds.count("geometry") / len(kinds)
    if informative:  # the gate sends geometry to the fused head, the rest to the RGB head
        assert -1.0 < cal.alpha < 1.0 and cal.metrics["i_auroc_control"] == 1.0
        assert cal.metrics["control_fused_fraction"] == pytest.approx(geometry_share, abs=1e-4)
        assert "alpha_note" not in cal.metrics
        # per kind: only the depth-only anomalies went to the fused head
        assert cal.metrics["control_fused_fraction_by_kind"] == {"good": 0.0, "rgb": 0.0, "depth": 1.0}
        # per head and kind (clean vs that kind): each head finds its own kind and nothing else
        assert cal.metrics["i_auroc_by_kind"] == {
            "rgb": {"rgb": 1.0, "depth": 0.5},
            "fused": {"rgb": 0.5, "depth": 1.0},
        }
        assert "depth_note" not in cal.metrics
    else:  # only "always fused" is perfect: alpha ends below every difference, which the note says
        assert cal.metrics["control_fused_fraction"] == 1.0, (cal.alpha, cal.metrics)
        assert set(cal.metrics["control_fused_fraction_by_kind"].values()) == {1.0}
        assert "end of its search range" in cal.metrics["alpha_note"] and "fused head" in cal.metrics["alpha_note"]


def test_calibration_says_when_the_fused_head_never_learned_depth(tiny_tree, monkeypatch):
    from easynet import calibrate as ev
    from easynet.config import MODEL_PRESETS, SynthConfig
    from easynet.model import EasyNet

    validation = registry.open_dataset(tiny_tree, "toy", Split.VALIDATION, image_size=32)
    kinds: list[str] = []

    def fake_run_heads(model, items, device, progress=None):
        for item in items:
            kinds.append("good" if not item.label else "geometry" if item.kind == "depth" else "colour")
        return _fake_heads(kinds, informative=False, fused_sees_depth=False)  # geometry scores like clean

    monkeypatch.setattr(ev, "run_heads", fake_run_heads)
    synth = SynthConfig(kind_weights=(0.0, 0.5, 0.5))
    cal = ev.calibrate(EasyNet(MODEL_PRESETS["lite"].replace(image_size=32)), validation, torch.device("cpu"), synth)
    assert cal.metrics["i_auroc_by_kind"]["fused"] == {"rgb": 1.0, "depth": 0.5}
    assert "did not learn to use depth" in cal.metrics["depth_note"] and "0.50" in cal.metrics["depth_note"]


def test_i_auroc_table_is_the_rounded_gate_and_defect_columns():
    from easynet.results import EvalReport

    gates = {
        "open": {"i_auroc": 0.91666, "aupro": 0.5, "per_defect_i_auroc": {"dent": 0.83333, "stain": 1.0}},
        "close": {"i_auroc": 0.5, "aupro": 0.4, "per_defect_i_auroc": {"dent": 0.25}},
    }
    table = EvalReport("toy", "c.pt", 4, gates).i_auroc_table()
    assert table == {"open": [0.917, {"dent": 0.833, "stain": 1.0}], "close": [0.5, {"dent": 0.25}]}
