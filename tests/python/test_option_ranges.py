"""The plan options' ranges come from libvram (vram_plan_option_range): the
Python checks and the app's sliders use them and state none of their own."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from genesis import vram
from genesis.planning import SwapOptions, check_option_range
from genesis.vram import _ffi

NUMERIC = [n for n, t in _ffi.PlanOptions._fields_ if n != "size" and t in (ctypes.c_int, ctypes.c_double)]
# The seed's parameters, with the ranges the seed gives them.
SEED = {"vram_threshold_percent": (10, 95), "num_cuda_streams": (1, 16),
        "bandwidth_target": (0.1, 1.0), "vace_blocks_to_swap": (0, 15)}


def test_every_numeric_option_has_a_range() -> None:
    for name in NUMERIC:
        r = vram.option_range(name)
        assert r["min"] < r["max"], name
        assert r["integer"] == (dict(_ffi.PlanOptions._fields_)[name] is ctypes.c_int), name
    for name, (lo, hi) in SEED.items():
        r = vram.option_range(name)
        assert (r["min"], r["max"], r["step"], r["min_excluded"]) == pytest.approx((lo, hi, 0, False))


@pytest.mark.parametrize("name", ["offload_txt_emb", "vram_threshold", "size", ""])
def test_no_range_is_not_found(name: str) -> None:
    with pytest.raises(vram.NotFound, match="not a numeric field of vram_plan_options"):
        vram.option_range(name)


@pytest.mark.parametrize("name", list(SEED))
def test_python_checks_take_the_librarys_range(name: str) -> None:
    r = vram.option_range(name)
    kind = int if r["integer"] else float
    lo, hi = kind(r["min"]), kind(r["max"])
    step = kind(1 if r["integer"] else 1e-6)
    check_option_range(name, lo)
    check_option_range(name, hi)
    for bad in (lo - step, hi + step):
        with pytest.raises(ValueError, match=f"{name}=.* is out of range: allowed {lo:g}-{hi:g}$"):
            check_option_range(name, bad)
        # libvram refuses the same value
        with pytest.raises(vram.RangeError, match=name):
            vram.make_options(**{name: bad})


def test_model_bounds_and_whole_numbers() -> None:
    with pytest.raises(ValueError, match=r"blocks_to_swap=7 is out of range: allowed 0-6$"):
        SwapOptions(blocks_to_swap=7).validate(6)
    with pytest.raises(ValueError, match=r"num_cuda_streams=2.5 must be an integer 1-16"):
        SwapOptions(num_cuda_streams=2.5).validate(6)  # type: ignore[arg-type]
    SwapOptions(blocks_to_swap=6, num_cuda_streams=16, vace_blocks_to_swap=2).validate(6, 2)
    # the caller's argument is named, the library's option supplies the range
    with pytest.raises(ValueError, match=r"vram_threshold=9 is out of range: allowed 10-95"):
        check_option_range("vram_threshold", 9, "vram_threshold_percent")


def test_the_apps_sliders_have_the_librarys_ranges(tmp_path: Path) -> None:
    import gradio as gr

    from genesis.apps.wanvideo_gradio_app import RANGES, WanVideoApp, build_ui, most_catalog_blocks

    blocks = build_ui(WanVideoApp(output_dir=str(tmp_path))).blocks.values()
    sliders = {b.elem_id: b for b in blocks if isinstance(b, gr.Slider)}
    numbers = {b.elem_id for b in blocks if isinstance(b, gr.Number)}
    # frames and seed are number boxes, checked by check_ranges alone
    assert set(RANGES) == set(sliders) | {"frames", "seed"} and {"frames", "seed"} <= numbers
    for name, s in sliders.items():
        assert (s.minimum, s.maximum) == RANGES[name], name
    for name in SEED:
        r = vram.option_range(name)
        assert (sliders[name].minimum, sliders[name].maximum) == (r["min"], r["max"]), name
    # Capped where a slider cannot show all of libvram's range.
    for name, most in (("width", 1920), ("height", 1920), ("blocks_to_swap", most_catalog_blocks())):
        r = vram.option_range(name)
        assert (sliders[name].minimum, sliders[name].maximum) == (r["min"], min(r["max"], most)), name
    assert sliders["blocks_to_swap"].maximum == 40  # the seed's 0-40: Wan 14B's blocks
