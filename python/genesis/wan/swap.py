"""Placing a loaded pipeline on the device for one run: the transformer(s)
through genesis.blockswap (libvram plans and streams the blocks) when block
swapping is on, and the text encoder too when it does not fit the GPU alone;
else the whole pipeline on the device."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .loading import LoadedModel
from .vram_setup import LogFn

if TYPE_CHECKING:
    from genesis.planning import HardwareSnapshot

# Where T5 text encoders (Wan's umT5-xxl: 24 blocks, 11 GB in bf16) keep their blocks.
T5_BLOCKS = "encoder.block"
# A text encoder's one pass over the prompt, planned as a 512-token frame.
TEXT_PASS: dict[str, Any] = {"width": 512, "height": 256, "frames": 1, "passes_per_step": 1}


class Placement:
    """The model on its device for one run. report() gives the plan and the
    engine's numbers, close() undoes the block swapping."""

    def __init__(self, handles: list[Any], phases: Any = None, text_encoder: Any = None) -> None:
        self.handles = handles  # the transformers' swaps
        self.phases = phases
        self.text_encoder = text_encoder  # its swap, when it does not fit alone

    def report(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """(metadata fields, engine timeline of the first transformer)."""
        if not self.handles:
            return {"plan": None, "predicted_step_ms": None, "bytes_streamed": 0, "overlap_ratio": None}, []
        reports = [h.report() for h in self.handles]
        first, stats = reports[0], self.handles[0].stats()  # the first's timeline only
        info: dict[str, Any] = {
            "plan": first["plan"],
            "streamed_blocks": stats["streamed_blocks"],
            # the first transformer's (Wan2.2 A14B: the high-noise expert's)
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
        te = self.text_encoder.report() if self.text_encoder is not None else None
        info["text_encoder_swap"] = None if te is None else {
            k: te[k] for k in ("bytes_streamed", "streamed_count", "resident_count")}
        return info, stats["timeline"]

    def close(self) -> None:
        """Undoes every swap and the phases' hooks, each even when one before
        it fails (the first error is raised at the end)."""
        undo: list[Any] = []
        if self.phases is not None:
            undo.append(self.phases.remove)
        # A file-backed transformer stays so; the others get their weights back.
        undo += [lambda h=h: h.remove(reload=False) for h in self.handles]
        if self.text_encoder is not None:
            undo.append(self.text_encoder.remove)
        self.phases, self.handles, self.text_encoder = None, [], None
        error: BaseException | None = None
        for step in undo:
            try:
                step()
            except BaseException as e:  # noqa: BLE001 - the rest still goes; raised below
                error = error or e
        if error is not None:
            raise error


def swap_text_encoder(encoder: Any, device: str, log: LogFn,
                      hardware: HardwareSnapshot | None = None, **plan_options: Any) -> Any:
    """The text encoder block-swapped, parked until its phase, when libvram
    says it does not fit the GPU alone (umT5-xxl's 11 GB on a 10-12 GB
    card); None when it fits, or has no T5 block list. plan_options: the
    run's enable_cuda_optimization / enable_dram_optimization (and gpu /
    vram_mb to simulate)."""
    from genesis.blockswap import apply_block_swap
    from genesis.modelinfo import find_blocks
    from genesis.phases import ALONE_THRESHOLD
    from genesis.vram import DoesNotFit

    if encoder is None:
        return None
    try:
        find_blocks(encoder, T5_BLOCKS)
    except (AttributeError, ValueError):
        return None
    try:
        swap = apply_block_swap(encoder, block_attr=T5_BLOCKS, device=device, hardware=hardware,
                                parked=True, log=log, vram_debug_mode=False,
                                auto_hardware_tuning=True, vram_threshold_percent=ALONE_THRESHOLD,
                                **TEXT_PASS, **plan_options)
    except DoesNotFit as e:  # not even streamed: it moves whole in its phase, as unswapped
        log(f"[VRAM] 文本编码器即使流式传输也放不下 GPU, 整体移动: {e}")
        return None
    if swap.plan.summary()["streamed_count"] == 0:
        swap.remove()
        return None
    return swap


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
    phases = encoder = None
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
        switches = {k: args[k] for k in ("enable_cuda_optimization", "enable_dram_optimization")
                    if k in args}
        encoder = swap_text_encoder(getattr(pipe, "text_encoder", None), device, log, hardware,
                                    **switches)
        if encoder is not None and debug:
            s = encoder.plan.summary()
            log(f"[VRAM] 文本编码器单独也放不下 GPU: {s['streamed_count']}/{s['block_count']} 块流式传输")
        components = {name: getattr(pipe, name, None) for name in PHASE_OF}
        phases = Phases(components, device=device, log=log if debug else None, hardware=hardware,
                        **(video or {})).install(pipe)
        # A diffusers pipeline takes its execution device (where latents and
        # prompt embeddings go) from where its components are when it is
        # called: the first phase goes onto the device now.
        phases.enter("encode")
    except BaseException:
        Placement(handles, phases, encoder).close()
        raise
    return Placement(handles, phases, encoder)
