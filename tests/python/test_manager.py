"""The seed's manager API: get_vram_manager, get_memory_stats,
calculate_optimal_blockswap_config, real model sizes."""

from __future__ import annotations

import pytest
import torch

from genesis.apps import intelligent_vram_manager as ivm
from genesis.apps.intelligent_vram_manager import (
    calculate_optimal_blockswap_config,
    get_vram_manager,
    model_size_mb,
    num_layers,
)
from models import tiny

SEED_FIELDS = ("vram_used_mb", "vram_total_mb", "vram_usage_percent", "dram_used_mb",
               "dram_total_mb", "dram_usage_percent")


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ivm, "_MANAGERS", {})
    monkeypatch.delenv("GENESIS_SIMULATE_GPU", raising=False)


def test_one_manager_per_process_and_gpu() -> None:
    a = get_vram_manager(50)
    b = get_vram_manager(40)
    assert a is b and a.vram_threshold_percent == 40
    c = get_vram_manager(50, device_index=1)
    assert c is not a


@pytest.mark.parametrize("bad", [5, 9.9, 95.5, 100, "50", True])
def test_threshold_range(bad: object) -> None:
    with pytest.raises(ValueError, match="vram_threshold_percent=.* allowed 10-95"):
        get_vram_manager(bad)  # type: ignore[arg-type]


def test_memory_stats_host_backend_uses_real_dram() -> None:
    s = get_vram_manager(50).get_memory_stats()
    for k in SEED_FIELDS:
        assert isinstance(getattr(s, k), float)
    assert s.extra["host_backend"] is True  # no GPU here
    assert s.vram_total_mb == pytest.approx(s.dram_total_mb)
    assert s.dram_total_mb > 0 and 0 <= s.dram_usage_percent <= 100
    assert s.extra["vram_threshold_mb"] == pytest.approx(s.vram_total_mb / 2)
    assert s.to_dict()["vram_threshold_percent"] == 50


def test_memory_stats_simulated_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    s = get_vram_manager(50, gpu="RTX 4090").get_memory_stats()
    assert s.gpu_name == "RTX 4090" and s.simulated and s.vram_total_mb > 20000
    monkeypatch.setattr(ivm, "_MANAGERS", {})
    monkeypatch.setenv("GENESIS_SIMULATE_GPU", "RTX 3090")
    assert get_vram_manager(50).get_memory_stats().gpu_name == "RTX 3090"


def test_real_sizes_not_times_four() -> None:
    m32, m16 = tiny(dtype=torch.float32), tiny(dtype=torch.bfloat16)
    expect32 = sum(p.numel() * 4 for p in m32.parameters()) + sum(
        b.numel() * 4 for b in m32.buffers())
    assert model_size_mb(m32) == pytest.approx(expect32 / 2**20)
    assert model_size_mb(m16) == pytest.approx(model_size_mb(m32) / 2)
    assert num_layers(m32) == 6 and num_layers(tiny(n=3, attr="layers")) == 3

    class Pipe:
        transformer = m16

    assert model_size_mb(Pipe()) == model_size_mb(m16)
    with pytest.raises(ValueError, match="not a torch module"):
        model_size_mb(object())


def test_zero_size_without_model_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"model_size_mb=0: .*model_size_mb\(model\)"):
        calculate_optimal_blockswap_config(model_size_mb=0, num_layers=24, vram_threshold=50,
                                           auto_hardware_tuning=True)


def test_config_from_size_on_simulated_gpu() -> None:
    get_vram_manager(50, gpu="RTX 4090", dram_mb=65536)
    c = calculate_optimal_blockswap_config(model_size_mb=28600, num_layers=40,
                                           vram_threshold=50, auto_hardware_tuning=True)
    assert 0 < c["blocks_to_swap"] < 40 and c["size_source"] == "model_size_mb"
    assert 1 <= c["num_cuda_streams"] <= 16 and 0.1 <= c["bandwidth_target"] <= 1.0
    assert c["summary"]["streamed_count"] == c["blocks_to_swap"]
    assert "[VRAM] VRAM-DRAM 平衡分析:" in c["explanation"] and "RTX 4090" in c["explanation"]
    assert "VRAM" in c["explanation_en"] and isinstance(c["plan_json"], dict)
    assert len(c["blocks"]) == 40 and c["gpu"] == "RTX 4090"
    lower = calculate_optimal_blockswap_config(model_size_mb=28600, num_layers=40,
                                               vram_threshold=30, auto_hardware_tuning=True)
    assert lower["blocks_to_swap"] > c["blocks_to_swap"]


def test_config_manual_values_reach_the_plan() -> None:
    get_vram_manager(50, gpu="RTX 4090", dram_mb=65536)
    c = calculate_optimal_blockswap_config(
        model_size_mb=28600, num_layers=40, vram_threshold=50, auto_hardware_tuning=False,
        blocks_to_swap=30, num_cuda_streams=4, bandwidth_target=0.5,
        enable_cuda_optimization=True, enable_dram_optimization=False)
    assert c["blocks_to_swap"] == 30 and c["num_cuda_streams"] == 4
    assert c["bandwidth_target"] == pytest.approx(0.5) and not c["enable_dram_optimization"]
    assert c["summary"]["manual"]


def test_config_from_model_and_video_size(capsys: pytest.CaptureFixture[str]) -> None:
    mgr = get_vram_manager(50, vram_mb=150)
    model = tiny(d=512, n=8)
    mgr.attach_model(model)
    small = calculate_optimal_blockswap_config(0, 24, 20, True, width=16, height=16, frames=1,
                                               debug=True)
    assert small["size_source"] == "model" and small["num_layers"] == 8
    assert small["model_size_mb"] == pytest.approx(model_size_mb(model))
    assert "[VRAM]" in capsys.readouterr().out
    c2 = calculate_optimal_blockswap_config(model=model, vram_threshold=20, width=64, height=64,
                                            frames=5)
    assert c2["summary"]["tokens"] > small["summary"]["tokens"]
    assert c2["summary"]["activation_bytes"] > small["summary"]["activation_bytes"]


@pytest.mark.parametrize("kw, message", [
    (dict(num_cuda_streams=0), "num_cuda_streams=0 is out of range: allowed 1-16"),
    (dict(bandwidth_target=2.0), "bandwidth_target=2.0 is out of range: allowed 0.1-1"),
    (dict(blocks_to_swap=41), "blocks_to_swap=41 is out of range: allowed 0-40"),
    (dict(vram_threshold=99), "vram_threshold=99 is out of range: allowed 10-95"),
    (dict(num_layers=0), "num_layers=0 is out of range"),
])
def test_config_bad_input(kw: dict, message: str) -> None:
    get_vram_manager(50, gpu="RTX 4090", dram_mb=65536)
    args = dict(model_size_mb=28600, num_layers=40, vram_threshold=50, auto_hardware_tuning=False)
    with pytest.raises(ValueError, match=message):
        calculate_optimal_blockswap_config(**{**args, **kw})
