"""The operating point from judged images: cut-offs against hand-computed cases, and the new checkpoint version."""

from __future__ import annotations

import numpy as np
import pytest

from easynet.errors import InputError
from easynet.operating import confusion, cutoff_for_false_reject, cutoff_for_miss, roc

# ratios = score / threshold; 5 OK parts and 10 NG parts
OK = [0.2, 0.4, 0.6, 0.9, 1.3]
NG = [0.8, 1.1, 1.2, 1.5, 1.6, 1.8, 2.0, 2.2, 2.5, 3.0]
RATIOS, LABELS = np.array(OK + NG), np.array([0] * 5 + [1] * 10)


def test_a_miss_target_keeps_all_but_the_allowed_defects_flagged():
    # 0 %: every NG flagged -> half-way between the lowest NG (0.8) and the next ratio below it (the OK at 0.6);
    # the OK at 0.9 and 1.3 are rejected too
    assert cutoff_for_miss(RATIOS, LABELS, 0.0) == pytest.approx(0.7)
    c = confusion(RATIOS, LABELS, 0.7)
    assert (c.caught, c.missed, c.false_rejects, c.passed) == (10, 0, 2, 3)
    # 10 % of 10: one miss allowed -> below the second lowest NG (1.1), half-way to the next ratio (the OK at 0.9);
    # the NG at 0.8 passes, the OK at 1.3 is still rejected
    assert cutoff_for_miss(RATIOS, LABELS, 0.1) == pytest.approx(1.0)
    c = confusion(RATIOS, LABELS, 1.0)
    assert (c.miss_rate, c.false_rejects) == (0.1, 1)
    assert cutoff_for_miss(RATIOS, LABELS, 0.19) == pytest.approx(1.0)  # floor(1.9) = 1 miss
    # nothing below the lowest NG: just under it
    only_ng_low = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    cut = cutoff_for_miss(only_ng_low, np.array([1, 1, 1, 0, 0, 0]), 0.0)
    assert cut < 1.0 and cut == pytest.approx(1.0)


def test_a_false_reject_target_passes_all_but_the_allowed_good_parts():
    # 0 %: no OK rejected -> half-way between the highest OK (1.3) and the next ratio above it (1.5)
    assert cutoff_for_false_reject(RATIOS, LABELS, 0.0) == pytest.approx(1.4)
    c = confusion(RATIOS, LABELS, 1.4)
    assert (c.false_rejects, c.missed) == (0, 3)  # 0.8, 1.1 and 1.2 pass
    # 20 % of 5: one reject allowed -> above the second highest OK (0.9), below the next ratio (1.1)
    assert cutoff_for_false_reject(RATIOS, LABELS, 0.2) == pytest.approx(1.0)
    assert confusion(RATIOS, LABELS, 1.0).false_reject_rate == 0.2


def test_too_few_judged_images_or_a_bad_target_are_one_sentence():
    with pytest.raises(
        InputError, match="needs at least 3 judged OK and 3 judged NG images of this model; there are 2 OK"
    ):
        cutoff_for_miss(RATIOS[3:], LABELS[3:], 0.01)
    with pytest.raises(InputError, match="may be missed must be from 0 to less than 1"):
        cutoff_for_miss(RATIOS, LABELS, 1.5)


def test_roc_runs_from_nothing_flagged_to_everything():
    false_rejects, catches, cuts = roc(RATIOS, LABELS)
    assert (false_rejects[0], catches[0]) == (0.0, 0.0) and (false_rejects[-1], catches[-1]) == (1.0, 1.0)
    assert np.all(np.diff(cuts) < 0) and np.all(np.diff(catches) >= 0)


def test_the_cli_writes_a_new_version_from_judged_images(tiny_checkpoint, tmp_path, capsys):
    """A judged set (good images of every split, defects in test): the new version's threshold is the old one times
    the cut-off that catches every defect, and nothing else in the checkpoint changed."""
    import torch
    from helpers import make_mvtec3d_tree

    judged = tmp_path / "judged"
    make_mvtec3d_tree(judged, "toy", size=64, n_train=2, n_val=1, test={"good": 2, "hole": 4})

    from easynet.checkpoint import load_checkpoint
    from easynet.cli import main
    from easynet.pipeline import labelled_images
    from easynet.predict import Predictor

    labels = labelled_images(judged, "toy")
    assert sum(label for *_, label in labels) == 4 and len(labels) == 2 + 1 + 6  # train, validation, test
    out = tmp_path / "v2.pt"
    argv = ["calibrate", "--checkpoint", str(tiny_checkpoint), "--labels", str(judged), "--category", "toy"]
    assert main([*argv, "--target-miss", "0", "--out", str(out), "--device", "cpu"]) == 0
    assert "catches 4 of 4 defects" in capsys.readouterr().out
    old, new = load_checkpoint(tiny_checkpoint), load_checkpoint(out)
    cutoff = new.calibration.metrics["operating_point"]["cutoff"]
    before = Predictor.from_checkpoint(tiny_checkpoint, "cpu")
    lowest = min((p := before.predict(rgb, depth)).score / p.threshold for rgb, depth, label in labels if label == 1)
    assert cutoff == pytest.approx(lowest, rel=1e-5)  # the lowest defect's ratio: every defect flagged
    assert new.calibration.rgb.threshold == pytest.approx(old.calibration.rgb.threshold * cutoff)
    assert new.calibration.fused.threshold == pytest.approx(old.calibration.fused.threshold * cutoff)
    assert all(torch.equal(old.state_dict[k], new.state_dict[k]) for k in old.state_dict)  # weights untouched
    assert new.provenance["parent"] == tiny_checkpoint.stem
    with pytest.raises(SystemExit):
        main([*argv, "--target-miss", "0", "--target-false-reject", "0.1", "--out", str(out)])
