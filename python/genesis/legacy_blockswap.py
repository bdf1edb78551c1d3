"""Legacy block swapping: kijai's WanVideoBlockSwap, reproduced (the seed's
方案 B, and the benchmarks' baseline).

The last `blocks_to_swap` blocks (and the last `vace_blocks_to_swap` VACE
blocks) live on the CPU. Before a swapped block runs it is moved with
block.to(device) (blocking unless use_non_blocking), after it runs with
block.to("cpu"). prefetch_blocks > 0 issues .to(device, non_blocking=True)
for the next swapped blocks ahead of use. No pinned memory of its own (torch
pins the host copies a non_blocking move to the CPU makes), no copy stream:
exactly what the peer does, so comparisons are fair.

    args = {"blocks_to_swap": 20, "offload_img_emb": False, "offload_txt_emb": False,
            "use_non_blocking": False, "vace_blocks_to_swap": 0, "prefetch_blocks": 0,
            "block_swap_debug": False}
    swap = apply_block_swap(model, mode="legacy", **args)
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch
from torch import nn

from .blockswap import _ATTACHED, attached
from .devices import resolve_device
from .modelinfo import find_blocks, find_embedders, find_vace_blocks, module_bytes
from .vram import option_range

LogFn = Callable[[str], None]


def _range(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name}={value!r} is out of range: allowed {lo}-{hi}")


class LegacyBlockSwap:
    """kijai's behaviour on any model made of blocks; remove() undoes it."""

    def __init__(self, model: nn.Module, blocks_to_swap: int = 20, offload_img_emb: bool = False,
                 offload_txt_emb: bool = False, use_non_blocking: bool = False,
                 vace_blocks_to_swap: int = 0, prefetch_blocks: int = 0,
                 block_swap_debug: bool = False, device: str | torch.device | None = None,
                 block_attr: str | None = None, log: LogFn | None = None) -> None:
        if attached(model) is not None:
            raise ValueError("block swapping is already applied to this model: call .remove() first")
        from .loading import file_source

        if file_source(model) is not None:
            raise ValueError("legacy block swapping moves the blocks' weights, and this model is "
                             "file-backed (they are still in the checkpoint): use "
                             "mode='intelligent', or load it whole first")
        _, main = find_blocks(model, block_attr)
        vace = find_vace_blocks(model)
        _range("blocks_to_swap", blocks_to_swap, 0, len(main))
        _range("vace_blocks_to_swap", vace_blocks_to_swap, 0,
               min(int(option_range("vace_blocks_to_swap")["max"]), len(vace or [])))
        _range("prefetch_blocks", prefetch_blocks, 0, 40)
        self.model = model
        self.device = resolve_device(device)
        self.non_blocking = use_non_blocking
        self.prefetch = prefetch_blocks
        self.debug = block_swap_debug
        self.log: LogFn = log or print
        self.moves_in = 0
        self.moves_out = 0
        self.embedder_moves = 0
        self.timings: list[dict[str, Any]] = []
        self._orig_device = next((t.device for t in model.parameters()), torch.device("cpu"))
        # Execution order: VACE blocks are separate lists; each list swaps its tail.
        self.sequence: list[nn.Module] = list(main) + list(vace or [])
        self._n_main = len(main)
        swapped_main = list(range(len(main) - blocks_to_swap, len(main)))
        swapped_vace = [len(main) + i for i in range(len(vace or []) - vace_blocks_to_swap,
                                                     len(vace or []))]
        self.swapped: set[int] = set(swapped_main + swapped_vace)
        emb = find_embedders(model)
        self.offloaded = [emb[r] for r, on in (("text", offload_txt_emb),
                                                ("image", offload_img_emb)) if on and r in emb]
        self._in_flight: set[int] = set()
        self._t0: dict[int, float] = {}

        # Placement: everything on the device except the swapped blocks and
        # offloaded embedders.
        keep_off = {id(self.sequence[i]) for i in self.swapped} | {id(m) for m in self.offloaded}
        self._place(model, keep_off)
        for i in self.swapped:
            self.sequence[i].to("cpu")
        for m in self.offloaded:
            m.to("cpu")
        self._hooks: list[Any] = []
        for i, blk in enumerate(self.sequence):
            self._hooks.append(blk.register_forward_pre_hook(self._make_pre(i)))
            self._hooks.append(blk.register_forward_hook(self._make_post(i)))
        if self.offloaded:
            self._hooks.append(model.register_forward_pre_hook(self._embedders_in))
            self._hooks.append(model.register_forward_hook(self._embedders_out))
        setattr(model, _ATTACHED, self)
        if self.debug:
            on_cpu = sum(module_bytes(self.sequence[i]) for i in self.swapped) / 2**20
            on_dev = sum(module_bytes(b) for i, b in enumerate(self.sequence)
                         if i not in self.swapped) / 2**20
            self.log(f"Swapping {len(swapped_main)} transformer blocks")
            if swapped_vace:
                self.log(f"Swapping {len(swapped_vace)} VACE blocks")
            self.log(f"Transformer blocks on cpu: {on_cpu:.2f}MB")
            self.log(f"Transformer blocks on {self.device.type}: {on_dev:.2f}MB")

    def _place(self, module: nn.Module, keep_off: set[int]) -> None:
        if id(module) in keep_off:
            return
        for p in module._parameters.values():
            if p is not None:
                p.data = p.data.to(self.device)
        for name, b in list(module._buffers.items()):
            if b is not None:
                module._buffers[name] = b.to(self.device)
        for child in module.children():
            self._place(child, keep_off)

    def _make_pre(self, i: int) -> Callable[..., None]:
        def pre(_m: nn.Module, _args: Any) -> None:
            if i in self.swapped:
                t = time.perf_counter()
                if i not in self._in_flight:
                    self.sequence[i].to(self.device, non_blocking=self.non_blocking)
                    self.moves_in += 1
                self._in_flight.discard(i)
                if self.debug:
                    self._t0[i] = time.perf_counter()
                    self.timings.append({"block": i, "to_device_ms": (self._t0[i] - t) * 1000})
            # Within the block's own list, as kijai's: the VACE blocks run
            # before the main ones, so one prefetched from there would stay.
            end = self._n_main if i < self._n_main else len(self.sequence)
            for j in range(i + 1, min(end, i + 1 + self.prefetch)):
                if j in self.swapped and j not in self._in_flight:
                    self.sequence[j].to(self.device, non_blocking=True)
                    self._in_flight.add(j)
                    self.moves_in += 1
        return pre

    def _make_post(self, i: int) -> Callable[..., None]:
        def post(_m: nn.Module, _args: Any, _out: Any) -> None:
            if i not in self.swapped:
                return
            t = time.perf_counter()
            self.sequence[i].to("cpu", non_blocking=self.non_blocking)
            self.moves_out += 1
            if self.debug:
                # As in the peer: no synchronize, so these times mislead on a GPU.
                compute = (t - self._t0.pop(i, t)) * 1000
                self.log(f"Block {i}: compute {compute:.2f}ms, to cpu "
                         f"{(time.perf_counter() - t) * 1000:.2f}ms")
        return post

    def _embedders_in(self, _m: nn.Module, _args: Any) -> None:
        for m in self.offloaded:
            m.to(self.device)
            self.embedder_moves += 1

    def _embedders_out(self, _m: nn.Module, _args: Any, _out: Any) -> None:
        for m in self.offloaded:
            m.to("cpu")
            self.embedder_moves += 1

    def stats(self) -> dict[str, Any]:
        return {"mode": "legacy", "swapped_blocks": sorted(self.swapped),
                "moves_in": self.moves_in, "moves_out": self.moves_out,
                "embedder_moves": self.embedder_moves, "timings": list(self.timings)}

    def remove(self) -> None:
        if attached(self.model) is not self:
            return
        for h in self._hooks:
            h.remove()
        self._hooks = []
        delattr(self.model, _ATTACHED)
        self.model.to(self._orig_device)


def apply_legacy_block_swap(model: nn.Module, **args: Any) -> LegacyBlockSwap:
    """kijai's WanVideoBlockSwap args dict (blocks_to_swap, offload_img_emb,
    offload_txt_emb, use_non_blocking, vace_blocks_to_swap, prefetch_blocks,
    block_swap_debug); intelligent-only keys are ignored."""
    known = {"blocks_to_swap", "offload_img_emb", "offload_txt_emb", "use_non_blocking",
             "vace_blocks_to_swap", "prefetch_blocks", "block_swap_debug", "device",
             "block_attr", "log"}
    if args.get("vram_debug_mode"):
        args.setdefault("block_swap_debug", True)
    return LegacyBlockSwap(model, **{k: v for k, v in args.items() if k in known})
