"""The seed's step 2: turn the UI's intelligent-VRAM settings into block-swap
arguments through the genesis VRAM manager, with the seed's [VRAM] debug log.

No VRAM arithmetic lives here: sizes are measured from the loaded model and
every decision comes from genesis.apps.intelligent_vram_manager (libvram).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from genesis.planning import HardwareSnapshot

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
    # The one probe of this generation, with step 2's plan in it: block
    # swapping and phases plan against it (genesis.wan.swap.place).
    hardware: HardwareSnapshot | None = None


def log_memory_stats(stats: Any, log: LogFn) -> None:
    """The seed's "[VRAM] 当前状态" block."""
    log("[VRAM] 当前状态:")
    log(f"  VRAM: {stats.vram_used_mb:.1f}/{stats.vram_total_mb:.1f}MB ({stats.vram_usage_percent:.1f}%)")
    log(f"  DRAM: {stats.dram_used_mb:.1f}/{stats.dram_total_mb:.1f}MB ({stats.dram_usage_percent:.1f}%)")


def explanation_sections(text: str) -> dict[str, str]:
    """libvram's debug text split into its "[VRAM] <title>:" sections."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("[VRAM] "):
            current = sections.setdefault(line[len("[VRAM] "):].rstrip(":"), [])
        elif line.startswith("✓"):  # the closing line, logged by step 2 itself
            current = None
        if current is not None and line.strip():
            current.append(line)
    return {k: "\n".join(v) for k, v in sections.items()}


def _log_section(text: str, log: LogFn) -> None:
    log("")
    for line in text.splitlines():
        log(line)


def build_block_swap_args(
    settings: VramSettings,
    block_swap_enabled: bool,
    model_size_mb: float,
    num_layers: int,
    log: LogFn = print,
    plan_context: dict[str, Any] | None = None,
    model: Any = None,
) -> SwapSetup:
    """The seed's step 2, with the real model size and block count.

    model: the loaded transformer, so libvram plans its real per-block
    sizes; plan_context: width, height, frames, passes_per_step.
    In manual mode libvram still plans the manual values, which gives the
    debug log its balance analysis and execution plan."""
    if not block_swap_enabled:
        return SwapSetup(args=None, mode="off")
    from genesis.apps.intelligent_vram_manager import calculate_optimal_blockswap_config, get_vram_manager

    s = settings
    debug = s.vram_debug_mode
    try:
        vram_manager = get_vram_manager(s.vram_threshold_percent)
        hardware = vram_manager.snapshot()
        stats = vram_manager.get_memory_stats(hardware)
        if debug:
            log_memory_stats(stats, log)
        common = {**common_plan_flags(s), "vram_threshold_percent": s.vram_threshold_percent}
        manual: dict[str, Any] = {} if s.auto_hardware_tuning else {
            "blocks_to_swap": s.blocks_to_swap,
            "num_cuda_streams": s.num_cuda_streams,
            "bandwidth_target": s.bandwidth_target,
        }
        optimal_config = calculate_optimal_blockswap_config(
            model_size_mb=model_size_mb,
            num_layers=num_layers,
            vram_threshold=s.vram_threshold_percent,
            auto_hardware_tuning=s.auto_hardware_tuning,
            model=model,
            hardware=hardware,
            **manual,
            **common_plan_flags(s),
            **(plan_context or {}),
        )
        sections = explanation_sections(optimal_config.get("explanation", ""))
        if debug and "VRAM-DRAM 平衡分析" in sections:
            _log_section(sections["VRAM-DRAM 平衡分析"], log)
        if s.auto_hardware_tuning:
            # 自动模式: 根据模型大小和硬件自动计算
            # The seed passes the user's VACE count here too; libvram's
            # automatic plan places the VACE blocks with the others, so the
            # args carry the count it chose.
            args = {
                **common,
                "blocks_to_swap": optimal_config["blocks_to_swap"],
                "num_cuda_streams": optimal_config["num_cuda_streams"],
                "bandwidth_target": optimal_config["bandwidth_target"],
                "vace_blocks_to_swap": optimal_config["vace_blocks_to_swap"],
                "auto_hardware_tuning": True,
            }
            mode = "auto"
            if debug:
                log("")
                log("[VRAM] 自动配置:")
                log(f"  分块数: {optimal_config['blocks_to_swap']}")
                # the plan's copy streams: 0 when copies are synchronous
                log(f"  CUDA 流: {optimal_config['summary']['copy_streams']}")
                log(f"  带宽目标: {optimal_config['bandwidth_target']:.0%}")
        else:
            # 手动模式: 使用用户指定的参数
            args = {**manual, "auto_hardware_tuning": False, **common}
            mode = "manual"
            if debug:
                log("")
                log("[VRAM] 手动配置:")
                log(f"  分块数: {s.blocks_to_swap}" + (" (0 = 自动)" if s.blocks_to_swap == 0 else ""))
                log(f"  CUDA 流: {s.num_cuda_streams}")
                log(f"  带宽目标: {s.bandwidth_target:.0%}")
        if debug and "执行计划" in sections:
            _log_section(sections["执行计划"], log)
        if debug:
            log("")
        log("✓ 智能 VRAM 管理已启用")
        config = {k: v for k, v in optimal_config.items() if k not in ("blocks", "explanation", "explanation_en", "plan_json")}
        return SwapSetup(args=args, mode=mode, stats=stats.to_dict(), config=config, hardware=hardware)
    except Exception as e:  # the seed's behaviour: report, then run without swapping
        log(f"[ERROR] 智能 VRAM 管理初始化失败: {e}")
        if debug:
            import traceback

            for line in traceback.format_exc().rstrip().splitlines():
                log(line)
        return SwapSetup(args=None, mode="off", error=str(e))


def common_plan_flags(s: VramSettings) -> dict[str, Any]:
    """The switches every plan takes, auto or manual."""
    return {
        "enable_cuda_optimization": s.enable_cuda_optimization,
        "enable_dram_optimization": s.enable_dram_optimization,
        "offload_txt_emb": s.offload_txt_emb,
        "offload_img_emb": s.offload_img_emb,
        "vace_blocks_to_swap": s.vace_blocks_to_swap,
    }
