"""What the tabs use from the server (loaded models, the fine-tuning job runner, the workspace's files), handed to
each tab's build() so that a tab can be built and tested alone with stand-ins."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from app import jobs, models, workspace

if TYPE_CHECKING:
    from easynet.predict import Predictor


class Predictors(Protocol):
    """Loaded models by registry name (models.PredictorCache: a bounded LRU)."""

    def get(self, name: str | None) -> Predictor: ...


@dataclass(frozen=True)
class Services:
    """The server-side state a tab's handlers act on; `default_services()` is the app's own."""

    predictors: Predictors
    runner: Callable[[], jobs.JobRunner]  # the current workspace's job runner (the workspace may change in tests)
    workspace: Any  # the app.workspace module, or a stand-in with the functions the tabs call


_default: Services | None = None


def default_services() -> Services:
    """The app's services, made on first use: the shared Predictor cache, jobs.runner and app.workspace. Handlers
    called without `services` (tests, scripts) use these."""
    global _default
    if _default is None:
        _default = Services(predictors=models.predictors, runner=jobs.runner, workspace=workspace)
    return _default


def bind(fn: Callable[..., Any], services: Services) -> Callable[..., Any]:
    """`fn` with its keyword `services` filled in, as Gradio must see it: the same name, parameters (less
    `services`) and type hints (gr.Request and gr.EventData are passed by them), and a generator for a generator
    (Gradio streams those)."""
    if inspect.isgeneratorfunction(inspect.unwrap(fn)):

        @functools.wraps(fn)
        def bound(*args: Any, **kwargs: Any) -> Any:
            yield from fn(*args, services=services, **kwargs)

    else:

        @functools.wraps(fn)
        def bound(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, services=services, **kwargs)

    signature = inspect.signature(fn)
    bound.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p for name, p in signature.parameters.items() if name != "services"]
    )
    return bound
