"""Round trips through the ctypes binding of libvram."""

from __future__ import annotations

import ctypes
import logging

import pytest

from genesis import vram
from genesis.vram import _ffi


def test_version_matches_header() -> None:
    assert vram.version_number() == vram.EXPECTED_VERSION == 100
    assert vram.version() == "0.1.0"


def test_version_mismatch_is_an_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_ffi, "EXPECTED_VERSION", 999)
    with pytest.raises(ImportError, match=r"version 100 .*expects 999"):
        _ffi._load()


def test_missing_library_is_an_import_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("VRAM_LIBRARY", str(tmp_path / "nope.so"))
    with pytest.raises(ImportError, match="VRAM_LIBRARY"):
        _ffi._load()


@pytest.mark.parametrize("cls", [_ffi.PlanOptions, _ffi.PlanSummary, _ffi.EngineStats,
                                 _ffi.GpuInfo, _ffi.LayoutInfo, _ffi.BlockInfo])
def test_structs_are_sized(cls: type) -> None:
    s = cls.new()
    assert s.size == ctypes.sizeof(cls) > 8


def test_plan_options_defaults_round_trip() -> None:
    d = vram.default_options()
    assert d["vram_threshold_percent"] == 50 and d["num_cuda_streams"] == 8
    assert d["bandwidth_target"] == pytest.approx(0.8) and d["auto_hardware_tuning"] is True
    assert d["width"] == 832 and d["frames"] == 81 and d["disk_gbps"] == pytest.approx(2.0)


def test_errors_carry_code_name_and_detail() -> None:
    with pytest.raises(vram.RangeError) as ei:
        vram.make_options(vram_threshold_percent=99)
    e = ei.value
    assert isinstance(e, ValueError) and isinstance(e, vram.VramError)
    assert e.code == -12 and e.name == "VRAM_E_RANGE"
    assert "vram_threshold_percent is 99, allowed 10-95" in e.detail
    with pytest.raises(vram.NotFound):
        vram.find_gpu_profile("no such gpu 123")
    with pytest.raises(vram.NotFound, match="cannot open"):
        vram.Layout.open("/nonexistent/model.safetensors")
    with pytest.raises(TypeError, match="unknown plan option"):
        vram.make_options(thresold=3)


def test_hardware_simulation_and_stats() -> None:
    hw = vram.Hardware.probe(gpus=False)
    assert hw.gpu_count == 0
    hw.simulate_gpu("4090")
    g = hw.gpu(0)
    assert g["simulated"] and g["name"] == "RTX 4090" and g["memory_known"]
    s = hw.memory_stats(0)
    for k in ("vram_used_mb", "vram_total_mb", "vram_usage_percent", "dram_used_mb",
              "dram_total_mb", "dram_usage_percent"):
        assert isinstance(getattr(s, k), float)
    assert s.vram_total_mb == pytest.approx(g["total_bytes"] / 2**20)
    hw.set_vram(8000, 2000, index=0)
    s = hw.memory_stats(0)
    assert s.vram_total_mb == pytest.approx(8000) and s.vram_usage_percent == pytest.approx(25)
    hw.set_dram(16000, 4000)
    s = hw.memory_stats(0)
    assert s.dram_total_mb == pytest.approx(16000) and s.dram_used_mb == pytest.approx(12000)
    j = vram.memory_stats_json(s)
    assert j["vram_total_mb"] == pytest.approx(8000)
    with pytest.raises(vram.RangeError):
        hw.set_vram(100, 200, index=0)
    assert any(p["name"] == "RTX 4090" for p in vram.gpu_profiles())


def test_layouts() -> None:
    cat = vram.catalog()
    assert "wan2.1-t2v-14b" in cat
    L = vram.Layout.from_catalog("wan2.1-t2v-14b", "bf16")
    info = L.info()
    assert info["block_count"] == 40 and info["main_dtype_name"] == "BF16" and info["dim"] == 5120
    b0 = L.block(0)
    assert b0["packed_bytes"] % 256 == 0 and b0["tensor_count"] > 0
    t = L.tensor(b0["first_tensor"])
    assert t["block"] == 0 and t["block_offset"] % 256 == 0 and len(t["shape"]) == t["ndim"]
    assert L.find_tensor(t["name"]) == b0["first_tensor"]
    assert len(L.json()["blocks"]) == 40
    S = vram.Layout.from_size(1000.0, 10)
    assert S.info()["block_count"] == 10
    B = vram.Layout.from_blocks([1000, 2000, 3000], rest_bytes=500, dim=64)
    bi = B.info()
    assert bi["block_count"] == 3 and bi["rest_bytes"] == 500 and bi["dim"] == 64
    assert [b["nbytes"] for b in B.blocks()] == [1000, 2000, 3000]
    with pytest.raises(vram.RangeError):
        vram.Layout.from_blocks([], 0)


