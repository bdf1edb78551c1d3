"""One generation probes the hardware once and plans once per distinct
question: the seed's step 2 takes the snapshot, block swapping reuses its
plan, the text encoder and phases plan their own questions against the same
snapshot, and the adaptive re-plan after the first forward is the only
other plan.

Before: 4 probes (step 2's memory stats, step 2's plan, BlockSwap, Phases)
and 4 plans (step 2, BlockSwap again, Phases, the re-plan)."""

from __future__ import annotations

import copy
import os
from typing import Any, Iterator
from unittest import mock

import pytest
import torch

from genesis.apps import intelligent_vram_manager as ivm
from genesis.blockswap import apply_block_swap
from genesis.modelinfo import pack_model
from genesis.planning import HardwareSnapshot, SwapOptions, layout_for_model
from genesis.vram import Hardware, Layout, Plan
from models import tiny

TINY = dict(width=64, height=64, frames=5, steps=2)
VIDEO = dict(width=16, height=16, frames=1)


@pytest.fixture(scope="module")
def generator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from genesis.wan.loading import ModelSpec
    from genesis.wan.runner import WanGenerator

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENESIS_CACHE_DIR", os.environ.get("GENESIS_CACHE_DIR")
                  or str(tmp_path_factory.mktemp("genesis-cache")))
        gen = WanGenerator(output_dir=tmp_path_factory.mktemp("videos"), device="cpu")
        gen.model(ModelSpec("tiny"), want_i2v=False)  # loaded outside the counted run
        yield gen


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ivm, "_MANAGERS", {})
    monkeypatch.delenv("GENESIS_SIMULATE_GPU", raising=False)


def counted() -> tuple[Any, Any]:
    return (mock.patch.object(Hardware, "probe", wraps=Hardware.probe),
            mock.patch.object(Plan, "create", wraps=Plan.create))


@pytest.mark.parametrize("case", ["auto", "manual", "auto-simulated-gpu", "debug"])
def test_one_generation_probes_once(generator: Any, case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from genesis.wan.runner import GenerationRequest
    from genesis.wan.vram_setup import VramSettings

    if case == "auto-simulated-gpu":
        monkeypatch.setenv("GENESIS_SIMULATE_GPU", "RTX 4090")
    manual = case == "manual"
    req = GenerationRequest(prompt="a paper boat", block_swap_enabled=True, **TINY,
                            vram=VramSettings(auto_hardware_tuning=not manual, blocks_to_swap=2 if manual else 0,
                                              num_cuda_streams=2, vram_debug_mode=case == "debug"))
    probe, create = counted()
    with probe as probes, create as plans:
        meta = generator.generate(req, log=lambda _line: None).metadata
    assert probes.call_count == 1
    # Step 2's plan (BlockSwap reuses it), the text encoder's (does it fit
    # alone?), the phases' plan, the re-plan.
    assert plans.call_count == 4
    assert meta["swap_active"] and meta["vram_error"] is None
    assert [r["reason"] for r in meta["replans"]] == ["measured_block_ms"]
    assert meta["plan"]["streamed_count"] == meta["block_swap_args"]["blocks_to_swap"]
    assert meta["memory_stats_before"]["dram_total_mb"] > 0 and "phases" in meta


def test_two_generations_probe_twice(generator: Any) -> None:
    """The snapshot lives for one generation: VRAM in use changes between them."""
    from genesis.wan.runner import GenerationRequest

    req = GenerationRequest(prompt="a paper boat", block_swap_enabled=True, **TINY)
    probe, create = counted()
    with probe as probes, create:
        generator.generate(req, log=lambda _line: None)
        generator.generate(req, log=lambda _line: None)
    assert probes.call_count == 2


def test_swap_off_probes_nothing(generator: Any) -> None:
    from genesis.wan.runner import GenerationRequest

    probe, create = counted()
    with probe as probes, create as plans:
        generator.generate(GenerationRequest(prompt="a paper boat", **TINY), log=lambda _line: None)
    assert probes.call_count == 0 and plans.call_count == 0


def test_snapshot_plans_each_question_once() -> None:
    probe, create = counted()
    with probe as probes, create as plans:
        snap = HardwareSnapshot(vram_mb=400)
        first = snap.plan(Layout.from_size(1000, 10), **VIDEO)
        s = first.summary()
        assert s["streamed_count"] > 0
        # What step 2 hands block swapping in auto mode: the plan's own
        # numbers as the manual values, which auto mode does not read.
        auto = dict(VIDEO, blocks_to_swap=s["streamed_count"], num_cuda_streams=max(1, s["copy_streams"]),
                    bandwidth_target=s["bandwidth_target"], vace_blocks_to_swap=1)
        assert snap.plan(Layout.from_size(1000, 10), **auto) is first
        assert plans.call_count == 1
        manual = dict(auto, vace_blocks_to_swap=0, auto_hardware_tuning=False)  # no VACE here
        assert snap.plan(Layout.from_size(1000, 10), **manual) is not first
        assert snap.plan(Layout.from_size(1000, 12), **VIDEO) is not first
        assert snap.plan(Layout.from_size(1000, 10), **dict(VIDEO, vram_threshold_percent=40)) is not first
        assert plans.call_count == 4
        assert HardwareSnapshot.reuse(snap, vram_mb=400) is snap
        assert probes.call_count == 1
        assert HardwareSnapshot.reuse(snap, vram_mb=800) is not snap
        assert HardwareSnapshot.reuse(snap, vram_mb=400, device_index=1) is not snap
        assert probes.call_count == 3


def test_oom_after_a_shared_auto_plan_keeps_the_swaps_manual_values() -> None:
    """The shared step-2 plan stores the seed's defaults as manual values;
    stream_more's manual fallback goes on with what the auto plan chose (the
    swap's own manual values here), as when BlockSwap planned by itself. (Not
    adaptive: the re-plan after the first forward would hide the plan the
    retry made.)"""
    model = tiny(d=512, n=8)
    ref = copy.deepcopy(model)
    x = torch.randn(3, 512)
    snap = HardwareSnapshot(vram_mb=150)  # threshold 10% (the floor): 6 of 8 stream
    step2 = snap.plan(layout_for_model(pack_model(model), type(model).__name__),
                      **SwapOptions(vram_threshold_percent=10, **VIDEO).plan_kwargs(snap.index))
    s = step2.summary()
    streams, share = max(1, s["copy_streams"]), s["bandwidth_target"]
    assert step2.options()["num_cuda_streams"] != streams
    swap = apply_block_swap(model, vram_threshold_percent=10, auto_hardware_tuning=True,
                            blocks_to_swap=s["streamed_count"], num_cuda_streams=streams,
                            bandwidth_target=share, vram_mb=150, hardware=snap, adaptive=False, **VIDEO)
    assert swap.plan is step2
    block, inner = model.blocks[7], type(model.blocks[7]).forward
    fail = {"left": 1}

    def forward(self: Any, h: torch.Tensor) -> torch.Tensor:
        if fail["left"]:
            fail["left"] -= 1
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return inner(self, h)

    block.forward = forward.__get__(block)
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        del block.forward
    with torch.no_grad():
        assert torch.equal(out, ref(x))
    assert swap.stats()["oom_retries"] == 1
    o = swap.plan.options()
    assert not o["auto_hardware_tuning"] and o["blocks_to_swap"] == 7
    assert (o["num_cuda_streams"], o["bandwidth_target"]) == (streams, share)
    swap.remove()
