"""Benchmark plumbing (no timing asserts): fields are filled and consistent, GMAC scaling is exact."""

import json
import time

import pytest
import torch
from bench import bench_network, count_gmacs

from easynet.config import MODEL_PRESETS
from easynet.model import EasyNet

SIZE = 32


def lite(size: int = SIZE) -> EasyNet:
    return EasyNet(MODEL_PRESETS["lite"].replace(image_size=size))


@pytest.mark.parametrize("backend", ["naive", "eager", "optimized", "onnx"])
def test_bench_network_fields(backend):
    r = bench_network(
        lite(), torch.device("cpu"), backend=backend, batch_size=2, warmup=1, iterations=2, preprocess=False
    )
    assert r.iterations == 2 and r.batch_size == 2 and r.image_size == SIZE
    assert 0 < r.latency_p50_ms <= r.latency_p95_ms
    assert r.gmac_per_image > 0 and r.peak_rss_mib > 0 and r.cuda_peak_mib is None
    from test_model import hand_count

    assert r.parameters == hand_count(lite().cfg)


def test_throughput_from_a_known_clock(monkeypatch):
    """A clock on which every timed call lasts 50 ms: batch 2 -> 40 images/s, whatever the machine."""
    import itertools
    import types

    import bench

    ticks = itertools.count()
    clock = types.SimpleNamespace(perf_counter=lambda: next(ticks) * 0.050, sleep=time.sleep)
    monkeypatch.setattr(bench, "time", clock)
    r = bench_network(
        lite(), torch.device("cpu"), backend="eager", batch_size=2, warmup=1, iterations=3, preprocess=False
    )
    assert r.latency_p50_ms == 50.0 and r.latency_p95_ms == 50.0
    assert r.images_per_s == 40.0
    assert r.gflops_achieved == pytest.approx(2 * r.gmac_per_image * 2 / 0.050, abs=0.1)  # 2 FLOP per MAC


def test_gmacs_scaled_count_matches_direct_count():
    from torch.utils.flop_counter import FlopCounterMode

    model = lite(128).eval()
    rgb, depth = torch.zeros(1, 3, 128, 128), torch.zeros(1, 1, 128, 128)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(rgb, depth, naive=True)
    direct = counter.get_total_flops() / 2e9
    assert count_gmacs(model, "naive", "open", 128) == pytest.approx(direct, rel=1e-3)  # SE work is not per pixel
    # the gated paths skip work: close < control < naive (both heads up-sampled and concatenated)
    close, control = (count_gmacs(model, "optimized", g, 128) for g in ("close", "control"))
    assert close < control < count_gmacs(model, "naive", "open", 128)


def test_bench_script_writes_its_json(tmp_path):
    import bench

    out = tmp_path / "bench.json"
    argv = ["--preset", "lite", "--image-size", "32", "--iterations", "2", "--warmup", "1", "--gate", "close"]
    assert bench.main([*argv, "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["gate"] == "close" and data["preprocess_ms"] > 0
    assert data["machine"]["cores"] >= 1 and data["machine"]["torch"] == torch.__version__


def test_score_rule_control_is_one_pass_through_both_heads():
    """A `lite` model (score rule): control's work is open's plus the RGB head alone (the RGB stream is shared),
    less than open and close together; the entropy rule's control runs one head per image."""
    model = lite()
    args = dict(batch_size=1, warmup=0, iterations=1, preprocess=False)
    by_gate = {g: bench_network(model, torch.device("cpu"), gate=g, **args).gmac_per_image for g in ("open", "close")}
    control = bench_network(model, torch.device("cpu"), gate="control", **args).gmac_per_image
    assert by_gate["open"] < control < by_gate["open"] + by_gate["close"]
    entropy = EasyNet(model.cfg.replace(gate_rule="entropy"))
    assert bench_network(entropy, torch.device("cpu"), gate="control", **args).gmac_per_image < control
