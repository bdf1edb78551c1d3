"""VramError and one subclass per status code; check() raises them."""

from __future__ import annotations

from . import _ffi


class VramError(RuntimeError):
    """A libvram call failed. code: the vram_status; name: its enum name;
    detail: vram_last_error() at the time of the failure."""

    def __init__(self, code: int, detail: str = "", call: str = "") -> None:
        self.code = code
        self.name = _ffi.STATUS_NAMES.get(code, f"VRAM_STATUS_{code}")
        self.text = _ffi.lib.vram_strerror(code).decode("utf-8", "replace")
        self.detail = detail
        self.call = call
        where = f"{call}: " if call else ""
        msg = f"{where}{self.name} ({self.text})"
        if detail:
            msg += f": {detail}"
        super().__init__(msg)


class InvalidArgument(VramError, ValueError):
    pass


class OutOfHostMemory(VramError, MemoryError):
    pass


class IOFailure(VramError, OSError):
    pass


class FormatError(VramError):
    pass


class NotFound(VramError, LookupError):
    pass


class NoDevice(VramError):
    pass


class DriverError(VramError):
    pass


class OutOfDeviceMemory(VramError, MemoryError):
    pass


class DoesNotFit(VramError):
    pass


class StateError(VramError):
    pass


class Unsupported(VramError):
    pass


class RangeError(VramError, ValueError):
    pass


_BY_CODE: dict[int, type[VramError]] = {
    _ffi.E_INVALID: InvalidArgument,
    _ffi.E_NOMEM: OutOfHostMemory,
    _ffi.E_IO: IOFailure,
    _ffi.E_FORMAT: FormatError,
    _ffi.E_NOT_FOUND: NotFound,
    _ffi.E_NO_DEVICE: NoDevice,
    _ffi.E_DRIVER: DriverError,
    _ffi.E_DEVICE_NOMEM: OutOfDeviceMemory,
    _ffi.E_DOES_NOT_FIT: DoesNotFit,
    _ffi.E_STATE: StateError,
    _ffi.E_UNSUPPORTED: Unsupported,
    _ffi.E_RANGE: RangeError,
}


def error_for(code: int, call: str = "") -> VramError:
    detail = (_ffi.lib.vram_last_error() or b"").decode("utf-8", "replace")
    return _BY_CODE.get(code, VramError)(code, detail, call)


def check(code: int, call: str = "") -> int:
    """Returns code when >= 0, raises the matching VramError otherwise."""
    if code < 0:
        raise error_for(code, call)
    return code
