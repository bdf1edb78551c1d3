"""Which torch device genesis runs on, stated once."""

from __future__ import annotations

import torch


def resolve_device(device: torch.device | str | None = None) -> torch.device:
    """The given device, else the current CUDA device, else the CPU. A CUDA
    device always carries its index: the engine and torch's per-device calls
    (set_per_process_memory_fraction, mem_get_info) need one."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev
