"""Choosing the hardware a plan is made for, and plan options from the
user's arguments (validated with messages that name the argument and its
allowed range)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from .vram import Hardware, Layout, Plan, manual_only_options, option_range
from .vram.plan import make_options

ENV_SIMULATE_GPU = "GENESIS_SIMULATE_GPU"


def planning_hardware(gpu: str | None = None, vram_mb: float | None = None,
                      device_index: int = 0, dram_mb: float | None = None
                      ) -> tuple[Hardware, int, bool]:
    """(hardware, gpu index in it, host_mode).

    gpu (or $GENESIS_SIMULATE_GPU): plan for that built-in profile.
    Else the probed GPU `device_index`; with no GPU, the host backend: a
    simulated device the size of the real DRAM (RAM stands in for VRAM).
    vram_mb overrides the planned GPU's memory size, dram_mb the DRAM's
    (both for simulation)."""
    gpu = gpu or os.environ.get(ENV_SIMULATE_GPU) or None
    host_mode = False
    if gpu:
        hw = Hardware.probe(gpus=False)
        hw.simulate_gpu(gpu, index=0)
        index = 0
    else:
        hw = Hardware.probe()
        if hw.gpu_count > device_index:
            index = device_index
        else:
            dram = hw.dram()
            total_mb = dram["total_bytes"] / 2**20
            used_mb = max(0.0, total_mb - dram["available_bytes"] / 2**20)
            hw.set_vram(total_mb, used_mb, index=hw.gpu_count)
            index = hw.gpu_count - 1
            host_mode = True
    if vram_mb is not None:
        hw.set_vram(float(vram_mb), 0.0, index=index)
    if dram_mb is not None:
        hw.set_dram(float(dram_mb), float(dram_mb))
    return hw, index, host_mode


def _question(gpu: str | None, vram_mb: float | None, device_index: int,
              dram_mb: float | None) -> tuple[Any, ...]:
    return (gpu or os.environ.get(ENV_SIMULATE_GPU) or None, vram_mb, device_index, dram_mb)


class HardwareSnapshot:
    """One planning_hardware probe and the plans made against it: one
    generation takes it before it places anything, and its seed step 2,
    block swapping and phases plan against the same numbers, one plan per
    distinct question. Never kept past the generation: the VRAM in use
    changes between generations.

    hw, index, host_mode: planning_hardware's answer."""

    def __init__(self, gpu: str | None = None, vram_mb: float | None = None,
                 device_index: int = 0, dram_mb: float | None = None) -> None:
        self._question = _question(gpu, vram_mb, device_index, dram_mb)
        self.hw, self.index, self.host_mode = planning_hardware(gpu, vram_mb, device_index, dram_mb)
        self._plans: list[Plan] = []

    @classmethod
    def reuse(cls, snapshot: HardwareSnapshot | None, gpu: str | None = None,
              vram_mb: float | None = None, device_index: int = 0,
              dram_mb: float | None = None) -> HardwareSnapshot:
        """`snapshot` when it was taken for these planning_hardware arguments,
        else a fresh probe."""
        if snapshot is not None and snapshot._question == _question(gpu, vram_mb, device_index, dram_mb):
            return snapshot
        return cls(gpu, vram_mb, device_index, dram_mb)

    def plan(self, layout: Layout, **options: Any) -> Plan:
        """Plan.create(layout, self.hw, **options), or the plan made here
        before for a layout of the same content and the same options as
        libvram reads them (auto mode reads none of manual_only_options)."""
        wanted = make_options(**options).to_dict()
        for plan in self._plans:
            if _same_options(plan.options(), wanted) and (
                    plan.layout is layout or plan.layout.json(True) == layout.json(True)):
                return plan
        plan = Plan.create(layout, self.hw, **options)
        self._plans.append(plan)
        return plan


