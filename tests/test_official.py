"""The authors' released model: parity with their forward by output name (eager and optimized), and the one
preprocessing path: `evaluate` on an imported official checkpoint feeds the model what `predict` feeds it."""

from __future__ import annotations

import pytest
import torch
from official_reference import NARROW, official_forward, random_official_state

from easynet.backends import make_runner
from easynet.checkpoint import OFFICIAL_INPUT, import_official_state_dict, official_config
from easynet.fastpath import optimize_for_inference
from easynet.model import EasyNet

SIZE = 32
TOL = 1e-4
# our output field -> the authors' output of the same meaning
OUTPUT_NAMES = {
    "rec_rgb": "rec_rgb",
    "rec_depth": "rec_depth",
    "logits_rgb": "out_mask_rgb",
    "logits_fused": "out_mask",
}


def narrow_official_config():
    cfg = official_config()
    return cfg.replace(base_width=cfg.base_width // NARROW, head_width=cfg.head_width // NARROW, image_size=SIZE)


@pytest.fixture(scope="module")
def imported():
    """(official state_dict, our model with it imported) at 1/32 of the released widths."""
    official = random_official_state(seed=3)
    model = EasyNet(narrow_official_config())
    model.load_state_dict(import_official_state_dict(official, narrow_official_config()), strict=True)
    return official, model.eval()


def _inputs(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, SIZE, SIZE, generator=gen), torch.rand(2, 1, SIZE, SIZE, generator=gen)


@pytest.mark.parametrize("path", ["eager", "optimized"])
def test_imported_model_equals_the_authors_forward_by_output_name(imported, path):
    official, model = imported
    rgb, depth = _inputs()
    with torch.inference_mode():
        reference = official_forward(official, rgb, depth.expand(-1, 3, -1, -1))
        net = model if path == "eager" else optimize_for_inference(model)
        ours = net(rgb, depth)._asdict()
    assert reference["out_mask_rgb"].shape == (2, 2, SIZE, SIZE)
    assert (reference["out_mask_rgb"] - reference["out_mask"]).abs().max() > 1e-2  # the heads differ
    for mine, theirs in OUTPUT_NAMES.items():
        torch.testing.assert_close(ours[mine], reference[theirs], atol=TOL, rtol=TOL, msg=f"{mine} vs {theirs}")


@pytest.mark.parametrize("backend", ["eager", "optimized"])
def test_gated_maps_are_the_authors_head_probabilities(imported, backend):
    official, model = imported
    rgb, depth = _inputs(1)
    with torch.inference_mode():
        reference = official_forward(official, rgb, depth.expand(-1, 3, -1, -1))
        runner = make_runner(model, torch.device("cpu"), backend)
        for gate, head in (("close", "out_mask_rgb"), ("open", "out_mask")):
            prob = torch.softmax(reference[head], 1)[:, 1]
            torch.testing.assert_close(runner(rgb, depth, gate, 0.0).anomaly_map, prob, atol=TOL, rtol=TOL)


def test_official_config_records_the_authors_input_and_score_rule():
    cfg = official_config()
    assert {k: getattr(cfg, k) for k in OFFICIAL_INPUT} == OFFICIAL_INPUT
    assert cfg.gate_scoring == "histogram" and cfg.head_out_norm and cfg.depth_channels == 3


def test_evaluate_feeds_an_official_checkpoint_what_predict_feeds_it(tmp_path, monkeypatch):
    """BGR, background zeroed, padded to a square, 8-bit Z min-max depth: the same tensors on both paths."""
    from helpers import make_mvtec3d_tree

    from easynet.checkpoint import Calibration, Checkpoint, save_checkpoint
    from easynet.pipeline import evaluate_category
    from easynet.predict import Predictor

    root = tmp_path / "mvtec"
    make_mvtec3d_tree(root, "toy", size=(48, 64), n_train=1, n_val=1, test={"good": 1, "hole": 2})
    cfg = narrow_official_config()
    state = import_official_state_dict(random_official_state(seed=4), cfg)
    path = save_checkpoint(Checkpoint(cfg, state, Calibration(alpha=0.38)), tmp_path / "official.pt")

    fed: dict[str, list] = {"evaluate": [], "predict": []}
    phase = ["evaluate"]
    forward, forward_gated = EasyNet.forward, EasyNet.forward_gated

    def spy_forward(self, rgb, depth=None, naive=False):
        fed[phase[0]].extend(zip(rgb.clone(), depth.clone()))
        return forward(self, rgb, depth, naive)

    def spy_gated(self, rgb, depth, mode="control", alpha=0.0):
        fed[phase[0]].extend(zip(rgb.clone(), depth.clone()))
        return forward_gated(self, rgb, depth, mode, alpha)

    monkeypatch.setattr(EasyNet, "forward", spy_forward)
    monkeypatch.setattr(EasyNet, "forward_gated", spy_gated)
    report, test, _ = evaluate_category(path, root, "toy", gates=["control"], device="cpu")
    phase[0] = "predict"
    predictor = Predictor.from_checkpoint(path, device="cpu")
    for record in test.records:
        predictor.predict(record.rgb, record.depth, gate="control")
    assert len(fed["evaluate"]) == len(fed["predict"]) == 3 == report.n_images
    for (rgb_e, depth_e), (rgb_p, depth_p) in zip(fed["evaluate"], fed["predict"]):
        assert torch.equal(depth_e.contiguous(), depth_p.contiguous())
        assert torch.equal(rgb_e.contiguous(), rgb_p.contiguous())
    rgb, depth = fed["predict"][0]
    assert rgb.shape == (3, SIZE, SIZE) and 0.95 < depth.max() <= 1.0  # object Z / max Z: a narrow band near 1
    assert (rgb[:, :4] == 0).all()  # padded to a square: 48 rows centred in 100, zero above and below
    source = test[0].rgb  # RGB of a good test image after background zeroing, in RGB order
    torch.testing.assert_close(rgb, torch.from_numpy(source[..., ::-1].copy()).permute(2, 0, 1))  # fed as BGR
    assert (source.sum(-1)[test[0].frame.valid] == 0).mean() > 0.3  # the table's measured points are zeroed


def test_import_official_alpha_given_or_per_class(monkeypatch, tmp_path):
    """--alpha wins over --category's published value; the CLI passes both through."""
    from easynet import checkpoint
    from easynet.cli import main

    saved = []
    monkeypatch.setattr(checkpoint, "_torch_load", lambda path: {"weights": True})
    monkeypatch.setattr(checkpoint, "import_official_state_dict", lambda state: {})
    monkeypatch.setattr(checkpoint, "save_checkpoint", lambda ckpt, out: saved.append(ckpt) or out)
    main(["import-official", "--weights", "w.pth", "--out", str(tmp_path / "a.pt"), "--category", "bagel"])
    main(
        [
            "import-official",
            "--weights",
            "w.pth",
            "--out",
            str(tmp_path / "b.pt"),
            "--category",
            "bagel",
            "--alpha",
            "0.1",
        ]
    )
    main(["import-official", "--weights", "w.pth", "--out", str(tmp_path / "c.pt")])
    assert [c.calibration.alpha for c in saved] == [0.38, 0.1, 0.0]
    assert saved[0].provenance["category"] == "bagel" and saved[0].model_config == official_config()
