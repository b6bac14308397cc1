"""The product's shape (tools/check_shape.py) holds, and its checks do fire on a tree that breaks them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def shape():
    spec = importlib.util.spec_from_file_location("check_shape", REPO / "tools" / "check_shape.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_product_keeps_its_shape(shape):
    assert shape.check() == {name: [] for name in shape.RULES}


def test_the_checks_fire_on_a_tree_that_breaks_them(shape, tmp_path, monkeypatch):
    (tmp_path / "easynet").mkdir()
    (tmp_path / "easynet" / "__init__.py").write_text("")
    (tmp_path / "easynet" / "a.py").write_text("from easynet import b\n")
    (tmp_path / "easynet" / "b.py").write_text("from . import c\n")
    (tmp_path / "easynet" / "c.py").write_text("import easynet.a\n\ndef later():\n    from easynet import b\n")
    (tmp_path / "easynet" / "d.py").write_text("def f():\n    depth_amplitude_mm = 1\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "tab.py").write_text("def f():\n    from easynet.checkpoint import load_checkpoint\n")
    (tmp_path / "app" / "one.py").write_text("from app import two\n")
    (tmp_path / "app" / "two.py").write_text("def later():\n    from app import one\n")  # lazy still counts
    (tmp_path / "app.py").write_text("import torch.nn\n")
    (tmp_path / "README.md").write_text("line\n" * 301)
    (tmp_path / "benchmarks" / "old").mkdir(parents=True)
    (tmp_path / "benchmarks" / "NOTES.md").write_text("Tried, not adopted.\n")
    monkeypatch.setattr(shape, "REPO", tmp_path)
    assert shape.import_cycles() == [
        "import cycle: easynet.a -> easynet.b -> easynet.c -> easynet.a",
        "import cycle: app.one -> app.two -> app.one",
    ]
    assert shape.ui_imports() == [
        "app.py imports torch.nn", "app/tab.py imports easynet.checkpoint",
        "app/tab.py imports easynet.checkpoint.load_checkpoint",
    ]  # fmt: skip
    assert shape.retired_names() == ["easynet/d.py mentions 'depth_amplitude_mm'"]
    assert shape.readme_lines() == ["README.md has 301 lines, more than 300"]
    assert len(shape.benchmarks_are_product()) == 2
