"""Hardware (GPUs + DRAM, probed or simulated) and memory stats."""

from __future__ import annotations

import ctypes
import json
from dataclasses import dataclass, field
from typing import Any

from . import _ffi
from ._handle import Handle
from .errors import check


@dataclass(frozen=True)
class MemoryStats:
    """The seed's fields (vram_used_mb, vram_total_mb, vram_usage_percent,
    dram_used_mb, dram_total_mb, dram_usage_percent) and more."""

    gpu_name: str
    vram_known: bool
    vram_used_mb: float
    vram_total_mb: float
    vram_free_mb: float
    vram_usage_percent: float
    dram_known: bool
    dram_used_mb: float
    dram_total_mb: float
    dram_available_mb: float
    dram_usage_percent: float
    dram_limit_mb: float
    swap_total_mb: float
    swap_free_mb: float
    simulated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "extra"}
        d.update(self.extra)
        return d


def gpu_profiles() -> list[dict[str, Any]]:
    """The built-in GPU profiles (for simulate_gpu)."""
    out = []
    for i in range(_ffi.lib.vram_gpu_profile_count()):
        p = _ffi.GpuProfile.new()
        check(_ffi.lib.vram_gpu_profile_get(i, ctypes.byref(p)), "vram_gpu_profile_get")
        out.append(p.to_dict())
    return out


def find_gpu_profile(name: str) -> dict[str, Any]:
    p = _ffi.GpuProfile.new()
    check(_ffi.lib.vram_gpu_profile_find(name.encode(), ctypes.byref(p)), "vram_gpu_profile_find")
    return p.to_dict()


class Hardware(Handle):
    """A vram_hw: probed GPUs and DRAM, with optional simulation overrides."""

    _free_name = "vram_hw_free"

    def __init__(self, handle: int) -> None:
        super().__init__(handle)

    @classmethod
    def probe(cls, gpus: bool = True) -> Hardware:
        """Probes GPUs (CUDA driver + NVML) and DRAM; gpus=False: DRAM only."""
        h = ctypes.c_void_p()
        fn = _ffi.lib.vram_hw_probe if gpus else _ffi.lib.vram_hw_probe_dram_only
        check(fn(ctypes.byref(h)), "vram_hw_probe")
        return cls(h.value or 0)

    @property
    def gpu_count(self) -> int:
        return check(_ffi.lib.vram_hw_gpu_count(self.handle), "vram_hw_gpu_count")

    def gpu(self, index: int = 0) -> dict[str, Any]:
        g = _ffi.GpuInfo.new()
        check(_ffi.lib.vram_hw_gpu(self.handle, index, ctypes.byref(g)), "vram_hw_gpu")
        return g.to_dict()

    def gpus(self) -> list[dict[str, Any]]:
        return [self.gpu(i) for i in range(self.gpu_count)]

    def dram(self) -> dict[str, Any]:
        d = _ffi.DramInfo.new()
        check(_ffi.lib.vram_hw_dram(self.handle, ctypes.byref(d)), "vram_hw_dram")
        return d.to_dict()

    def simulate_gpu(self, profile: str, index: int | None = None) -> Hardware:
        """Replaces GPU `index` (default: appends one) with a built-in profile."""
        i = self.gpu_count if index is None else index
        check(_ffi.lib.vram_hw_simulate_gpu(self.handle, i, profile.encode()),
              "vram_hw_simulate_gpu")
        return self

    def set_vram(self, total_mb: float, used_mb: float = 0.0, index: int = 0) -> Hardware:
        check(_ffi.lib.vram_hw_set_vram(self.handle, index, total_mb, used_mb), "vram_hw_set_vram")
        return self

    def set_dram(self, total_mb: float, available_mb: float | None = None) -> Hardware:
        avail = total_mb if available_mb is None else available_mb
        check(_ffi.lib.vram_hw_set_dram(self.handle, total_mb, avail), "vram_hw_set_dram")
        return self

    def set_bandwidth(self, pinned_gbps: float, pageable_gbps: float, index: int = 0) -> Hardware:
        check(_ffi.lib.vram_hw_set_bandwidth(self.handle, index, pinned_gbps, pageable_gbps),
              "vram_hw_set_bandwidth")
        return self

    def memory_stats(self, gpu: int = 0) -> MemoryStats:
        s = _ffi.MemoryStatsC.new()
        _ffi.lib.vram_memory_stats_init(ctypes.byref(s))
        check(_ffi.lib.vram_memory_stats_get(self.handle, gpu, ctypes.byref(s)),
              "vram_memory_stats_get")
        d = s.to_dict()
        simulated = bool(self.gpu_count > gpu and self.gpu(gpu)["simulated"])
        return MemoryStats(simulated=simulated, **d)


def memory_stats_json(stats: MemoryStats) -> dict[str, Any]:
    """The library's own JSON of the stats (for round-trip checks)."""
    s = _ffi.MemoryStatsC.new()
    for k in _ffi.MemoryStatsC.field_names():
        v = getattr(stats, k)
        setattr(s, k, v.encode() if isinstance(v, str) else v)
    out = ctypes.c_void_p()
    check(_ffi.lib.vram_memory_stats_json(ctypes.byref(s), ctypes.byref(out)),
          "vram_memory_stats_json")
    return json.loads(_ffi.take_string(out))
