"""Placing a loaded pipeline on the device, with the transformer's blocks
streamed by genesis.blockswap (libvram) when block swapping is on."""

from __future__ import annotations

from typing import Any

from .loading import LoadedModel
from .vram_setup import LogFn


class Placement:
    """The model on its device for one run; report() gives the engine's
    numbers, close() undoes the block swapping."""

    def __init__(self, loaded: LoadedModel, handles: list[Any], passes: int = 2) -> None:
        self.loaded = loaded
        self.handles = handles

    def report(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        if not self.handles:
            return {"plan": None, "predicted_step_ms": None, "bytes_streamed": 0, "overlap_ratio": None}, []
        raise NotImplementedError

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


def place(loaded: LoadedModel, args: dict[str, Any] | None, device: str, log: LogFn, debug: bool = False) -> Placement:
    pipe = loaded.pipe
    if args is None:
        pipe.to(device)
        return Placement(loaded, [])
    from genesis.blockswap import apply_block_swap

    handles = [apply_block_swap(t, mode="intelligent", **args) for t in loaded.transformers]
    return Placement(loaded, handles)
