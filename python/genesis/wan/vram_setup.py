"""The seed's step 2: turn the UI's intelligent-VRAM settings into block-swap
arguments through the genesis VRAM manager, with the seed's [VRAM] debug log.

No VRAM arithmetic lives here: sizes are measured from the loaded model and
every decision comes from genesis.apps.intelligent_vram_manager (libvram).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

LogFn = Callable[[str], None]


@dataclass
class VramSettings:
    """The seed's intelligent-VRAM parameters, with its defaults."""

    auto_hardware_tuning: bool = True
    vram_threshold_percent: float = 50.0
    blocks_to_swap: int = 0  # 0 = let the planner choose
    enable_cuda_optimization: bool = True
    enable_dram_optimization: bool = True
    num_cuda_streams: int = 8
    bandwidth_target: float = 0.8
    offload_txt_emb: bool = False
    offload_img_emb: bool = False
    vace_blocks_to_swap: int = 0
    vram_debug_mode: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SwapSetup:
    """What step 2 decided, for the run and its metadata."""

    args: dict[str, Any] | None  # block-swap arguments, None = swap off
    mode: str  # "auto", "manual" or "off"
    stats: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def _stats_dict(stats: Any) -> dict[str, Any]:
    if isinstance(stats, dict):
        return dict(stats)
    if hasattr(stats, "as_dict"):
        return dict(stats.as_dict())
    return {k: getattr(stats, k) for k in dir(stats) if not k.startswith("_") and not callable(getattr(stats, k))}


def log_memory_stats(stats: Any, log: LogFn) -> None:
    """The seed's "[VRAM] 当前状态" block."""
    log("[VRAM] 当前状态:")
    log(f"  VRAM: {stats.vram_used_mb:.1f}/{stats.vram_total_mb:.1f}MB ({stats.vram_usage_percent:.1f}%)")
    log(f"  DRAM: {stats.dram_used_mb:.1f}/{stats.dram_total_mb:.1f}MB ({stats.dram_usage_percent:.1f}%)")


def build_block_swap_args(
    settings: VramSettings,
    block_swap_enabled: bool,
    model_size_mb: float,
    num_layers: int,
    log: LogFn = print,
    plan_context: dict[str, Any] | None = None,
) -> SwapSetup:
    """The seed's step 2, with the real model size and block count.

    plan_context carries what the planner can use beyond the seed's inputs
    (width, height, frames, passes per step, the model itself)."""
    if not block_swap_enabled:
        return SwapSetup(args=None, mode="off")
    from genesis.apps.intelligent_vram_manager import calculate_optimal_blockswap_config, get_vram_manager

    s = settings
    debug = s.vram_debug_mode
    try:
        vram_manager = get_vram_manager(s.vram_threshold_percent)
        stats = vram_manager.get_memory_stats()
        if debug:
            log_memory_stats(stats, log)
        common = {
            "enable_cuda_optimization": s.enable_cuda_optimization,
            "enable_dram_optimization": s.enable_dram_optimization,
            "vram_threshold_percent": s.vram_threshold_percent,
            "offload_txt_emb": s.offload_txt_emb,
            "offload_img_emb": s.offload_img_emb,
            "vace_blocks_to_swap": s.vace_blocks_to_swap,
        }
        config: dict[str, Any] = {}
        if s.auto_hardware_tuning:
            config = calculate_optimal_blockswap_config(
                model_size_mb=model_size_mb,
                num_layers=num_layers,
                vram_threshold=s.vram_threshold_percent,
                auto_hardware_tuning=True,
                debug=debug,
                log=log,
                **(plan_context or {}),
            )
            args = {
                "blocks_to_swap": config["blocks_to_swap"],
                "num_cuda_streams": config["num_cuda_streams"],
                "bandwidth_target": config["bandwidth_target"],
                "auto_hardware_tuning": True,
                **common,
            }
            mode = "auto"
            if debug:
                log("[VRAM] 自动配置:")
                log(f"  分块数: {config['blocks_to_swap']}")
                log(f"  CUDA 流: {config['num_cuda_streams']}")
                log(f"  带宽目标: {config['bandwidth_target']:.0%}")
        else:
            args = {
                "blocks_to_swap": s.blocks_to_swap,
                "num_cuda_streams": s.num_cuda_streams,
                "bandwidth_target": s.bandwidth_target,
                "auto_hardware_tuning": False,
                **common,
            }
            mode = "manual"
            if debug:
                log("[VRAM] 手动配置:")
                log(f"  分块数: {s.blocks_to_swap}" + (" (0 = 自动)" if s.blocks_to_swap == 0 else ""))
                log(f"  CUDA 流: {s.num_cuda_streams}")
                log(f"  带宽目标: {s.bandwidth_target:.0%}")
        log("✓ 智能 VRAM 管理已启用")
        return SwapSetup(args=args, mode=mode, stats=_stats_dict(stats), config=dict(config))
    except Exception as e:  # the seed's behaviour: report, then run without swapping
        log(f"[ERROR] 智能 VRAM 管理初始化失败: {e}")
        if debug:
            import traceback

            for line in traceback.format_exc().rstrip().splitlines():
                log(line)
        return SwapSetup(args=None, mode="off", error=str(e))
