"""Torch tensors that alias memory libvram owns (host regions, device slots).

CPU: a ctypes array at the address, wrapped by torch.frombuffer (no copy).
CUDA: an object exposing __cuda_array_interface__ as uint8 (bfloat16 has no
typestr), then .view(dtype). Views never own the memory: the engine must
outlive them."""

from __future__ import annotations

import ctypes
from typing import Any

import torch


class _CudaBytes:
    """Minimal __cuda_array_interface__ (v3) exporter for raw device bytes."""

    def __init__(self, addr: int, nbytes: int) -> None:
        self.__cuda_array_interface__: dict[str, Any] = {
            "shape": (nbytes,),
            "typestr": "|u1",
            "data": (addr, False),
            "version": 3,
            "strides": None,
            # The caller already ordered the stream (vram_engine_acquire).
            "stream": None,
        }


def byte_view(addr: int, nbytes: int, device: torch.device) -> torch.Tensor:
    """A uint8 tensor over [addr, addr + nbytes) on `device`."""
    if nbytes <= 0:
        return torch.empty(0, dtype=torch.uint8, device=device)
    if device.type == "cuda":
        return torch.as_tensor(_CudaBytes(addr, nbytes), device=device)
    buf = (ctypes.c_uint8 * nbytes).from_address(addr)
    return torch.frombuffer(buf, dtype=torch.uint8)


def typed_view(base: torch.Tensor, offset: int, nbytes: int, dtype: torch.dtype,
               shape: tuple[int, ...], stride: tuple[int, ...] | None = None) -> torch.Tensor:
    """The tensor stored at `offset` of a uint8 region: row-major, or with
    `stride` (a dense tensor stored in another order)."""
    if nbytes == 0:
        return torch.empty(shape, dtype=dtype, device=base.device)
    flat = base[offset:offset + nbytes].view(dtype)
    return flat.view(shape) if stride is None else flat.as_strided(shape, stride)
