"""ctypes mirror of include/vram.h: structs, prototypes, library loading.

Every struct below copies the header field for field; each begins with a
`size` field that `new()` sets, so the library accepts it. Keep this file in
step with the header (EXPECTED_VERSION is checked at import).
"""

from __future__ import annotations

import ctypes
import os
from ctypes import (
    POINTER,
    Structure,
    c_bool,
    c_char,
    c_char_p,
    c_double,
    c_int,
    c_int64,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import Any, TypeVar

# VRAM_VERSION_NUMBER of the header this binding mirrors.
EXPECTED_VERSION = 100

NAME_MAX = 96

# Status codes (VRAM_STATUS_LIST).
OK = 0
E_INVALID = -1
E_NOMEM = -2
E_IO = -3
E_FORMAT = -4
E_NOT_FOUND = -5
E_NO_DEVICE = -6
E_DRIVER = -7
E_DEVICE_NOMEM = -8
E_DOES_NOT_FIT = -9
E_STATE = -10
E_UNSUPPORTED = -11
E_RANGE = -12

STATUS_NAMES = {
    OK: "VRAM_OK",
    E_INVALID: "VRAM_E_INVALID",
    E_NOMEM: "VRAM_E_NOMEM",
    E_IO: "VRAM_E_IO",
    E_FORMAT: "VRAM_E_FORMAT",
    E_NOT_FOUND: "VRAM_E_NOT_FOUND",
    E_NO_DEVICE: "VRAM_E_NO_DEVICE",
    E_DRIVER: "VRAM_E_DRIVER",
    E_DEVICE_NOMEM: "VRAM_E_DEVICE_NOMEM",
    E_DOES_NOT_FIT: "VRAM_E_DOES_NOT_FIT",
    E_STATE: "VRAM_E_STATE",
    E_UNSUPPORTED: "VRAM_E_UNSUPPORTED",
    E_RANGE: "VRAM_E_RANGE",
}

LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG = 0, 1, 2, 3

DTYPE_NAMES = (
    "UNKNOWN", "BOOL", "U8", "I8", "F8_E4M3", "F8_E5M2", "I16", "U16", "F16", "BF16",
    "I32", "U32", "F32", "I64", "U64", "F64",
)

GROUP_BLOCKS, GROUP_VACE, GROUP_COUNT = 0, 1, 2
ROLE_BLOCK, ROLE_OTHER, ROLE_TEXT_EMB, ROLE_IMAGE_EMB = 0, 1, 2, 3
PLACE_RESIDENT, PLACE_STREAMED = 0, 1
TIER_NAMES = ("device", "pinned", "pageable", "disk")
EXPLAIN_ZH, EXPLAIN_EN, EXPLAIN_JSON = 0, 1, 2
BACKEND_AUTO, BACKEND_HOST, BACKEND_CUDA = 0, 1, 2
BACKEND_NAMES = ("auto", "host", "cuda")
EVENT_COPY, EVENT_COMPUTE = 0, 1


class _Sized(Structure):
    """A versioned struct: `new()` zero-fills it and sets `size`."""

    @classmethod
    def new(cls: type[_S]) -> _S:
        s = cls()
        s.size = ctypes.sizeof(cls)
        return s

    @classmethod
    def field_names(cls) -> list[str]:
        """The fields after `size`, in order."""
        return [f[0] for f in cls._fields_ if f[0] != "size"]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.field_names():
            value = getattr(self, name)
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            elif hasattr(value, "_length_") and not isinstance(value, (bytes, str)):
                value = list(value)
            out[name] = value
        return out


_S = TypeVar("_S", bound=_Sized)


class GpuProfile(_Sized):
    _fields_ = [
        ("size", c_uint32),
        ("name", c_char * NAME_MAX),
        ("aliases", c_char * NAME_MAX),
        ("total_bytes", c_uint64),
        ("sm_count", c_int),
        ("cc_major", c_int),
        ("cc_minor", c_int),
        ("pcie_gen", c_int),
        ("pcie_width", c_int),
        ("bf16_tflops", c_double),
        ("h2d_pinned_gbps", c_double),
        ("h2d_pageable_gbps", c_double),
    ]


class GpuInfo(_Sized):
    _fields_ = [
        ("size", c_uint32),
        ("index", c_int),
        ("simulated", c_bool),
        ("name", c_char * NAME_MAX),
        ("name_known", c_bool),
        ("uuid", c_char * 64),
        ("uuid_known", c_bool),
        ("total_bytes", c_uint64),
        ("used_bytes", c_uint64),
        ("free_bytes", c_uint64),
        ("memory_known", c_bool),
        ("sm_count", c_int),
        ("sm_count_known", c_bool),
        ("cc_major", c_int),
        ("cc_minor", c_int),
        ("cc_known", c_bool),
        ("pcie_gen_current", c_int),
        ("pcie_width_current", c_int),
        ("pcie_gen_max", c_int),
        ("pcie_width_max", c_int),
        ("pcie_known", c_bool),
        ("bf16_tflops", c_double),
        ("tflops_known", c_bool),
        ("h2d_pinned_gbps", c_double),
        ("h2d_pageable_gbps", c_double),
        ("bandwidth_known", c_bool),
        ("bandwidth_measured", c_bool),
        ("profile", c_char * NAME_MAX),
    ]


class DramInfo(_Sized):
    _fields_ = [
        ("size", c_uint32),
        ("total_bytes", c_uint64),
        ("available_bytes", c_uint64),
        ("meminfo_known", c_bool),
        ("cgroup_limit_bytes", c_uint64),
        ("cgroup_usage_bytes", c_uint64),
        ("cgroup_known", c_bool),
        ("swap_total_bytes", c_uint64),
        ("swap_free_bytes", c_uint64),
        ("swap_known", c_bool),
        ("memlock_limit_bytes", c_uint64),
        ("memlock_known", c_bool),
        ("simulated", c_bool),
    ]


class MemoryStatsC(_Sized):
    _fields_ = [
        ("size", c_uint32),
        ("gpu_name", c_char * NAME_MAX),
        ("vram_known", c_bool),
        ("vram_used_mb", c_double),
        ("vram_total_mb", c_double),
        ("vram_free_mb", c_double),
        ("vram_usage_percent", c_double),
        ("dram_known", c_bool),
        ("dram_used_mb", c_double),
        ("dram_total_mb", c_double),
        ("dram_available_mb", c_double),
        ("dram_usage_percent", c_double),
        ("dram_limit_mb", c_double),
        ("swap_total_mb", c_double),
        ("swap_free_mb", c_double),
    ]


class TensorInfo(_Sized):
    _fields_ = [
        ("size", c_uint32),
        ("name", c_char_p),
        ("dtype", c_int),
        ("ndim", c_int),
        ("shape", c_int64 * 8),
        ("nbytes", c_uint64),
        ("file_index", c_int),
        ("file_offset", c_uint64),
        ("block", c_int),
        ("role", c_int),
        ("block_offset", c_uint64),
    ]


class BlockInfo(_Sized):
    _fields_ = [
        ("size", c_uint32),
        ("index", c_int),
        ("group", c_int),
        ("group_index", c_int),
        ("tensor_count", c_int),
        ("params", c_uint64),
        ("nbytes", c_uint64),
        ("packed_bytes", c_uint64),
        ("linear_params", c_uint64),
        ("first_tensor", c_int),
    ]


class LayoutInfo(_Sized):
    _fields_ = [
        ("size", c_uint32),
        ("name", c_char * NAME_MAX),
        ("naming", c_char * 32),
        ("block_count", c_int),
        ("group_block_count", c_int * GROUP_COUNT),
        ("tensor_count", c_int),
        ("file_count", c_int),
        ("total_params", c_uint64),
        ("total_bytes", c_uint64),
        ("block_bytes", c_uint64),
        ("rest_bytes", c_uint64),
        ("text_emb_bytes", c_uint64),
        ("image_emb_bytes", c_uint64),
        ("main_dtype", c_int),
        ("dim", c_int),
        ("ffn_dim", c_int),
        ("heads", c_int),
        ("expert_count", c_int),
    ]


class PlanOptions(_Sized):
    _fields_ = [
        ("size", c_uint32),
        ("gpu_index", c_int),
        ("vram_threshold_percent", c_double),
        ("safety_reserve_percent", c_double),
        ("dram_usable_fraction", c_double),
        ("width", c_int),
        ("height", c_int),
        ("frames", c_int),
        ("text_tokens", c_int),
        ("passes_per_step", c_int),
        ("auto_hardware_tuning", c_bool),
        ("blocks_to_swap", c_int),
        ("num_cuda_streams", c_int),
        ("bandwidth_target", c_double),
        ("vace_blocks_to_swap", c_int),
        ("offload_txt_emb", c_bool),
        ("offload_img_emb", c_bool),
        ("enable_cuda_optimization", c_bool),
        ("enable_dram_optimization", c_bool),
        ("measured_h2d_gbps", c_double),
        ("measured_block_ms", c_double),
        ("max_pinned_mb", c_double),
        ("disk_gbps", c_double),
    ]


class OptionRange(_Sized):
    _fields_ = [
        ("size", c_uint32),
        ("min", c_double),
        ("max", c_double),
        ("min_excluded", c_bool),
        ("integer", c_bool),
        ("step", c_int),
        ("manual_only", c_bool),
        ("zero_unset", c_bool),
    ]


class PlanSummary(_Sized):
    _fields_ = [
        ("size", c_uint32),
        ("manual", c_bool),
        ("fits", c_bool),
        ("block_count", c_int),
        ("resident_count", c_int),
        ("streamed_count", c_int),
        ("vace_streamed_count", c_int),
        ("slot_count", c_int),
        ("prefetch_depth", c_int),
        ("copy_streams", c_int),
        ("bandwidth_target", c_double),
        ("async_copies", c_bool),
        ("pinned_memory", c_bool),
        ("vram_total_bytes", c_uint64),
        ("vram_used_bytes", c_uint64),
        ("budget_bytes", c_uint64),
        ("threshold_bytes", c_uint64),
        ("resident_bytes", c_uint64),
        ("rest_bytes", c_uint64),
        ("offloaded_rest_bytes", c_uint64),
        ("slot_bytes", c_uint64),
        ("activation_bytes", c_uint64),
        ("predicted_peak_bytes", c_uint64),
        ("streamed_bytes", c_uint64),
        ("pinned_budget_bytes", c_uint64),
        ("pinned_bytes", c_uint64),
        ("pageable_bytes", c_uint64),
        ("disk_bytes", c_uint64),
        ("dram_usable_bytes", c_uint64),
        ("h2d_gbps", c_double),
        ("h2d_measured", c_bool),
        ("block_compute_ms", c_double),
        ("compute_measured", c_bool),
        ("block_copy_ms", c_double),
        ("predicted_forward_ms", c_double),
        ("resident_forward_ms", c_double),
        ("copy_bound_ms", c_double),
        ("tokens", c_int),
        ("predicted_step_ms", c_double),
        ("tight_activations", c_bool),
    ]


class BlockPlan(_Sized):
    _fields_ = [
        ("size", c_uint32),
        ("block", c_int),
        ("placement", c_int),
        ("tier", c_int),
        ("slot", c_int),
        ("copy_ms", c_double),
        ("compute_ms", c_double),
        ("predicted_copy_start_ms", c_double),
        ("predicted_compute_start_ms", c_double),
    ]


class EngineOptions(_Sized):
    _fields_ = [
        ("size", c_uint32),
        ("backend", c_int),
        ("device", c_int),
        ("host_device_bytes", c_uint64),
        ("host_bandwidth_gbps", c_double),
        ("slot_count", c_int),
        ("copy_streams", c_int),
        ("async_copies", c_int),
        ("pin_memory", c_int),
        ("fail_alloc_at", c_int),
        ("fail_pin_at", c_int),
        ("fail_copy_at", c_int),
    ]


class EngineStats(_Sized):
    _fields_ = [
        ("size", c_uint32),
        ("backend", c_int),
        ("bytes_copied", c_uint64),
        ("blocks_copied", c_uint64),
        ("acquires", c_uint64),
        ("releases", c_uint64),
        ("copy_busy_ms", c_double),
        ("compute_wait_ms", c_double),
        ("overlap_ratio", c_double),
        ("peak_slots_in_use", c_int),
        ("slot_count", c_int),
        ("copy_streams", c_int),
        ("pinned_bytes", c_uint64),
        ("pageable_bytes", c_uint64),
        ("disk_bytes", c_uint64),
        ("device_bytes", c_uint64),
        ("async_copies", c_bool),
        ("elapsed_ms", c_double),
    ]


class TimelineEvent(Structure):
    """Not versioned in the header (an array element)."""

    _fields_ = [
        ("kind", c_int),
        ("block", c_int),
        ("slot", c_int),
        ("stream", c_int),
        ("start_ms", c_double),
        ("end_ms", c_double),
    ]


class BandwidthResult(_Sized):
    _fields_ = [
        ("size", c_uint32),
        ("backend", c_int),
        ("gpu_name", c_char * NAME_MAX),
        ("gpu_uuid", c_char * 64),
        ("transfer_bytes", c_uint64),
        ("max_streams", c_int),
        ("h2d_pinned_gbps", c_double * 16),
        ("h2d_pageable_gbps", c_double * 16),
        ("d2h_pinned_gbps", c_double * 16),
        ("d2h_pageable_gbps", c_double * 16),
    ]


LOG_FN = ctypes.CFUNCTYPE(None, c_int, c_char_p, c_void_p)

_P = c_void_p  # opaque handles
_PP = POINTER(c_void_p)

# name -> (restype, argtypes)
_PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "vram_version_number": (c_int, []),
    "vram_version_string": (c_char_p, []),
    "vram_strerror": (c_char_p, [c_int]),
    "vram_last_error": (c_char_p, []),
    "vram_free": (None, [c_void_p]),
    "vram_set_log": (None, [LOG_FN, c_void_p, c_int]),
    "vram_dtype_size": (c_size_t, [c_int]),
    "vram_dtype_name": (c_char_p, [c_int]),
    "vram_dtype_from_name": (c_int, [c_char_p]),
    "vram_gpu_profile_count": (c_int, []),
    "vram_gpu_profile_get": (c_int, [c_int, POINTER(GpuProfile)]),
    "vram_gpu_profile_find": (c_int, [c_char_p, POINTER(GpuProfile)]),
    "vram_hw_probe": (c_int, [_PP]),
    "vram_hw_probe_dram_only": (c_int, [_PP]),
    "vram_hw_free": (None, [_P]),
    "vram_hw_gpu_count": (c_int, [_P]),
    "vram_hw_gpu": (c_int, [_P, c_int, POINTER(GpuInfo)]),
    "vram_hw_dram": (c_int, [_P, POINTER(DramInfo)]),
    "vram_hw_simulate_gpu": (c_int, [_P, c_int, c_char_p]),
    "vram_hw_set_vram": (c_int, [_P, c_int, c_double, c_double]),
    "vram_hw_set_dram": (c_int, [_P, c_double, c_double]),
    "vram_hw_set_bandwidth": (c_int, [_P, c_int, c_double, c_double]),
    "vram_memory_stats_init": (None, [POINTER(MemoryStatsC)]),
    "vram_memory_stats_get": (c_int, [_P, c_int, POINTER(MemoryStatsC)]),
    "vram_memory_stats_json": (c_int, [POINTER(MemoryStatsC), POINTER(c_void_p)]),
    "vram_layout_open": (c_int, [c_char_p, _PP]),
    "vram_layout_parse_header": (c_int, [c_void_p, c_size_t, _PP]),
    "vram_layout_from_catalog": (c_int, [c_char_p, c_int, _PP]),
    "vram_catalog_count": (c_int, []),
    "vram_catalog_name": (c_char_p, [c_int]),
    "vram_catalog_description": (c_char_p, [c_int]),
    "vram_layout_from_size": (c_int, [c_double, c_int, _PP]),
    "vram_layout_from_blocks": (c_int, [POINTER(c_uint64), c_int, c_uint64, c_int, _PP]),
    "vram_layout_free": (None, [_P]),
    "vram_layout_set_name": (c_int, [_P, c_char_p]),
    "vram_layout_get_info": (c_int, [_P, POINTER(LayoutInfo)]),
    "vram_layout_block": (c_int, [_P, c_int, POINTER(BlockInfo)]),
    "vram_layout_tensor": (c_int, [_P, c_int, POINTER(TensorInfo)]),
    "vram_layout_find_tensor": (c_int, [_P, c_char_p]),
    "vram_layout_file_path": (c_char_p, [_P, c_int]),
    "vram_layout_check_file": (c_int, [_P, c_int]),
    "vram_layout_json": (c_int, [_P, c_bool, POINTER(c_void_p)]),
    "vram_plan_options_init": (None, [POINTER(PlanOptions)]),
    "vram_plan_options_validate": (c_int, [POINTER(PlanOptions)]),
    "vram_plan_option_range": (c_int, [c_char_p, POINTER(OptionRange)]),
    "vram_plan_create": (c_int, [_P, _P, POINTER(PlanOptions), _PP]),
    "vram_plan_free": (None, [_P]),
    "vram_plan_get_summary": (c_int, [_P, POINTER(PlanSummary)]),
    "vram_plan_block": (c_int, [_P, c_int, POINTER(BlockPlan)]),
    "vram_plan_get_options": (c_int, [_P, POINTER(PlanOptions)]),
    "vram_plan_stream_more": (c_int, [_P, _P, _P, _PP]),
    "vram_plan_explain": (c_int, [_P, c_int, POINTER(c_void_p)]),
    "vram_engine_options_init": (None, [POINTER(EngineOptions)]),
    "vram_engine_create": (c_int, [_P, _P, POINTER(EngineOptions), _PP]),
    "vram_engine_destroy": (None, [_P]),
    "vram_engine_host_ptr": (c_void_p, [_P, c_int]),
    "vram_engine_block_bytes": (c_uint64, [_P, c_int]),
    "vram_engine_write": (c_int, [_P, c_int, c_uint64, c_void_p, c_uint64]),
    "vram_engine_invalidate": (c_int, [_P, c_int]),
    "vram_engine_load_files": (c_int, [_P]),
    "vram_engine_acquire": (c_int, [_P, c_int, c_void_p, POINTER(c_uint64)]),
    "vram_engine_release": (c_int, [_P, c_int, c_void_p]),
    "vram_engine_synchronize": (c_int, [_P]),
    "vram_engine_set_order": (c_int, [_P, POINTER(c_int), c_int]),
    "vram_engine_read_device": (c_int, [_P, c_uint64, c_void_p, c_uint64]),
    "vram_engine_get_stats": (c_int, [_P, POINTER(EngineStats)]),
    "vram_engine_reset_stats": (c_int, [_P]),
    "vram_engine_timeline": (c_int, [_P, POINTER(TimelineEvent), c_size_t, POINTER(c_size_t)]),
    "vram_bench_bandwidth": (c_int, [c_int, c_int, c_uint64, c_int, POINTER(BandwidthResult)]),
    "vram_bench_save": (c_int, [POINTER(BandwidthResult)]),
    "vram_bench_load": (c_int, [c_char_p, POINTER(BandwidthResult)]),
}


