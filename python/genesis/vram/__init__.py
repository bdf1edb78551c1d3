"""Typed ctypes binding of libvram (include/vram.h).

    from genesis import vram
    hw = vram.Hardware.probe().simulate_gpu("RTX 4090", index=0)
    layout = vram.Layout.from_catalog("wan2.1-t2v-14b")
    plan = vram.Plan.create(layout, hw, vram_threshold_percent=50)
    print(plan.explain("zh"))

Errors raise VramError subclasses (DoesNotFit, RangeError, ...) carrying the
status code, its name and vram_last_error(). libvram's log goes to the
Python logger "genesis.vram".
"""

from __future__ import annotations

import logging

from . import _ffi
from .engine import BACKENDS, Engine
from .errors import (
    DoesNotFit,
    DriverError,
    FormatError,
    InvalidArgument,
    IOFailure,
    NoDevice,
    NotFound,
    OutOfDeviceMemory,
    OutOfHostMemory,
    RangeError,
    StateError,
    Unsupported,
    VramError,
    check,
)
from .hardware import Hardware, MemoryStats, find_gpu_profile, gpu_profiles, memory_stats_json
from .layout import Layout, catalog, dtype_from_name, dtype_name
from .plan import (OPTION_NAMES, Plan, default_options, make_options, manual_only_options,
                   option_range)

__all__ = [
    "BACKENDS", "DoesNotFit", "DriverError", "Engine", "FormatError", "Hardware", "IOFailure",
    "InvalidArgument", "Layout", "MemoryStats", "NoDevice", "NotFound", "OPTION_NAMES",
    "OutOfDeviceMemory", "OutOfHostMemory", "Plan", "RangeError", "StateError", "Unsupported",
    "VramError", "catalog", "check", "default_options", "dtype_from_name", "dtype_name",
    "find_gpu_profile", "gpu_profiles", "library_path", "make_options", "memory_stats_json",
    "manual_only_options", "option_range", "version", "version_number", "EXPECTED_VERSION",
]

EXPECTED_VERSION = _ffi.EXPECTED_VERSION
library_path = _ffi.library_path
logger = logging.getLogger("genesis.vram")

_LEVELS = {
    _ffi.LOG_ERROR: logging.ERROR,
    _ffi.LOG_WARN: logging.WARNING,
    _ffi.LOG_INFO: logging.INFO,
    _ffi.LOG_DEBUG: logging.DEBUG,
}


def version() -> str:
    return _ffi.lib.vram_version_string().decode()


def version_number() -> int:
    return int(_ffi.lib.vram_version_number())


@_ffi.LOG_FN
def _log_to_python(level: int, message: bytes, _user: int) -> None:
    try:
        logger.log(_LEVELS.get(level, logging.INFO), "%s", message.decode("utf-8", "replace"))
    except Exception:  # never raise into C
        pass


def route_log_to_python(max_level: int = _ffi.LOG_DEBUG) -> None:
    """Sends libvram's log to logging.getLogger('genesis.vram') (done at import)."""
    _ffi.lib.vram_set_log(_log_to_python, None, max_level)


def restore_default_log() -> None:
    """libvram's own default: warnings and errors to stderr."""
    _ffi.lib.vram_set_log(_ffi.LOG_FN(), None, _ffi.LOG_WARN)


route_log_to_python()
