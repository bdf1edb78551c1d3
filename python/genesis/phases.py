"""Phases: the text encoder, the transformer(s) and the VAE take turns on the
GPU (encode, denoise, decode) when libvram says they don't fit together.

    phases = Phases({"text_encoder": pipe.text_encoder, "transformer": pipe.transformer,
                     "vae": pipe.vae}, width=832, height=480, frames=81)
    phases.install(pipe)     # hooks around encode_prompt / transformer / vae.decode
    ...                      # or: with phases.phase("decode"): pipe.vae.decode(...)
    phases.remove()

The decision is libvram's: each component is one block of a layout (a
block-swapped transformer counts with its planned GPU footprint: resident
blocks + rest + slots), planned against the GPU with auto tuning; when the
plan streams nothing they stay together on the GPU, otherwise each phase
moves its component in and the others out. A block-swapped component moves
by parking: out, its engine is freed (BlockSwap.park); in, it is built again
for its plan (unpark). So Wan2.2's swapped experts, each planned for the
whole GPU, take turns instead of the second streaming around the first.
Components under legacy block swapping are never moved: their hooks place
the blocks.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import Any, Callable, Iterator

import torch
from torch import nn

from .blockswap import attached, out_of_memory_errors
from .devices import resolve_device
from .modelinfo import model_dim, module_bytes
from .planning import HardwareSnapshot
from .vram import DoesNotFit, Layout, Plan

logger = logging.getLogger("genesis.phases")
LogFn = Callable[[str], None]

_MISSING = object()

# The phase each component belongs to (several transformers share one).
PHASE_OF = {"text_encoder": "encode", "image_encoder": "encode", "transformer": "denoise",
            "transformer_2": "denoise", "vae": "decode"}
# The VRAM share the components may fill while they have the GPU (each
# alone, when they take turns).
ALONE_THRESHOLD = 90.0
# Wan2.2 A14B's experts: the high-noise one runs the first steps, then the
# low-noise one the rest, so when they do not fit together each denoises
# alone and they trade places once a generation.
EXPERTS = ("transformer", "transformer_2")


def _footprint(module: nn.Module) -> int:
    """GPU bytes the component needs while it runs."""
    swap = attached(module)
    plan = getattr(swap, "plan", None)
    if plan is not None and swap.swapping:
        s = plan.summary()
        return int(s["resident_bytes"] + s["rest_bytes"] + s["slot_bytes"])
    return module_bytes(module)


def _moved(x: Any, device: torch.device) -> Any:
    return x.to(device) if isinstance(x, torch.Tensor) else x


def _fixed(module: nn.Module) -> bool:
    """Placed by a swap that cannot be parked (legacy block swapping)."""
    swap = attached(module)
    return swap is not None and not hasattr(swap, "park")


class Phases:
    def __init__(self, components: dict[str, nn.Module | None], *,
                 device: str | torch.device | None = None, vram_threshold_percent: float = ALONE_THRESHOLD,
                 gpu: str | None = None, vram_mb: float | None = None,
                 hardware: HardwareSnapshot | None = None,
                 log: LogFn | None = None, **plan_options: Any) -> None:
        self.components = {k: m for k, m in components.items() if m is not None}
        if not self.components:
            raise ValueError("components: give at least one module (text_encoder, transformer, vae)")
        self.device = resolve_device(device)
        self.log = log
        self.current: str | None = None
        self.history: list[str] = []
        self.moves: list[tuple[str, str]] = []
        self.tiled: list[Any] = []  # VAEs switched to tiling after running out of memory
        self._hooks: list[Any] = []
        self._wrapped: list[tuple[Any, str, Any, Any]] = []  # owner, attr, ours, before
        names = list(self.components)
        self.sizes = {n: _footprint(self.components[n]) for n in names}
        # hardware: a generation's snapshot, used when taken for this gpu /
        # vram_mb / device (else a fresh probe).
        snapshot = HardwareSnapshot.reuse(hardware, gpu, vram_mb, self.device.index or 0)
        # The activations the plan leaves room for are the transformer's:
        # its width, not one libvram would guess from a component's size
        # (an 11 GB text encoder as a block reads as a 4x wider model).
        dim = next((model_dim(self.components[n]) for n in EXPERTS if n in self.components), 0)

        def fits(sizes: list[int]) -> tuple[Plan | None, bool]:
            try:
                plan = snapshot.plan(Layout.from_blocks([max(1, n) for n in sizes], 0, dim),
                                     gpu_index=snapshot.index,
                                     vram_threshold_percent=vram_threshold_percent,
                                     auto_hardware_tuning=True, **plan_options)
                return plan, plan.summary()["streamed_count"] == 0
            except DoesNotFit as e:
                logger.info("planned apart: %s", e)
                return None, False

        self.plan, self.together = fits([self.sizes[n] for n in names])
        movable = [n for n in EXPERTS if n in self.components and not _fixed(self.components[n])]
        self.experts_take_turns = (not self.together and len(movable) == 2
                                   and not fits([self.sizes[n] for n in movable])[1])
        self.expert: str | None = None  # the expert on the GPU while they take turns
        if self.log:
            mb = ", ".join(f"{n} {self.sizes[n] / 2**20:.1f}MB" for n in names)
            self.log(f"[VRAM] 组件: {mb} -> " + ("同时驻留 GPU" if self.together
                                                 else "分阶段轮流使用 GPU")
                     + ("; 两个专家模型轮流使用 GPU" if self.experts_take_turns else ""))

    def _move(self, name: str, into: bool) -> None:
        """Brings component `name` onto the GPU (into) or off it."""
        module = self.components[name]
        swap = attached(module)
        if swap is None:
            # Outside a generation's inference mode: the moved weights outlive it.
            with torch.inference_mode(False):
                module.to(self.device if into else "cpu")
        elif _fixed(module):
            return
        elif into:
            swap.unpark()
        else:
            swap.park()
        self.moves.append((name, str(self.device) if into else "cpu"))

    def enter(self, phase: str) -> None:
        """Makes `phase` ('encode', 'denoise', 'decode', or a component's
        name: 'vae' is 'decode') the one on the GPU. While the experts take
        turns, 'transformer_2' brings in that expert alone, and 'denoise'
        keeps the one in (the first, at the start)."""
        name, phase = phase, PHASE_OF.get(phase, phase)
        if phase not in PHASE_OF.values():
            raise ValueError(f"unknown phase {phase!r}: encode, denoise or decode (or a "
                             f"component: {', '.join(PHASE_OF)})")
        expert = None
        if phase == "denoise" and self.experts_take_turns:
            expert = name if name in EXPERTS else self.expert or EXPERTS[0]
        if phase == self.current and expert == self.expert:
            return
        first = self.current is None
        if phase != self.current:
            self.history.append(phase)
        self.current, self.expert = phase, expert
        if self.together:
            if first:
                for n in self.components:
                    self._move(n, True)
            return

        def on_gpu(n: str) -> bool:
            return PHASE_OF.get(n, n) == phase and (expert is None or n not in EXPERTS or n == expert)

        for n in self.components:
            if not on_gpu(n):
                self._move(n, False)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        for n in self.components:
            if on_gpu(n):
                self._move(n, True)

    @contextlib.contextmanager
    def phase(self, phase: str) -> Iterator[None]:
        self.enter(phase)
        yield

    def _wrap(self, owner: Any, attr: str, phase: str, vae: bool = False) -> None:
        """owner.attr enters `phase` first. For the VAE (a module), its
        tensor arguments then move to where the phase put it: diffusers
        moves them to the VAE's device before calling decode/encode, which
        while the components take turns is still the CPU. And a VAE call
        that runs out of GPU memory is retried tiled (see _tile)."""
        fn = getattr(owner, attr, None)
        if fn is None:
            return

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.enter(phase)
            if not (vae and isinstance(owner, nn.Module)):
                return fn(*args, **kwargs)
            p = next(owner.parameters(), None)
            if p is not None:
                args = tuple(_moved(a, p.device) for a in args)
                kwargs = {k: _moved(v, p.device) for k, v in kwargs.items()}
            try:
                return fn(*args, **kwargs)
            except out_of_memory_errors() as e:
                if not self._tile(owner, f"{attr}: {str(e).splitlines()[0]}"):
                    raise
            return fn(*args, **kwargs)  # outside the except: its frames are freed

        before = getattr(owner, "__dict__", {}).get(attr, _MISSING)  # one set on the instance
        setattr(owner, attr, wrapper)
        self._wrapped.append((owner, attr, wrapper, before))

    def _tile(self, vae: Any, why: str) -> bool:
        """Turns on a diffusers VAE's tiled decoding and encoding (slices
        of the frame, far less memory, the same video up to the blended tile
        seams) after it ran out of memory; remove() turns it off again.
        False when it has no tiling or already tiles."""
        if getattr(vae, "use_tiling", True) or not hasattr(vae, "enable_tiling"):
            return False
        vae.enable_tiling()
        self.tiled.append(vae)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        msg = f"VAE out of memory ({why}): retrying with tiled decoding"
        logger.warning(msg)
        if self.log:
            self.log(f"[VRAM] VAE 显存不足, 改用分块解码重试 ({why})")
        return True

    def install(self, pipe: Any) -> Phases:
        """Hooks a diffusers-style pipeline: encode_prompt / encode_image ->
        'encode', the transformer(s) -> 'denoise', vae.decode/encode -> 'decode'."""
        self._wrap(pipe, "encode_prompt", "encode")
        self._wrap(pipe, "encode_image", "encode")
        for name in EXPERTS:
            m = getattr(pipe, name, None)
            if isinstance(m, nn.Module):
                self._hooks.append(m.register_forward_pre_hook(
                    lambda _m, _a, name=name: self.enter(name)))
        vae = getattr(pipe, "vae", None)
        if vae is not None:
            self._wrap(vae, "decode", "decode", vae=True)
            self._wrap(vae, "encode", "decode", vae=True)
        return self

    def remove(self) -> None:
        for vae in self.tiled:
            vae.disable_tiling()
        self.tiled = []
        for h in self._hooks:
            h.remove()
        for owner, attr, ours, before in reversed(self._wrapped):
            if getattr(owner, "__dict__", {}).get(attr) is not ours:
                continue  # replaced since: not ours to undo
            if before is _MISSING:
                delattr(owner, attr)
            else:
                setattr(owner, attr, before)
        self._hooks, self._wrapped = [], []