def _same_options(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a["auto_hardware_tuning"] and b["auto_hardware_tuning"]:
        manual = manual_only_options()
        a, b = ({k: v for k, v in d.items() if k not in manual} for d in (a, b))
    return a == b


def option_bounds(option: str, most: float | None = None) -> tuple[float, float, bool]:
    """(min, max, integer) of libvram's plan option `option`, its max lowered
    to `most` (a model's block count, a slider's width)."""
    r = option_range(option)
    return r["min"], r["max"] if most is None else min(r["max"], most), r["integer"]


def check_option_range(name: str, value: Any, option: str | None = None,
                       most: float | None = None) -> None:
    """ValueError naming the argument `name` and its allowed range: libvram's
    range of the plan option `option` (default: name), its max lowered to
    `most`, and a whole number for an int option. Meant for the seed's
    parameters, which have no step and include their min; libvram checks
    every option in full when it plans."""
    lo, hi, integer = option_bounds(option or name, most)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ValueError(f"{name}={value!r} is out of range: allowed {lo:g}-{hi:g}")
    if integer and int(value) != value:
        raise ValueError(f"{name}={value!r} must be an integer {lo:g}-{hi:g}")


@dataclass
class SwapOptions:
    """The seed's block-swap parameters (and the video size the plan is
    for). None = libvram's default."""

    vram_threshold_percent: float = 50.0
    auto_hardware_tuning: bool | None = None  # None: manual when a block count is given
    blocks_to_swap: int = 0
    num_cuda_streams: int = 8
    bandwidth_target: float = 0.8
    enable_cuda_optimization: bool = True
    enable_dram_optimization: bool = True
    offload_txt_emb: bool = False
    offload_img_emb: bool = False
    vace_blocks_to_swap: int = 0
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    text_tokens: int | None = None
    passes_per_step: int | None = None
    max_pinned_mb: float | None = None
    safety_reserve_percent: float | None = None

    def validate(self, block_count: int, vace_count: int = 0) -> None:
        """The ranges libvram checks: the model's block counts bound the
        manual counts only in manual mode (auto mode does not read them, so a
        stale value from a greyed-out slider must not fail the plan)."""
        manual = self.manual
        check_option_range("vram_threshold_percent", self.vram_threshold_percent)
        check_option_range("blocks_to_swap", self.blocks_to_swap,
                           most=block_count if manual else None)
        check_option_range("num_cuda_streams", self.num_cuda_streams)
        check_option_range("bandwidth_target", self.bandwidth_target)
        check_option_range("vace_blocks_to_swap", self.vace_blocks_to_swap,
                           most=vace_count if manual else None)

    @property
    def manual(self) -> bool:
        if self.auto_hardware_tuning is None:
            return self.blocks_to_swap > 0 or self.vace_blocks_to_swap > 0
        return not self.auto_hardware_tuning

    def plan_kwargs(self, gpu_index: int = 0) -> dict[str, Any]:
        d = asdict(self)
        d["auto_hardware_tuning"] = not self.manual
        d["blocks_to_swap"] = int(self.blocks_to_swap)
        d["num_cuda_streams"] = int(self.num_cuda_streams)
        d["vace_blocks_to_swap"] = int(self.vace_blocks_to_swap)
        d["gpu_index"] = gpu_index
        return {k: v for k, v in d.items() if v is not None}


def layout_for_model(packing: Any, name: str | None = None) -> Layout:
    """libvram's layout of a live model (genesis.modelinfo.ModelPacking),
    named `name` (the model's class) in libvram's explanations.

    Preferred: a safetensors header synthesised from the model (real dtypes
    and shapes, VACE blocks and embedder roles visible to the planner); the
    packing then adopts libvram's 256-aligned offsets. Fallback (a dtype
    safetensors cannot name): vram_layout_from_blocks with the byte sizes."""
    layout = _layout_from_header(packing)
    if layout is None:
        layout = Layout.from_blocks(packing.block_bytes, packing.rest_bytes, packing.dim)
    if name:
        layout.set_name(name)
    return layout


def _layout_from_header(packing: Any) -> Layout | None:
    from .modelinfo import block_tensor_name, safetensors_header

    header = safetensors_header(packing)
    if header is None:
        return None
    layout = Layout.parse_header(header)
    if layout.info()["block_count"] == len(packing.blocks):
        placed = []
        for blk in packing.blocks:
            for slot in blk.slots:
                t = layout.tensor(layout.find_tensor(
                    block_tensor_name(blk, packing.main_count, slot)))
                placed.append((slot, int(t["block_offset"]), t["block"] == blk.index))
        if all(ok for _, _, ok in placed):
            for slot, offset, _ in placed:
                slot.offset = offset
            for blk in packing.blocks:
                blk.packed_bytes = int(layout.block(blk.index)["packed_bytes"])
            return layout
    layout.close()
    return None
