"""app/ui.py: the guarded Gradio cache-writer patch and handing freed memory back to the system."""

from __future__ import annotations

import ctypes
import sys
import types

import pytest

from app import ui


def _module(writer):
    return types.SimpleNamespace(save_pil_to_cache=writer, encode_pil_to_bytes=object(), hash_bytes=object())


def test_cache_writer_patch_installs_on_the_expected_signature():
    def save_pil_to_cache(img, cache_dir, name="image", format="webp"):
        return "gradio's"

    module = _module(save_pil_to_cache)
    assert ui.patch_cache_writer(module) is True
    assert module.save_pil_to_cache is ui._atomic_save_pil_to_cache


def test_cache_writer_patch_leaves_a_changed_gradio_alone(caplog):
    def save_pil_to_cache(img, cache_dir, name="image", format="webp", quality=90):  # a future signature
        return "gradio's"

    module = _module(save_pil_to_cache)
    assert ui.patch_cache_writer(module) is False
    assert module.save_pil_to_cache is save_pil_to_cache
    assert "changed" in caplog.text
    assert ui.patch_cache_writer(types.SimpleNamespace()) is False  # gone altogether


def test_the_installed_gradio_is_patched():
    from gradio import processing_utils

    assert processing_utils.save_pil_to_cache is ui._atomic_save_pil_to_cache


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux") or ui._malloc_trim is None, reason="glibc only")
def test_release_memory_returns_freed_heap_pages():
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    size, count = 64 * 1024, 3200  # 200 MB in blocks under the mmap threshold: they live on the heap
    blocks = []
    for _ in range(count):
        p = libc.malloc(size)
        ctypes.memset(p, 1, size)  # touch every page
        blocks.append(p)
    keep = blocks.pop()  # the last block pins the top of the heap: free() alone cannot shrink it
    for p in blocks:
        libc.free(p)
    before = _rss_mb()
    ui.release_memory()
    after = _rss_mb()
    libc.free(keep)
    assert before - after > 100, (before, after)


def test_network_events_share_one_queue_of_the_configured_size(monkeypatch):
    from app_helpers import load_demo

    monkeypatch.setenv(ui.CONCURRENCY_ENV, "3")
    fns = {fn.api_name: fn for fn in load_demo().fns.values()}
    shared = ["predict", "predict_gate", "predict_sensitivity", "compare", "annotate_prefill", "annotate_refill"]
    for name in shared:
        assert (fns[name].concurrency_id, fns[name].concurrency_limit) == ("inference", 3), name
    for heavy in ("batch", "evaluate_category"):  # whole folders and data sets: one at a time, in their own queue
        assert fns[heavy].concurrency_id != "inference" and fns[heavy].concurrency_limit in (1, "default")


@pytest.mark.parametrize("value", ["0", "many"])
def test_an_impossible_concurrency_is_one_sentence(monkeypatch, value):
    monkeypatch.setenv(ui.CONCURRENCY_ENV, value)
    with pytest.raises(SystemExit, match="^EASYNET_CONCURRENCY must be a whole number of requests, at least 1, got"):
        ui.inference_queue()
