"""Placing a loaded pipeline on the device for one run: the transformer(s)
through genesis.blockswap (libvram plans and streams the blocks) when block
swapping is on, else the whole pipeline on the device."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .loading import LoadedModel
from .vram_setup import LogFn

if TYPE_CHECKING:
    from genesis.planning import HardwareSnapshot


class Placement:
    """The model on its device for one run. report() gives the plan and the
    engine's numbers, close() undoes the block swapping."""

    def __init__(self, handles: list[Any], phases: Any = None) -> None:
        self.handles = handles
        self.phases = phases

    def report(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """(metadata fields, engine timeline of the first transformer)."""
        if not self.handles:
            return {"plan": None, "predicted_step_ms": None, "bytes_streamed": 0, "overlap_ratio": None}, []
        reports = [h.report() for h in self.handles]
        first, stats = reports[0], self.handles[0].stats()  # the first's timeline only
        info: dict[str, Any] = {
            "plan": first["plan"],
            "streamed_blocks": stats["streamed_blocks"],
            # Wan2.2 A14B: the two experts take turns, one per step.
            "predicted_step_ms": round(first["predicted_step_ms"], 3),
            "predicted_forward_ms": round(first["predicted_forward_ms"], 3),
            "measured_block_ms": round(first["measured_block_ms"], 4),
            "bytes_streamed": sum(r["bytes_streamed"] for r in reports),
            "overlap_ratio": first["overlap_ratio"],
            "engine": stats["engine"],
            "swap_active": all(h.swapping for h in self.handles),
            "swap_fallback": "; ".join(h.fallback_reason for h in self.handles if h.fallback_reason) or None,
            "replans": stats["replans"],
        }
        if self.phases is not None:
            info["phases"] = {"together": self.phases.together, "history": list(self.phases.history),
                              "experts_take_turns": self.phases.experts_take_turns}
        if len(self.handles) > 1:
            info["expert_2"] = {k: reports[1][k] for k in ("bytes_streamed", "overlap_ratio", "streamed_count")}
        return info, stats["timeline"]

    def close(self) -> None:
        if self.phases is not None:
            self.phases.remove()
            self.phases = None
        for h in self.handles:
            h.remove(reload=False)  # a file-backed transformer stays so; others reload anyway
        self.handles = []


def place(
    loaded: LoadedModel,
    args: dict[str, Any] | None,
    device: str,
    log: LogFn,
    debug: bool = False,
    video: dict[str, Any] | None = None,
    hardware: HardwareSnapshot | None = None,
) -> Placement:
    """Puts the pipeline on `device`; with block-swap args, the transformers'
    blocks go to libvram instead (video: width/height/frames/passes_per_step
    for the plan; hardware: the generation's snapshot, taken before anything
    was placed, with step 2's plan in it)."""
    from genesis.blockswap import apply_block_swap
    from genesis.phases import PHASE_OF, Phases

    pipe = loaded.pipe
    if args is None:
        loaded.load_whole()  # file-backed transformers: their blocks, for the whole model
        pipe.to(device)
        return Placement([])
    handles: list[Any] = []
    phases = None
    try:
        for t in loaded.transformers:
            # Planned now against the snapshot, built when the transformer's
            # phase comes: Wan2.2 A14B's two experts each plan for the GPU,
            # and Phases lets them share it or take turns.
            handles.append(
                apply_block_swap(t, mode="intelligent", device=device, vram_debug_mode=False, log=log,
                                 hardware=hardware, parked=True, **(video or {}), **args)
            )
        # Text encoder, transformer(s) and VAE share the GPU, or take turns
        # when libvram says they don't fit together. Their layout counts the
        # swapped transformers' planned footprint, against the snapshot taken
        # before anything was placed.
        components = {name: getattr(pipe, name, None) for name in PHASE_OF}
        phases = Phases(components, device=device, log=log if debug else None, hardware=hardware,
                        **(video or {})).install(pipe)
        # A diffusers pipeline takes its execution device (where latents and
        # prompt embeddings go) from where its components are when it is
        # called: the first phase goes onto the device now.
        phases.enter("encode")
    except BaseException:
        Placement(handles, phases).close()
        raise
    return Placement(handles, phases)
