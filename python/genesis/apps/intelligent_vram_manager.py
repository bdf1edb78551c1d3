"""The seed's intelligent VRAM manager API, over libvram.

    from genesis.apps.intelligent_vram_manager import (
        calculate_optimal_blockswap_config, get_vram_manager, model_size_mb, num_layers)

    vram_manager = get_vram_manager(50.0)          # one per process and GPU
    stats = vram_manager.get_memory_stats()        # .vram_used_mb, .dram_total_mb, ...
    vram_manager.attach_model(transformer)         # sizes come from the loaded model
    config = calculate_optimal_blockswap_config(
        model_size_mb=0, num_layers=24, vram_threshold=50.0, auto_hardware_tuning=True)
    config["blocks_to_swap"], config["num_cuda_streams"], config["bandwidth_target"]
    print(config["explanation"])                   # the [VRAM] debug log (Chinese)

All arithmetic is libvram's planner; this module gathers inputs (real model
sizes, the hardware) and shapes the result. Without a GPU, plans are made
for a simulated profile (gpu="RTX 4090" or $GENESIS_SIMULATE_GPU) or, by
default, for the host backend with the real DRAM standing in for VRAM.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any, Callable

from genesis.planning import HardwareSnapshot, SwapOptions, check_option_range, layout_for_model
from genesis.vram import Hardware, Layout, MemoryStats, Plan

logger = logging.getLogger("genesis.vram_manager")
LogFn = Callable[[str], None]

__all__ = [
    "IntelligentVRAMManager", "MemoryStats", "calculate_optimal_blockswap_config",
    "current_memory_stats", "get_vram_manager", "model_size_mb", "num_layers",
]


def model_size_mb(model: Any) -> float:
    """Real size of a loaded model in MiB: sum of numel * element_size over
    its parameters and buffers (bf16 = 2 bytes, fp8 = 1: never "x 4").
    Accepts a pipeline-like wrapper with .model or .transformer."""
    from genesis.modelinfo import model_size_mb as size

    return size(_unwrap(model))


def num_layers(model: Any, block_attr: str | None = None) -> int:
    """Block count from the model's block list (blocks / transformer_blocks /
    layers), not from a guessed config field."""
    from genesis.modelinfo import num_layers as count

    return count(_unwrap(model), block_attr)


def _unwrap(model: Any) -> Any:
    import torch.nn as nn

    if isinstance(model, nn.Module):
        return model
    for attr in ("transformer", "model"):
        inner = getattr(model, attr, None)
        if isinstance(inner, nn.Module):
            return inner
    raise ValueError(f"{type(model).__name__} is not a torch module (nor wraps one in "
                     ".transformer / .model)")


def _check_threshold(value: float, name: str = "vram_threshold_percent") -> float:
    check_option_range(name, value, "vram_threshold_percent")
    return float(value)


class IntelligentVRAMManager:
    """One per process and GPU (get_vram_manager). Holds the threshold, the
    planning target (a real GPU, a simulated profile, or the host backend)
    and optionally the loaded model whose real sizes plans use."""

    def __init__(self, vram_threshold_percent: float = 50.0, device_index: int = 0,
                 gpu: str | None = None, vram_mb: float | None = None,
                 dram_mb: float | None = None) -> None:
        self.vram_threshold_percent = _check_threshold(vram_threshold_percent)
        self.device_index = device_index
        self.gpu = gpu
        self.vram_mb = vram_mb
        self.dram_mb = dram_mb
        self.model: Any = None
        self.last_config: dict[str, Any] | None = None

    def snapshot(self, reuse: HardwareSnapshot | None = None) -> HardwareSnapshot:
        """`reuse` when it was taken for this manager's settings, else a fresh
        probe (live memory numbers) with the simulation applied."""
        return HardwareSnapshot.reuse(reuse, self.gpu, self.vram_mb, self.device_index, self.dram_mb)

    def hardware(self) -> tuple[Hardware, int, bool]:
        """Fresh probe (live memory numbers) with the simulation applied."""
        s = self.snapshot()
        return s.hw, s.index, s.host_mode

    @property
    def host_mode(self) -> bool:
        return self.hardware()[2]

    def get_memory_stats(self, snapshot: HardwareSnapshot | None = None) -> MemoryStats:
        """The seed's fields: vram_used_mb, vram_total_mb, vram_usage_percent,
        dram_used_mb, dram_total_mb, dram_usage_percent (and more).
        snapshot: read from it instead of probing (see snapshot())."""
        s = self.snapshot(snapshot)
        stats = s.hw.memory_stats(s.index)
        extra = {"host_backend": s.host_mode, "vram_threshold_percent": self.vram_threshold_percent,
                 "vram_threshold_mb": stats.vram_total_mb * self.vram_threshold_percent / 100}
        return dataclasses.replace(stats, extra=extra)

    def attach_model(self, model: Any) -> None:
        """Plans use this model's real sizes when called with model_size_mb=0."""
        self.model = model

    def detach_model(self) -> None:
        self.model = None

    def plan(self, layout: Layout, **options: Any) -> Plan:
        hw, index, _ = self.hardware()
        options.setdefault("vram_threshold_percent", self.vram_threshold_percent)
        return Plan.create(layout, hw, gpu_index=index, **options)

    def calculate_optimal_blockswap_config(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return calculate_optimal_blockswap_config(*args, manager=self, **kwargs)


_MANAGERS: dict[int, IntelligentVRAMManager] = {}
_LOCK = threading.Lock()


def _current_device_index() -> int:
    try:
        import torch

        if torch.cuda.is_available():
            return int(torch.cuda.current_device())
    except ImportError:
        pass
    return 0


def get_vram_manager(vram_threshold_percent: float = 50.0, *, device_index: int | None = None,
                     gpu: str | None = None, vram_mb: float | None = None,
                     dram_mb: float | None = None) -> IntelligentVRAMManager:
    """The manager of this process for GPU `device_index` (default: the
    current CUDA device, else 0). A later call with another threshold (or
    simulation: gpu profile, vram_mb, dram_mb) updates it.
    vram_threshold_percent: 10-95."""
    threshold = _check_threshold(vram_threshold_percent)
    index = _current_device_index() if device_index is None else device_index
    with _LOCK:
        m = _MANAGERS.get(index)
        if m is None:
            m = _MANAGERS[index] = IntelligentVRAMManager(threshold, index, gpu, vram_mb, dram_mb)
        else:
            m.vram_threshold_percent = threshold
            if gpu is not None:
                m.gpu = gpu
            if vram_mb is not None:
                m.vram_mb = vram_mb
            if dram_mb is not None:
                m.dram_mb = dram_mb
        return m


def current_memory_stats(device_index: int | None = None) -> MemoryStats:
    """Memory stats through this process's manager for the GPU, without
    changing its settings (a live monitor must not reset the threshold a
    generation set)."""
    index = _current_device_index() if device_index is None else device_index
    with _LOCK:
        manager = _MANAGERS.get(index)
    if manager is None:
        manager = get_vram_manager(device_index=index)
    return manager.get_memory_stats()


def _layout_for(model: Any, size_mb: float, layers: int) -> tuple[Layout, dict[str, Any]]:
    if model is not None:
        from genesis.modelinfo import pack_model

        inner = _unwrap(model)
        packing = pack_model(inner)
        if layers and layers != packing.main_count:
            logger.warning("num_layers=%d ignored: the model has %d blocks", layers,
                           packing.main_count)
        # A file-backed model: the checkpoint's layout, which block swapping
        # will plan with too (one plan for both).
        from genesis.loading import file_source

        source = file_source(inner)
        layout = source.layout if source is not None else layout_for_model(packing, type(inner).__name__)
        return layout, {"model_size_mb": packing.total_bytes / 2**20,
                        "num_layers": packing.main_count, "vace_layers": packing.vace_count,
                        "size_source": "model"}
    if not size_mb or size_mb <= 0:
        raise ValueError(
            f"model_size_mb={size_mb!r}: the model's size is unknown. Pass the loaded model's "
            "real size (model_size_mb(model) from this module) or model=<the loaded module>, "
            "or attach it first with get_vram_manager().attach_model(model)"
        )
    if not isinstance(layers, int) or isinstance(layers, bool) or layers < 1:
        raise ValueError(f"num_layers={layers!r} is out of range: allowed 1 or more "
                         "(num_layers(model) reads it from the loaded model)")
    return Layout.from_size(float(size_mb), layers), {
        "model_size_mb": float(size_mb), "num_layers": layers, "vace_layers": 0,
        "size_source": "model_size_mb"}


def calculate_optimal_blockswap_config(
    model_size_mb: float = 0,
    num_layers: int = 0,
    vram_threshold: float | None = None,
    auto_hardware_tuning: bool = True,
    blocks_to_swap: int = 0,
    num_cuda_streams: int = 8,
    bandwidth_target: float = 0.8,
    enable_cuda_optimization: bool = True,
    enable_dram_optimization: bool = True,
    offload_txt_emb: bool = False,
    offload_img_emb: bool = False,
    vace_blocks_to_swap: int = 0,
    *,
    model: Any = None,
    width: int | None = None,
    height: int | None = None,
    frames: int | None = None,
    text_tokens: int | None = None,
    passes_per_step: int | None = None,
    debug: bool = False,
    log: LogFn | None = None,
    manager: IntelligentVRAMManager | None = None,
    hardware: HardwareSnapshot | None = None,
    **plan_options: Any,
) -> dict[str, Any]:
    """libvram's plan for a model of `model_size_mb` in `num_layers` blocks
    (or, better, for the loaded `model` / the manager's attached model).
    hardware: the generation's snapshot (manager.snapshot()) to plan against
    and keep the plan in, instead of a fresh probe.

    Returns blocks_to_swap, num_cuda_streams, bandwidth_target (what the
    seed's step 2 reads) plus the whole plan: summary (dict), blocks,
    explanation (Chinese debug text), explanation_en, plan_json."""
    if vram_threshold is not None:
        _check_threshold(vram_threshold, "vram_threshold")
    mgr = manager or (get_vram_manager(vram_threshold) if vram_threshold is not None else
                      _MANAGERS.get(_current_device_index()) or get_vram_manager())
    threshold = vram_threshold if vram_threshold is not None else mgr.vram_threshold_percent
    model = model if model is not None else (mgr.model if not model_size_mb else None)
    layout, source = _layout_for(model, model_size_mb, num_layers)
    opts = SwapOptions(
        vram_threshold_percent=threshold, auto_hardware_tuning=auto_hardware_tuning,
        blocks_to_swap=blocks_to_swap, num_cuda_streams=num_cuda_streams,
        bandwidth_target=bandwidth_target, enable_cuda_optimization=enable_cuda_optimization,
        enable_dram_optimization=enable_dram_optimization, offload_txt_emb=offload_txt_emb,
        offload_img_emb=offload_img_emb, vace_blocks_to_swap=vace_blocks_to_swap,
        width=width, height=height, frames=frames, text_tokens=text_tokens,
        passes_per_step=passes_per_step)
    opts.validate(source["num_layers"], source["vace_layers"])
    snap = mgr.snapshot(hardware)
    hw, index, host = snap.hw, snap.index, snap.host_mode
    plan = snap.plan(layout, **{**opts.plan_kwargs(index), **plan_options})
    s = plan.summary()
    explanation = plan.explain("zh")
    config: dict[str, Any] = {
        "blocks_to_swap": s["streamed_count"] - s["vace_streamed_count"],
        "vace_blocks_to_swap": s["vace_streamed_count"],
        # Nothing streamed = no copy stream; the seed's range is 1-16.
        "num_cuda_streams": max(1, s["copy_streams"]),
        "bandwidth_target": s["bandwidth_target"],
        "vram_threshold_percent": threshold,
        "auto_hardware_tuning": not opts.manual,
        "enable_cuda_optimization": s["async_copies"],
        "enable_dram_optimization": s["pinned_memory"],
        "offload_txt_emb": offload_txt_emb,
        "offload_img_emb": offload_img_emb,
        "prefetch_blocks": s["prefetch_depth"],
        "slot_count": s["slot_count"],
        "gpu": hw.gpu(index)["name"],
        "host_backend": host,
        **source,
        "summary": s,
        "blocks": plan.blocks(),
        "explanation": explanation,
        "explanation_en": plan.explain("en"),
        "plan_json": plan.explain("json"),
    }
    mgr.last_config = config
    if debug:
        for line in explanation.rstrip().splitlines():
            (log or print)(line)
    return config
