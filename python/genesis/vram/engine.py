"""Engine: the block-streaming engine (pinned host regions, device slots)."""

from __future__ import annotations

import ctypes
from typing import Any, Sequence

from . import _ffi
from ._handle import Handle
from .errors import check
from .layout import Layout
from .plan import Plan

BACKENDS = {"auto": _ffi.BACKEND_AUTO, "host": _ffi.BACKEND_HOST, "cuda": _ffi.BACKEND_CUDA}


class Engine(Handle):
    """A vram_engine. Keeps its plan and layout alive; destroy() frees the
    host regions and slots (tensor views into them must be gone by then)."""

    _free_name = "vram_engine_destroy"

    def __init__(self, handle: int, plan: Plan, layout: Layout) -> None:
        super().__init__(handle)
        self.plan = plan
        self.layout = layout

    @classmethod
    def create(cls, plan: Plan, layout: Layout, backend: str | int = "auto",
               **options: Any) -> Engine:
        o = _ffi.EngineOptions.new()
        _ffi.lib.vram_engine_options_init(ctypes.byref(o))
        o.backend = BACKENDS[backend] if isinstance(backend, str) else int(backend)
        names = set(_ffi.EngineOptions.field_names()) - {"backend"}
        for k, v in options.items():
            if k not in names:
                raise TypeError(f"unknown engine option {k!r}; known: {', '.join(sorted(names))}")
            if v is not None:
                setattr(o, k, v)
        h = ctypes.c_void_p()
        check(_ffi.lib.vram_engine_create(plan.handle, layout.handle, ctypes.byref(o),
                                          ctypes.byref(h)), "vram_engine_create")
        return cls(h.value or 0, plan, layout)

    destroy = Handle.close

    def host_ptr(self, block: int) -> int:
        """Host address of a streamed block's region (0 when it has none)."""
        return int(_ffi.lib.vram_engine_host_ptr(self.handle, block) or 0)

    def block_bytes(self, block: int) -> int:
        return int(_ffi.lib.vram_engine_block_bytes(self.handle, block))

    def invalidate(self, block: int) -> None:
        """Block `block`'s host region was changed in place: the next acquire
        copies it again."""
        check(_ffi.lib.vram_engine_invalidate(self.handle, block), "vram_engine_invalidate")

    def write(self, block: int, offset: int, src: int | bytes, n: int | None = None) -> None:
        """Copies bytes (an address + n, or a bytes object) into the block."""
        if isinstance(src, (bytes, bytearray)):
            n = len(src) if n is None else n
            buf = (ctypes.c_char * len(src)).from_buffer_copy(src)
            addr = ctypes.addressof(buf)
        else:
            if n is None:
                raise ValueError("write from an address needs n")
            addr = src
        check(_ffi.lib.vram_engine_write(self.handle, block, offset, ctypes.c_void_p(addr), n),
              "vram_engine_write")

    def load_files(self) -> None:
        check(_ffi.lib.vram_engine_load_files(self.handle), "vram_engine_load_files")

    def acquire(self, block: int, stream: int | None = None) -> int:
        """Device address of the block; `stream` (a CUstream) waits for its copy."""
        addr = ctypes.c_uint64()
        check(_ffi.lib.vram_engine_acquire(self.handle, block, ctypes.c_void_p(stream or None),
                                           ctypes.byref(addr)), "vram_engine_acquire")
        return int(addr.value)

    def release(self, block: int, stream: int | None = None) -> None:
        check(_ffi.lib.vram_engine_release(self.handle, block, ctypes.c_void_p(stream or None)),
              "vram_engine_release")

    def synchronize(self) -> None:
        check(_ffi.lib.vram_engine_synchronize(self.handle), "vram_engine_synchronize")

    def set_order(self, blocks: Sequence[int]) -> None:
        arr = (ctypes.c_int * max(1, len(blocks)))(*blocks)
        check(_ffi.lib.vram_engine_set_order(self.handle, arr, len(blocks)),
              "vram_engine_set_order")

    def read_device(self, device_addr: int, n: int) -> bytes:
        buf = ctypes.create_string_buffer(n)
        check(_ffi.lib.vram_engine_read_device(self.handle, device_addr, buf, n),
              "vram_engine_read_device")
        return buf.raw

    def stats(self) -> dict[str, Any]:
        s = _ffi.EngineStats.new()
        check(_ffi.lib.vram_engine_get_stats(self.handle, ctypes.byref(s)),
              "vram_engine_get_stats")
        d = s.to_dict()
        d["backend_name"] = _ffi.BACKEND_NAMES[d["backend"]] if 0 <= d["backend"] < 3 else "?"
        return d

    def reset_stats(self) -> None:
        check(_ffi.lib.vram_engine_reset_stats(self.handle), "vram_engine_reset_stats")

    def timeline(self) -> list[dict[str, Any]]:
        """The per-block timeline, oldest first: kind ('copy'/'compute'),
        block, slot, stream, start_ms, end_ms."""
        count = ctypes.c_size_t()
        check(_ffi.lib.vram_engine_timeline(self.handle, None, 0, ctypes.byref(count)),
              "vram_engine_timeline")
        n = count.value
        if n == 0:
            return []
        arr = (_ffi.TimelineEvent * n)()
        check(_ffi.lib.vram_engine_timeline(self.handle, arr, n, ctypes.byref(count)),
              "vram_engine_timeline")
        kinds = {_ffi.EVENT_COPY: "copy", _ffi.EVENT_COMPUTE: "compute"}
        return [
            {"kind": kinds.get(e.kind, str(e.kind)), "block": e.block, "slot": e.slot,
             "stream": e.stream, "start_ms": e.start_ms, "end_ms": e.end_ms}
            for e in arr[: min(n, count.value)]
        ]
