"""Micro-batching in the Predictor: concurrent requests share one network call and each gets exactly what a
single call gives it."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from easynet.batching import BatchingRunner
from easynet.predict import Predictor


class Slow:
    """Wraps a runner: records every batch size; the first call sleeps so that the others queue behind it."""

    def __init__(self, runner) -> None:
        self.runner, self.backend, self.device, self.sizes = runner, runner.backend, runner.device, []

    def __call__(self, rgb, depth, gate, alpha):
        self.sizes.append(rgb.shape[0])
        if len(self.sizes) == 1:
            time.sleep(0.5)
        return self.runner(rgb, depth, gate, alpha)


def _concurrently(fn, args: list) -> list:
    results, start = [None] * len(args), threading.Barrier(len(args))

    def work(i):
        start.wait()
        time.sleep(0.05 * i)  # the first request leads; the others arrive while it runs
        try:
            results[i] = fn(*args[i])
        except Exception as err:  # handed back to the test
            results[i] = err

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(args))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_concurrent_predictions_are_batched_and_equal_single_calls(tiny_tree, tiny_checkpoint):
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu")
    images = [(tiny_tree / f"toy/test/{d}/rgb/000.png", tiny_tree / f"toy/test/{d}/xyz/000.tiff")
              for d in ("good", "hole")] * 3  # fmt: skip
    gates = ["control", "open", "control", "close", "control", "open"]
    single = [predictor.predict(rgb, xyz, gate=g) for (rgb, xyz), g in zip(images, gates)]
    slow = Slow(predictor.runner.runner)
    predictor.runner = BatchingRunner(slow)
    together = _concurrently(lambda r, x, g: predictor.predict(r, x, gate=g), [(*i, g) for i, g in zip(images, gates)])
    assert slow.sizes[0] == 1 and max(slow.sizes) > 1 and sum(slow.sizes) == len(images)  # really batched
    for one, many in zip(single, together):
        assert not isinstance(many, Exception), many
        assert (many.verdict.label, many.used, many.gate) == (one.verdict.label, one.used, one.gate)
        assert many.score == pytest.approx(one.score, rel=1e-5, abs=1e-7)
        np.testing.assert_allclose(many.anomaly_map, one.anomaly_map, atol=1e-5)
        np.testing.assert_allclose(many.rec_rgb, one.rec_rgb, atol=1e-5)
        assert many.typicality == pytest.approx(one.typicality, rel=1e-4)


def test_an_idle_runner_answers_at_once_and_mixed_inputs_never_share_a_batch():
    calls = []

    class Echo:
        backend, device = "echo", torch.device("cpu")

        def __call__(self, rgb, depth, gate, alpha):
            calls.append((rgb.shape[0], gate, None if depth is None else depth.shape[0]))
            if len(calls) == 1:
                time.sleep(0.3)
            n = rgb.shape[0]
            return _output(rgb.mean((1, 2, 3)), n)

    runner = BatchingRunner(Echo())
    x = [torch.full((1, 3, 8, 8), float(i)) for i in range(6)]
    assert float(runner(x[0], None, "close", 0.0).anomaly_map[0, 0, 0]) == 0.0 and calls == [(1, "close", None)]
    calls.clear()
    args = [(x[1], None, "close", 0.0), (x[2], None, "open", 0.0), (x[3], None, "close", 0.0),
            (x[4], torch.zeros(1, 1, 8, 8), "close", 0.0), (x[5], None, "close", 0.0)]  # fmt: skip
    out = _concurrently(runner, args)
    assert [float(o.anomaly_map[0, 0, 0]) for o in out] == [1.0, 2.0, 3.0, 4.0, 5.0]  # each its own row
    # the first leads alone; then, oldest first, each batch takes what can share it: another gate or an input
    # with depth never joins a batch without
    assert calls == [(1, "close", None), (1, "open", None), (2, "close", None), (1, "close", 1)]
    assert runner._busy is False and runner._pending == []


def test_an_error_reaches_every_request_of_its_batch_and_the_runner_recovers():
    class Failing:
        backend, device = "failing", torch.device("cpu")
        calls = 0

        def __call__(self, rgb, depth, gate, alpha):
            Failing.calls += 1
            if Failing.calls == 1:
                time.sleep(0.3)
                return _output(rgb.mean((1, 2, 3)), rgb.shape[0])
            if Failing.calls == 2:
                raise RuntimeError("out of memory")
            return _output(rgb.mean((1, 2, 3)), rgb.shape[0])

    runner = BatchingRunner(Failing())
    x = [torch.full((1, 3, 8, 8), float(i)) for i in range(3)]
    out = _concurrently(runner, [(xi, None, "close", 0.0) for xi in x])
    assert float(out[0].anomaly_map[0, 0, 0]) == 0.0
    assert all(isinstance(o, RuntimeError) for o in out[1:])  # the second batch held both late requests
    assert float(runner(x[2], None, "close", 0.0).anomaly_map[0, 0, 0]) == 2.0  # and the runner still works


def _output(values: torch.Tensor, n: int):
    from easynet.model import GatedOutput

    maps = values[:, None, None].expand(n, 4, 4).clone()
    nan = torch.full((n,), float("nan"))
    return GatedOutput(maps, torch.zeros(n, dtype=torch.bool), nan, nan, torch.zeros(n, 3, 4, 4), None)
