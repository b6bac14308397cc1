"""Checkpoints: save/reload equality, other-device tensors, clear errors, pickles with code refused, official import."""

import pickle
from pathlib import Path

import pytest
import torch

from easynet.checkpoint import (
    Calibration,
    Checkpoint,
    import_official,
    import_official_state_dict,
    load_checkpoint,
    load_model,
    official_config,
    save_checkpoint,
)
from easynet.config import MODEL_PRESETS
from easynet.errors import CheckpointError
from easynet.model import EasyNet

KEYS_TSV = Path(__file__).resolve().parent / "data" / "official_2layer_Fusion1_keys.tsv"  # from shared/reference
CFG = MODEL_PRESETS["lite"].replace(image_size=32)


def test_save_reload_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = EasyNet(CFG).eval()
    cal = Calibration(alpha=0.25)
    cal.fused.threshold = 0.7
    path = save_checkpoint(Checkpoint(CFG, model.state_dict(), cal, provenance={"category": "x"}), tmp_path / "m.pt")
    loaded, ckpt = load_model(path)
    assert ckpt.calibration.alpha == 0.25 and ckpt.calibration.fused.threshold == 0.7
    assert ckpt.model_config == CFG and ckpt.provenance["category"] == "x"
    x, d = torch.rand(1, 3, 32, 32), torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        a, b = model(x, d), loaded(x, d)
    torch.testing.assert_close(a.logits_fused, b.logits_fused, rtol=0, atol=0)
    assert not list(tmp_path.glob(".*tmp"))  # no temp file left behind


def _retag_as_cuda(path: Path) -> None:
    """Rewrite a torch zip so that every storage says it was saved from cuda:0 (as on a GPU machine)."""
    import io
    import zipfile

    with zipfile.ZipFile(path) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    pkl = next(n for n in entries if n.endswith("data.pkl"))
    retagged = entries[pkl].replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
    assert retagged != entries[pkl]
    entries[pkl] = retagged
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as out:
        for name, data in entries.items():
            out.writestr(name, data)
    path.write_bytes(buf.getvalue())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks loading GPU checkpoints on a CPU-only machine")
def test_checkpoint_saved_on_gpu_loads_on_cpu(tmp_path):
    torch.manual_seed(0)
    model = EasyNet(CFG).eval()
    path = save_checkpoint(Checkpoint(CFG, model.state_dict()), tmp_path / "gpu.pt")
    _retag_as_cuda(path)
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(path, weights_only=True)  # what a naive loader does
    loaded, _ = load_model(path)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits_rgb, model(x).logits_rgb, rtol=0, atol=0)


def test_half_precision_checkpoint_is_smaller_and_close(tmp_path):
    model = EasyNet(CFG).eval()
    full = save_checkpoint(Checkpoint(CFG, model.state_dict()), tmp_path / "full.pt")
    half = save_checkpoint(Checkpoint(CFG, model.state_dict()), tmp_path / "half.pt", half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    m2, _ = load_model(half)
    assert next(m2.parameters()).dtype == torch.float32
    for k, v in model.state_dict().items():  # each float weight is its own float16 rounding, read back as float32
        expected = v.half().float() if v.is_floating_point() else v
        assert torch.equal(m2.state_dict()[k], expected), k
    torch.manual_seed(1)
    x, d = torch.rand(1, 3, 32, 32), torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        a, b = model(x, d), m2.eval()(x, d)
    torch.testing.assert_close(b.logits_fused, a.logits_fused, rtol=1e-2, atol=1e-2)
    assert not torch.equal(b.logits_fused, a.logits_fused)  # it really ran the rounded weights


def test_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(text)
    good = save_checkpoint(Checkpoint(CFG, EasyNet(CFG).state_dict()), tmp_path / "good.pt")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(cut)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not an EasyNet-3D checkpoint"):
        load_checkpoint(plain)


def test_other_architecture_is_refused(tmp_path):
    state = EasyNet(CFG).state_dict()
    ckpt = Checkpoint(CFG.replace(layers=3), state)  # weights of a 2-layer model, header says 3 layers
    path = save_checkpoint(ckpt, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match="do not fit the architecture"):
        load_model(path)


class _Boom:
    """Unpickling this creates `marker`: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_with_code_is_refused_without_running_it(tmp_path):
    pickle.loads(pickle.dumps(_Boom(tmp_path / "control")))
    assert (tmp_path / "control").exists()  # the payload does run when unpickled plainly
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "easynet-3d-checkpoint", "payload": _Boom(marker)}, evil)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(evil)
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_Boom(marker)))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    assert not marker.exists()


def _official_state_from_tsv() -> dict:
    shapes = {}
    for line in KEYS_TSV.read_text().splitlines():
        key, shape, dtype = line.split("\t")
        dims = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
        shapes[key] = (dims, dtype)
    g = torch.Generator().manual_seed(0)
    return {
        k: (torch.randint(0, 100, dims, dtype=torch.int64) if "int64" in dt else torch.randn(dims, generator=g))
        for k, (dims, dt) in shapes.items()
    }


def test_official_import_round_trips(tmp_path):
    official = _official_state_from_tsv()
    assert len(official) == 382
    ours = import_official_state_dict(official)
    model = EasyNet(official_config())
    model.load_state_dict(ours, strict=True)  # every key and shape maps
    # round trip: our names back to theirs give the same tensors
    from easynet.checkpoint import OFFICIAL_PREFIXES

    back = {}
    for key, value in model.state_dict().items():
        theirs = next(t for t, o in OFFICIAL_PREFIXES.items() if key.startswith(o))
        back[theirs + key[len(OFFICIAL_PREFIXES[theirs]) :]] = value
    assert set(back) == set(official)
    assert all(torch.equal(back[k], official[k]) for k in official)
    src = tmp_path / "bagel_best.pth"
    torch.save({f"module.{k}": v for k, v in official.items()}, src)  # DataParallel prefix is accepted
    ckpt = load_checkpoint(import_official(src, tmp_path / "peach.pt", category="peach"))
    assert ckpt.model_config.input_order == "bgr" and ckpt.model_config.gate_scoring == "histogram"
    assert ckpt.model_config.score_rule == "official" and ckpt.calibration.alpha == -0.29  # the authors' alpha
    with pytest.raises(CheckpointError, match="no authors' alpha for 'tablet'"):
        import_official(src, tmp_path / "x.pt", category="tablet")
    broken = dict(official)
    broken.pop("mlp4.6.weight")
    with pytest.raises(CheckpointError, match="missing"):
        import_official_state_dict(broken)
    with pytest.raises(CheckpointError, match="unexpected key"):
        import_official_state_dict({**official, "extra.weight": torch.zeros(1)})
