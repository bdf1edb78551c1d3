"""Layout: a model's blocks and tensors (from a file, the catalog, sizes,
or a live torch module's block sizes)."""

from __future__ import annotations

import ctypes
import json
from os import PathLike
from typing import Any, Sequence

from . import _ffi
from ._handle import Handle
from .errors import check


def dtype_from_name(name: str) -> int:
    return int(_ffi.lib.vram_dtype_from_name(name.encode()))


def dtype_name(dtype: int) -> str:
    return _ffi.lib.vram_dtype_name(dtype).decode()


def catalog() -> dict[str, str]:
    """Built-in catalog names -> descriptions."""
    n = _ffi.lib.vram_catalog_count()
    return {
        _ffi.lib.vram_catalog_name(i).decode(): _ffi.lib.vram_catalog_description(i).decode()
        for i in range(n)
    }


class Layout(Handle):
    """A vram_layout handle."""

    _free_name = "vram_layout_free"

    def __init__(self, handle: int) -> None:
        super().__init__(handle)

    @staticmethod
    def _make(fn: Any, call: str, *args: Any) -> Layout:
        h = ctypes.c_void_p()
        check(fn(*args, ctypes.byref(h)), call)
        return Layout(h.value or 0)

    @classmethod
    def open(cls, path: str | PathLike[str]) -> Layout:
        """A .safetensors file or a *.safetensors.index.json (headers only)."""
        return cls._make(_ffi.lib.vram_layout_open, "vram_layout_open", str(path).encode())

    @classmethod
    def parse_header(cls, data: bytes) -> Layout:
        return cls._make(_ffi.lib.vram_layout_parse_header, "vram_layout_parse_header",
                         data, len(data))

    def set_name(self, name: str) -> None:
        """The name libvram's explanations give this layout."""
        check(_ffi.lib.vram_layout_set_name(self.handle, name.encode()), "vram_layout_set_name")

    @classmethod
    def from_catalog(cls, name: str, dtype: str | int = 0) -> Layout:
        dt = dtype_from_name(dtype) if isinstance(dtype, str) else dtype
        return cls._make(_ffi.lib.vram_layout_from_catalog, "vram_layout_from_catalog",
                         name.encode(), dt)

    @classmethod
    def from_size(cls, model_size_mb: float, num_layers: int) -> Layout:
        return cls._make(_ffi.lib.vram_layout_from_size, "vram_layout_from_size",
                         float(model_size_mb), int(num_layers))

    @classmethod
    def from_blocks(cls, block_bytes: Sequence[int], rest_bytes: int = 0, dim: int = 0) -> Layout:
        arr = (ctypes.c_uint64 * max(1, len(block_bytes)))(*block_bytes)
        return cls._make(_ffi.lib.vram_layout_from_blocks, "vram_layout_from_blocks",
                         arr, len(block_bytes), int(rest_bytes), int(dim))

    def info(self) -> dict[str, Any]:
        i = _ffi.LayoutInfo.new()
        check(_ffi.lib.vram_layout_get_info(self.handle, ctypes.byref(i)), "vram_layout_get_info")
        d = i.to_dict()
        d["main_dtype_name"] = dtype_name(d["main_dtype"])
        return d

    @property
    def block_count(self) -> int:
        return int(self.info()["block_count"])

    def block(self, index: int) -> dict[str, Any]:
        b = _ffi.BlockInfo.new()
        check(_ffi.lib.vram_layout_block(self.handle, index, ctypes.byref(b)), "vram_layout_block")
        return b.to_dict()

    def blocks(self) -> list[dict[str, Any]]:
        return [self.block(i) for i in range(self.block_count)]

    def tensor(self, index: int) -> dict[str, Any]:
        t = _ffi.TensorInfo.new()
        check(_ffi.lib.vram_layout_tensor(self.handle, index, ctypes.byref(t)),
              "vram_layout_tensor")
        d = t.to_dict()
        d["shape"] = d["shape"][: d["ndim"]]
        d["dtype_name"] = dtype_name(d["dtype"])
        return d

    def tensors(self) -> list[dict[str, Any]]:
        return [self.tensor(i) for i in range(int(self.info()["tensor_count"]))]

    def find_tensor(self, name: str) -> int:
        return check(_ffi.lib.vram_layout_find_tensor(self.handle, name.encode()),
                     "vram_layout_find_tensor")

    def file_path(self, index: int) -> str | None:
        p = _ffi.lib.vram_layout_file_path(self.handle, index)
        return p.decode() if p else None

    def check_file(self, index: int) -> None:
        """StateError when model file `index` changed since its header was
        read (the engine checks the same before its reads)."""
        check(_ffi.lib.vram_layout_check_file(self.handle, index), "vram_layout_check_file")

    def json(self, with_tensors: bool = False) -> dict[str, Any]:
        out = ctypes.c_void_p()
        check(_ffi.lib.vram_layout_json(self.handle, with_tensors, ctypes.byref(out)),
              "vram_layout_json")
        return json.loads(_ffi.take_string(out))