def _small_hw() -> vram.Hardware:
    return vram.Hardware.probe(gpus=False).set_vram(8000, 0, index=0)


def test_plan_summary_blocks_and_explain() -> None:
    L = vram.Layout.from_blocks([1 << 20] * 6, 4096, 0)
    p = vram.Plan.create(L, _small_hw(), auto_hardware_tuning=False, blocks_to_swap=3,
                         num_cuda_streams=2, width=16, height=16, frames=1)
    s = p.summary()
    assert s["manual"] and s["streamed_count"] == 3 and s["resident_count"] == 3
    assert s["copy_streams"] == 2
    assert len(p.streamed_blocks()) == 3 and len(p.blocks()) == 6
    assert p.options()["blocks_to_swap"] == 3
    # The struct's last field, read through the binding as the JSON gives it.
    assert s["tight_activations"] is False
    zh, en, js = p.explain("zh"), p.explain("en"), p.explain("json")
    assert js["summary"]["tight_activations"] is False
    assert "[VRAM] VRAM-DRAM 平衡分析:" in zh and "分块数: 3" in zh
    assert "VRAM" in en and isinstance(js, dict)
    with pytest.raises(ValueError):
        p.explain("fr")


def test_does_not_fit_names_numbers() -> None:
    L = vram.Layout.from_blocks([1 << 30] * 4, 0, 0)
    hw = vram.Hardware.probe(gpus=False).set_vram(100, 0, index=0)
    with pytest.raises(vram.DoesNotFit, match="budget"):
        vram.Plan.create(L, hw, auto_hardware_tuning=False, blocks_to_swap=1)


def test_stream_more() -> None:
    L = vram.Layout.from_blocks([1 << 20] * 9, 4096, 0)
    p = vram.Plan.create(L, _small_hw(), auto_hardware_tuning=False, blocks_to_swap=3,
                         width=16, height=16, frames=1)
    more = p.stream_more()
    assert more.summary()["streamed_count"] == 5  # 3 + ceil(9/8)
    assert more.options()["blocks_to_swap"] == 5 and more.layout is L
    last = more.stream_more().stream_more()
    assert last.summary()["streamed_count"] == 9
    with pytest.raises(vram.DoesNotFit, match="all 9 blocks already stream"):
        last.stream_more()


def test_engine_round_trip_host_backend() -> None:
    L = vram.Layout.from_blocks([4096] * 4, 0, 0)
    p = vram.Plan.create(L, _small_hw(), auto_hardware_tuning=False, blocks_to_swap=2,
                         width=16, height=16, frames=1)
    with vram.Engine.create(p, L, backend="host") as e:
        for b in p.streamed_blocks():
            assert e.host_ptr(b) != 0 and e.block_bytes(b) >= 4096
            e.write(b, 0, bytes([b + 1]) * 4096)
        for b in range(4):
            addr = e.acquire(b)
            if b in p.streamed_blocks():
                assert e.read_device(addr, 4096) == bytes([b + 1]) * 4096
            e.release(b)
        e.synchronize()
        st = e.stats()
        assert st["backend_name"] == "host" and st["acquires"] == 4 and st["releases"] == 4
        assert st["bytes_copied"] >= 2 * 4096
        tl = e.timeline()
        assert {ev["kind"] for ev in tl} == {"copy", "compute"}
        assert all(ev["end_ms"] >= ev["start_ms"] for ev in tl)
        e.set_order([3, 2, 1, 0])
        e.reset_stats()
        assert e.stats()["acquires"] == 0


def test_engine_fault_injection_raises() -> None:
    L = vram.Layout.from_blocks([4096] * 4, 0, 0)
    p = vram.Plan.create(L, _small_hw(), auto_hardware_tuning=False, blocks_to_swap=2,
                         width=16, height=16, frames=1)
    with pytest.raises(vram.VramError) as ei:
        vram.Engine.create(p, L, backend="host", fail_alloc_at=1)
    assert ei.value.code < 0


def test_log_callback_routes_to_python_logging(caplog: pytest.LogCaptureFixture) -> None:
    L = vram.Layout.from_blocks([1 << 20] * 4, 0, 0)
    with caplog.at_level(logging.DEBUG, logger="genesis.vram"):
        vram.Plan.create(L, _small_hw(), width=16, height=16, frames=1)
    assert any(r.name == "genesis.vram" and "plan:" in r.getMessage() for r in caplog.records)