def library_path() -> Path:
    """$VRAM_LIBRARY, else the copy shipped in the package (genesis/_lib)."""
    env = os.environ.get("VRAM_LIBRARY")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "_lib" / "libvram.so"


def _load() -> ctypes.CDLL:
    path = library_path()
    if not path.exists():
        raise ImportError(
            f"libvram not found at {path}: install genesis with `pip install .` (which builds "
            "it) or set VRAM_LIBRARY to a built libvram.so"
        )
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        raise ImportError(f"cannot load libvram from {path}: {e}") from e
    missing = []
    for name, (restype, argtypes) in _PROTOTYPES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            missing.append(name)
            continue
        fn.restype = restype
        fn.argtypes = argtypes
    if missing:
        raise ImportError(f"libvram at {path} lacks {', '.join(missing)}: rebuild it")
    found = lib.vram_version_number()
    if found != EXPECTED_VERSION:
        raise ImportError(
            f"libvram at {path} is version {found} "
            f"({lib.vram_version_string().decode()}), but this binding expects "
            f"{EXPECTED_VERSION}: rebuild one to match the other"
        )
    return lib


lib: ctypes.CDLL = _load()
LIB_PATH: Path = library_path()


def take_string(p: c_void_p) -> str:
    """Decodes and frees a string the library handed out."""
    if not p.value:
        return ""
    try:
        return ctypes.string_at(p.value).decode("utf-8", "replace")
    finally:
        lib.vram_free(p)
