"""app/services.py: a tab built alone with stand-in services uses them, not the app's globals."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import gradio as gr
import pytest


class RecordingPredictors:
    """A predictor cache of its own that records every model asked for."""

    def __init__(self) -> None:
        from app import models

        self.cache, self.calls = models.PredictorCache(size=1), []

    def get(self, name: str | None):
        self.calls.append(name)
        return self.cache.get(name)


def test_inspect_tab_built_alone_uses_the_services_it_was_given(assets, monkeypatch):
    from app import inspect_tab, models
    from app.services import Services

    def global_cache(name):
        raise AssertionError("the tab reached the app's global predictor cache")

    def no_jobs():
        raise AssertionError("the Inspect tab has no jobs")

    monkeypatch.setattr(models.predictors, "get", global_cache)
    files = SimpleNamespace(sample_pairs=lambda: [(str(assets.rgb), str(assets.depth))])  # one sample only
    services = Services(predictors=RecordingPredictors(), runner=no_jobs, workspace=files)
    with gr.Blocks() as demo:
        picker = inspect_tab.build(services)
    assert isinstance(picker, gr.Dropdown)
    handlers = {fn.api_name: fn.fn for fn in demo.fns.values()}

    out = handlers["predict"](str(assets.rgb), str(assets.depth), assets.model, "control", 1.0, "anomaly")
    assert out[8]["gate"] == "control" and services.predictors.calls
    assert services.predictors.calls == [assets.model]  # one click looks its model up once
    again = handlers["predict_gate"](out[-1], assets.model, "close", 1.0, "anomaly")
    assert again[8]["used"] == "rgb"
    named = tuple("/".join(p.parts[-2:]) for p in (assets.rgb, assets.depth))
    assert handlers["pick_sample"](0, assets.model)[:2] == named  # file names inside samples/, no server path
    with pytest.raises(gr.Error, match="choose 0 to 0"):  # the injected workspace's one sample
        handlers["pick_sample"](1, assets.model)


def test_handlers_called_directly_use_the_apps_services(assets):
    from app import jobs, models, workspace
    from app.services import bind, default_services

    services = default_services()
    assert services is default_services()  # made once
    assert services.predictors is models.predictors and services.runner is jobs.runner
    assert services.workspace is workspace

    def handler(a: int, b: str = "x", *, services=None) -> tuple:
        return a, b, services

    def stream(a: int, *, services=None):
        yield a, services

    bound = bind(handler, services)
    assert bound(1) == (1, "x", services) and bound.__name__ == "handler"
    assert list(inspect.signature(bound).parameters) == ["a", "b"]  # Gradio sees no `services`
    assert inspect.isgeneratorfunction(bind(stream, services))  # Gradio streams generators
    assert list(bind(stream, services)(2)) == [(2, services)]
