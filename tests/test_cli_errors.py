"""`easynet` never prints a traceback for a user error: one line on stderr, a non-zero exit, no work done."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from easynet.cli import main

REPO_ROOT = Path(__file__).resolve().parents[1]


def _run(capsys, argv: list[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return code, lines[0]


@pytest.fixture()
def train_args(tiny_tree, tmp_path):
    return [
        "train",
        "--data",
        str(tiny_tree),
        "--category",
        "toy",
        "--out",
        str(tmp_path / "m.pt"),
        "--quiet",
        "--device",
        "cpu",
    ]


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--batch-size", "0", "error: --batch-size must be at least 1, got 0"),
        ("--image-size", "7", "error: --image-size must be a multiple of 16 from 16 to 2048, got 7"),
        ("--steps", "-5", "error: --steps must be a number of steps of at least 1, got -5"),
        ("--lr", "nan", "error: --lr must be a positive finite number, got nan"),
        ("--set", "depth_restarts=-1", "error: depth_restarts must be 0 or more, got -1"),
        ("--set", "lr=abc", "error: setting lr takes a number, got 'abc'"),
        (
            "--set",
            "synth.depth_amplitude=0.2",
            "error: setting synth.depth_amplitude takes 2 comma-separated numbers, got '0.2'",
        ),
        ("--set", "layers", "error: --set takes key=value, got 'layers'"),
    ],
)
def test_impossible_train_options_are_refused_before_any_work(capsys, train_args, tmp_path, option, value, message):
    code, line = _run(capsys, [*train_args, option, value])
    assert code != 0 and line == message
    assert not (tmp_path / "m.pt").exists()  # nothing trained, nothing saved


def test_an_unknown_setting_is_refused_with_the_list_of_known_ones(capsys, train_args, tmp_path):
    code, line = _run(capsys, [*train_args, "--set", "fused_rgb_dropout=0.5"])
    assert code == 1 and line.startswith("error: there is no setting 'fused_rgb_dropout'; the settings are: ")
    assert "synth.depth_amplitude" in line and "depth_restarts" in line and "layers" in line
    assert not (tmp_path / "m.pt").exists()


def test_train_help_lists_at_most_twenty_options(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    options = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  -")]
    assert 10 <= len(options) <= 20 and any("--set" in line for line in options)


def test_predict_out_that_is_a_file_and_json_into_an_unwritable_place(capsys, tiny_checkpoint, tiny_tree, tmp_path):
    rgb = str(tiny_tree / "toy/test/hole/rgb/000.png")
    a_file = tmp_path / "taken.txt"
    a_file.write_text("x")
    base = ["predict", "--checkpoint", str(tiny_checkpoint), "--rgb", rgb, "--device", "cpu"]
    code, line = _run(capsys, [*base, "--out", str(a_file)])
    assert code == 1 and line == f"error: --out {a_file} is an existing file; give a folder for the outputs"
    code, line = _run(capsys, [*base, "--json", str(a_file / "result.json")])
    target = a_file / "result.json"
    assert code == 1 and line == f"error: --json {target} cannot be written: {a_file} is a file, not a folder"


def test_export_onnx_into_a_folder(capsys, tiny_checkpoint, tmp_path):
    code, line = _run(capsys, ["export", "--checkpoint", str(tiny_checkpoint), "--onnx", str(tmp_path)])
    assert code == 1 and line.startswith(f"error: --onnx {tmp_path} is a folder; give a file name")


def _edited(tiny_checkpoint, tmp_path, edit) -> str:
    payload = torch.load(tiny_checkpoint, weights_only=True)
    edit(payload)
    path = tmp_path / "edited.pt"
    torch.save(payload, path)
    return str(path)


@pytest.mark.parametrize(
    "what, edit, message",
    [
        (
            "broken calibration",
            lambda p: p["calibration"]["rgb"].update(threshold="abc"),
            "edited.pt has a broken calibration: rgb.threshold is 'abc'",
        ),
        ("calibration of unknown fields", lambda p: p["calibration"].update(bogus=1), "edited.pt has a damaged header"),
        (
            "absurd config",
            lambda p: p["model_config"].update(image_size=10**6),
            "edited.pt has an impossible model config: image_size is 1000000",
        ),
        (
            "nan weights",
            lambda p: next(v for v in p["state_dict"].values() if v.is_floating_point()).fill_(float("nan")),
            "edited.pt holds non-finite weights",
        ),
    ],
)
def test_damaged_checkpoints_give_one_line(capsys, tiny_checkpoint, tiny_tree, tmp_path, what, edit, message):
    path = _edited(tiny_checkpoint, tmp_path, edit)
    for argv in (
        ["info", "--checkpoint", path],
        ["predict", "--checkpoint", path, "--rgb", str(tiny_tree / "toy/test/hole/rgb/000.png")],
    ):
        code, line = _run(capsys, argv)
        assert code == 1 and line.startswith("error: ") and message in line, what


def test_memory_error_is_one_line(capsys, tiny_checkpoint, tiny_tree, monkeypatch):
    from easynet import predict

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(predict.Predictor, "predict", exhausted)
    code, line = _run(
        capsys,
        [
            "predict",
            "--checkpoint",
            str(tiny_checkpoint),
            "--rgb",
            str(tiny_tree / "toy/test/hole/rgb/000.png"),
            "--device",
            "cpu",
        ],
    )
    assert code == 1 and line.startswith("error: `easynet predict` ran out of memory; use a smaller image")


def test_unknown_option_is_one_line(capsys):
    code, line = _run(capsys, ["info", "--preset", "lite", "--no-such-option"])
    assert code == 2 and line.startswith("error: ") and "--no-such-option" in line


def test_the_real_command_line_exits_non_zero_with_one_line(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "easynet",
            "train",
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "m.pt"),
            "--steps",
            "-5",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert out.returncode == 1
    assert out.stderr.strip() == "error: --steps must be a number of steps of at least 1, got -5"
    assert not (tmp_path / "m.pt").exists()


def test_init_with_a_different_architecture_is_refused_in_one_sentence(capsys, train_args, tiny_checkpoint, tmp_path):
    # tiny_checkpoint is lite at image size 32 with 2 layers; asking for 64 and 3 layers must not be replaced
    code, line = _run(
        capsys, [*train_args, "--init", str(tiny_checkpoint), "--image-size", "64", "--set", "layers=3", "--steps", "1"]
    )
    assert code != 0 and line == (
        "error: toy.pt holds a model with layers=2, image_size=32, not the layers=3, "
        "image_size=64 asked for; leave out those model options to train with the "
        "checkpoint's architecture"
    )
    assert not (tmp_path / "m.pt").exists()
