"""自动调优模式工作正常 / 手动模式参数生效 / VRAM 统计正确 / 调试日志输出正常:
the seed's step 2 through genesis (libvram) on the tiny model."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from app_helpers import TINY
from genesis.apps.intelligent_vram_manager import calculate_optimal_blockswap_config, get_vram_manager
from genesis.apps.wanvideo_gradio_app import WanVideoApp, memory_monitor_text, timeline_figure
from genesis.wan.loading import transformer_size


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> WanVideoApp:
    return WanVideoApp(output_dir=str(tmp_path_factory.mktemp("videos")))


def gen(app: WanVideoApp, swap: bool = True, seed: int = 5, **vram):
    return app.generate_video(
        "a paper boat", "", None, TINY["width"], TINY["height"], TINY["frames"], TINY["steps"], 5.0, 5.0, "unipc", seed,
        False, "inductor", swap, **vram,
    )


def meminfo_mb(key: str) -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def test_memory_stats_are_correct() -> None:
    s = get_vram_manager(50).get_memory_stats()
    limit = s.dram_limit_mb
    assert s.dram_known and s.dram_total_mb > 0
    if limit == s.dram_total_mb:  # no cgroup limit: /proc/meminfo
        assert s.dram_total_mb == pytest.approx(meminfo_mb("MemTotal"), rel=1e-3)
        assert s.dram_used_mb == pytest.approx(meminfo_mb("MemTotal") - meminfo_mb("MemAvailable"), abs=500)
    assert s.dram_usage_percent == pytest.approx(100 * s.dram_used_mb / s.dram_total_mb, abs=0.5)
    assert 0 <= s.vram_used_mb <= s.vram_total_mb
    text = memory_monitor_text()
    assert re.search(r"DRAM: [\d.]+/[\d.]+MB \([\d.]+%\)", text), text
    assert "VRAM" in text


def test_monitor_leaves_the_managers_threshold_alone() -> None:
    from genesis.apps.intelligent_vram_manager import get_vram_manager

    manager = get_vram_manager(40.0)
    memory_monitor_text()
    assert manager.vram_threshold_percent == 40.0
    get_vram_manager(50.0)


def test_auto_mode_uses_libvrams_config_with_the_real_model(app: WanVideoApp) -> None:
    # Manual values that auto mode must ignore.
    _, _, meta = gen(app, auto_hardware_tuning=True, blocks_to_swap=3, num_cuda_streams=5, bandwidth_target=0.3,
                     vace_blocks_to_swap=2)
    assert meta["vram_mode"] == "auto" and meta["vram_error"] is None
    transformer = app.generator.model(app.default_model, False).pipe.transformer
    size, blocks = transformer_size(transformer)
    assert meta["transformer_size_mb"] == pytest.approx(size, rel=1e-3) and blocks == 4
    expected = calculate_optimal_blockswap_config(
        model_size_mb=size, num_layers=blocks, vram_threshold=50.0, auto_hardware_tuning=True, model=transformer,
        width=TINY["width"], height=TINY["height"], frames=TINY["frames"], passes_per_step=2)
    args = meta["block_swap_args"]
    # the VACE count too is the plan's (the tiny model has no VACE blocks), not the ignored slider's
    for key in ("blocks_to_swap", "num_cuda_streams", "bandwidth_target", "vace_blocks_to_swap"):
        assert args[key] == expected[key], key
    assert args["vace_blocks_to_swap"] == 0 and args["auto_hardware_tuning"] is True
    assert meta["plan"]["manual"] is False
    assert (args["blocks_to_swap"], args["num_cuda_streams"], args["bandwidth_target"]) != (3, 5, 0.3)
    assert meta["predicted_step_ms"] is not None and meta["measured_step_ms"] > 0
    assert meta["phases"]["history"][:2] == ["encode", "denoise"]


def test_manual_mode_parameters_take_effect(app: WanVideoApp) -> None:
    _, ref, _ = gen(app, swap=False, seed=9)
    _, frames, meta = gen(app, seed=9, auto_hardware_tuning=False, blocks_to_swap=2, num_cuda_streams=3, bandwidth_target=0.5)
    assert meta["vram_mode"] == "manual"
    plan = meta["plan"]
    assert plan["manual"] is True
    assert plan["streamed_count"] == 2 and plan["copy_streams"] == 3 and plan["bandwidth_target"] == 0.5
    assert len(meta["streamed_blocks"]) == 2
    assert meta["bytes_streamed"] > 0 and meta["engine"]["blocks_copied"] > 0
    events = app.last_timeline
    assert {e["kind"] for e in events} == {"copy", "compute"}
    assert {e["block"] for e in events if e["kind"] == "copy"} == set(meta["streamed_blocks"])
    # streaming the weights changes nothing in the result
    for a, b in zip(ref, frames):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    fig = timeline_figure(events)
    assert len(fig.axes[0].patches) == len(events)


def test_manual_zero_blocks_means_automatic_count(app: WanVideoApp) -> None:
    _, _, meta = gen(app, auto_hardware_tuning=False, blocks_to_swap=0, num_cuda_streams=2, bandwidth_target=0.6)
    assert meta["vram_mode"] == "manual" and meta["vram_error"] is None
    assert meta["plan"]["manual"] is True


SEED_LOG = [
    r"^\[VRAM\] 当前状态:$",
    r"^  VRAM: \d+\.\d/\d+\.\dMB \(\d+\.\d%\)$",
    r"^  DRAM: \d+\.\d/\d+\.\dMB \(\d+\.\d%\)$",
    r"^\[VRAM\] VRAM-DRAM 平衡分析:$",
    r"^  VRAM 阈值: \d+\.\dMB \(50%\)$",
    r"^\[VRAM\] 自动配置:$",
    r"^  分块数: \d+$",
    r"^  CUDA 流: \d+$",
    r"^  带宽目标: \d+%$",
    r"^✓ 智能 VRAM 管理已启用$",
]


def assert_in_order(lines: list[str], patterns: list[str]) -> None:
    i = 0
    for pat in patterns:
        while i < len(lines) and not re.match(pat, lines[i]):
            i += 1
        assert i < len(lines), f"{pat!r} not found in order in:\n" + "\n".join(lines)
        i += 1


def test_debug_log_has_the_seeds_format(app: WanVideoApp) -> None:
    gen(app, vram_debug_mode=True)
    assert_in_order(app.last_log, SEED_LOG)
    assert sum(line.startswith("✓ 智能 VRAM 管理已启用") for line in app.last_log) == 1
    assert any(line.startswith("[VRAM] 执行计划") for line in app.last_log)
    assert any(line.startswith("[VRAM] 运行结果") for line in app.last_log)
    gen(app, vram_debug_mode=True, auto_hardware_tuning=False, blocks_to_swap=1, num_cuda_streams=2, bandwidth_target=0.7)
    manual = [p.replace("自动配置", "手动配置") for p in SEED_LOG]
    manual[6:9] = [r"^  分块数: 1$", r"^  CUDA 流: 2$", r"^  带宽目标: 70%$"]
    assert_in_order(app.last_log, manual)


def test_no_debug_log_without_debug_mode(app: WanVideoApp) -> None:
    gen(app, vram_debug_mode=False)
    assert app.last_log == ["✓ 智能 VRAM 管理已启用"]
    gen(app, swap=False, vram_debug_mode=True)
    assert app.last_log == []


def test_step2_failure_is_reported_and_the_run_goes_on(app: WanVideoApp) -> None:
    # manual mode, where the model's counts bound them: the tiny model has no VACE blocks
    video, _, meta = gen(app, auto_hardware_tuning=False, vace_blocks_to_swap=3, vram_debug_mode=True)
    assert Path(video).is_file()
    assert meta["vram_mode"] == "off" and "vace_blocks_to_swap" in meta["vram_error"]
    assert any(line.startswith("[ERROR] 智能 VRAM 管理初始化失败") for line in app.last_log)


def test_auto_log_shows_the_plans_copy_streams(app: WanVideoApp) -> None:
    """With CUDA optimization off the copies are synchronous: the automatic
    configuration's log says 0 streams, as libvram's explanation does."""
    gen(app, auto_hardware_tuning=True, enable_cuda_optimization=False, vram_debug_mode=True,
        vram_threshold_percent=10)
    log = "\n".join(app.last_log)
    auto = log[log.index("[VRAM] 自动配置:"):]
    assert re.search(r"CUDA 流: 0\n", auto), auto[:200]
