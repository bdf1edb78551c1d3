"""Block swapping for any torch module made of blocks, planned and run by
libvram.

    from genesis.blockswap import apply_block_swap
    swap = apply_block_swap(transformer, vram_threshold_percent=50)
    out = transformer(...)        # streamed blocks copied in by the engine
    print(swap.stats()["plan"])   # what libvram decided, and the timeline
    swap.remove()                 # the model as it was

How it works: the model's blocks (blocks / transformer_blocks / vace_blocks /
layers) become a vram layout (each block's parameters and buffers packed at
256-aligned offsets). libvram plans which blocks stay resident and which
stream; the engine gets each streamed block's bytes once (its pinned host
region) and torch's own copy is freed. A streamed block's parameters are
views of its device slot during its forward (pre-hook: acquire, post-hook:
release) and views of its host copy otherwise.

DRAM pressure: blocks the plan puts on the disk tier have no host region.
Their bytes go to the engine's spill file (vram_engine_write), or stay in
the model file (genesis.loading.load_swapped). Outside their forward their
parameters are placeholders (see genesis.modelinfo.placeholder): the right dtype and shape,
no memory, every element reading as zero. swap.remove() gives the real
values back; a state_dict() taken while such blocks stream is not a copy
of their weights.

State while swapped: weights changed in place (load_state_dict, a merged
LoRA) land in the host copy, and the next acquire copies the block again
(tensor versions tell; a parameter given new .data is copied in; an edit
in place through .data shows in no version: call refresh()); buffers a
forward updates (running statistics, a counter) are copied back from the
slot (a buffer a block replaces at another size is refused: a block's
tensors have fixed sizes in its packing). state_dict() gives CPU copies of engine-held tensors, read back from
the disk tier where they lie there (the engine's memory goes at remove,
park or a re-plan; edit the model, not the copies; keep_vars=True gives
the Parameters, which stay valid). New weights for a disk-tier block, and
load_state_dict into a file-backed model (whose blocks come from the file
again at park and remove), are refused.
load_state_dict(assign=True), tensors sharing memory across blocks or with
the rest of the model, and blocks without a forward of their own are
refused. A model that calls parts of its blocks directly bypasses the hooks
(one warning). A dense tensor stored in another order (a transposed weight)
is packed as its memory lies and keeps its strides.

Adaptive: after the first forward the measured per-block compute time is
given to the planner (measured_block_ms); the engine is rebuilt only when
the placement changes. An out-of-memory error in a forward makes it stream
more blocks and retry that forward.

Hooks: only streamed blocks carry forward hooks (acquire / release). The
first forward of an adaptive swap hooks every block to time it; after it
resident blocks run without hooks, so a model that streams nothing costs
one wrapper call per forward.

Engine errors: if libvram fails inside a forward (a copy, acquire or
release raises), every block gets its own tensors back (from the engine's
host copies, its spill file, or the model file), the engine is destroyed,
one RuntimeWarning is issued (and logged), and the forward runs again
unswapped, so the step still gives the right output. The model stays
unswapped for the rest of this BlockSwap's life: a driver error tends to
repeat, and a second one mid-generation costs more than the memory saved.
A file-backed model (genesis.loading) cannot run unswapped without loading
the whole file, so it gets a fresh engine from the file instead, once per
forward.

Turns: park() frees the GPU and the pinned memory between a model's turns
(Wan2.2's two experts denoise one after the other); unpark() or the next
forward builds the engine again for the same plan. apply_block_swap(...,
parked=True) plans now and builds at the first turn, so models that take
turns can each plan for the whole GPU (genesis.phases parks the others).

live_swaps() lists the BlockSwaps whose engine is alive (leak checks: a
cancelled generation must leave none).
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
import weakref
from collections import defaultdict
from dataclasses import fields
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from . import _views
from .devices import resolve_device
from .modelinfo import (BlockPacking, ModelPacking, blocks_without_forward, is_placeholder, pack_model,
                        placeholder, shared_tensors, unsupported_tensors)
from .planning import HardwareSnapshot, SwapOptions, layout_for_model
from .vram import Engine, Plan, StateError, VramError, _ffi
from .vram.plan import make_options

if TYPE_CHECKING:
    from .loading import FileSource

logger = logging.getLogger("genesis.blockswap")
LogFn = Callable[[str], None]

# torch.compile modes that capture device addresses in CUDA graphs: a
# streamed block's weights move between slots, so replays would read stale
# memory.
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")

_ATTACHED = "_genesis_block_swap"

# Every BlockSwap that holds an engine (see live_swaps).
_LIVE: weakref.WeakSet[BlockSwap] = weakref.WeakSet()


def live_swaps() -> list[BlockSwap]:
    """The BlockSwaps whose libvram engine (host regions, device slots) is
    alive in this process."""
    return [s for s in list(_LIVE) if s.engine is not None]


def _dynamo_disable(fn: Callable[..., Any], recursive: bool = True) -> Callable[..., Any]:
    try:
        return torch._dynamo.disable(fn, recursive=recursive)  # type: ignore[attr-defined]
    except Exception:  # pragma: no cover - torch without dynamo
        return fn


def _no_backward(_grad: torch.Tensor) -> None:
    raise RuntimeError("genesis block swap: backward through a streamed block is not supported "
                       "(its weights were in a device slot that later blocks reuse); run "
                       "inference under torch.no_grad(), or remove() the block swap to train")


def _forbid_backward(out: Any, depth: int = 0) -> None:
    """Makes a backward through a streamed block's output fail loudly
    instead of using whatever weights its slot holds by then: the tensors
    in it, inside containers, dataclasses and other objects' attributes
    (a few levels down)."""
    if isinstance(out, torch.Tensor):
        if out.requires_grad:
            out.register_hook(_no_backward)
        return
    if depth >= 4:
        return
    if isinstance(out, (tuple, list)):
        inner: Any = out
    elif isinstance(out, dict):
        inner = out.values()
    elif hasattr(out, "__dict__") and not isinstance(out, (nn.Module, type)):
        inner = vars(out).values()
    else:
        return
    for o in inner:
        _forbid_backward(o, depth + 1)


def out_of_memory_errors() -> tuple[type[BaseException], ...]:
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return (oom,)


class BuildError(RuntimeError):
    """A file-backed model's engine could not be built (see BlockSwap)."""


def _version(t: torch.Tensor) -> int:
    """The tensor's in-place change counter; -1 for one made in inference
    mode, which keeps none (a Parameter made there keeps none even after
    its .data is replaced)."""
    try:
        return t._version
    except RuntimeError:
        return -1


def _typed_views(blk: BlockPacking, base: torch.Tensor) -> list[torch.Tensor]:
    """The block's tensors as views of its packed bytes `base`."""
    return [_views.typed_view(base, s.offset, s.nbytes, s.dtype, s.shape, s.stride) for s in blk.slots]


class _Timer:
    """Per-block compute time: CUDA events on a GPU, perf_counter on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.open: dict[int, Any] = {}
        self.spans: list[tuple[Any, Any]] = []
        self.order: list[int] = []

    def start(self, b: int) -> None:
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self.open[b] = ev
        else:
            self.open[b] = time.perf_counter()
        self.order.append(b)

    def stop(self, b: int) -> None:
        start = self.open.pop(b, None)
        if start is None:
            return
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self.spans.append((start, ev))
        else:
            self.spans.append((start, time.perf_counter()))

    def mean_ms(self) -> float:
        if not self.spans:
            return 0.0
        if self.cuda:
            self.spans[-1][1].synchronize()
            total = sum(a.elapsed_time(b) for a, b in self.spans)
        else:
            total = sum((b - a) * 1000.0 for a, b in self.spans)
        return total / len(self.spans)


class BlockSwap:
    """Block swapping applied to one model; remove() undoes it."""

    def __init__(self, model: nn.Module, options: SwapOptions, *, block_attr: str | None = None,
                 device: str | torch.device | None = None, backend: str | None = None,
                 gpu: str | None = None, vram_mb: float | None = None,
                 dram_mb: float | None = None, hardware: HardwareSnapshot | None = None,
                 adaptive: bool = True,
                 max_oom_retries: int = 4, vram_debug_mode: bool = False,
                 log: LogFn | None = None, engine_options: dict[str, Any] | None = None,
                 parked: bool = False) -> None:
        if attached(model) is not None:
            raise ValueError("block swapping is already applied to this model: call .remove() first")
        self.model = model
        self.options = options
        self.device = resolve_device(device)
        self.backend = backend or ("cuda" if self.device.type == "cuda" else "host")
        if self.backend == "cuda" and self.device.type != "cuda":
            raise ValueError("backend='cuda' needs a CUDA device")
        self.adaptive = adaptive
        self.max_oom_retries = max_oom_retries
        self.debug = vram_debug_mode
        self.log: LogFn = log or print
        self.engine_options = dict(engine_options or {})
        self.active = False  # the engine runs the blocks
        self.parked = False  # off the GPU until unpark() or the next forward (see park)
        self.forwards = 0
        self.oom_retries = 0
        self.engine_builds = 0
        self.embedder_moves = 0
        self.replans: list[dict[str, Any]] = []
        self.measured_block_ms = 0.0
        self.fallback_reason = ""
        self.engine_errors = 0
        self._broken = ""  # weights lost (see _materialize): every forward raises
        self._held: set[int] = set()  # streamed blocks acquired by a pre-hook, not yet released
        # What engines destroyed since gave: bytes copied, and the last one's
        # stats and, when it was parked, timeline (a parked swap still
        # reports its run).
        self._bytes_retired = 0
        self._retired: tuple[dict[str, Any], list[dict[str, Any]]] | None = None
        self._lock = threading.RLock()  # one forward at a time: the slots are shared
        self._versions: dict[int, list[int]] = {}  # streamed block -> its host tensors' versions
        self._acquired = 0  # streamed blocks acquired in the current forward
        self._warned_no_acquire = False
        # acquired block -> its slot views and their versions
        self._in_slot: dict[int, tuple[list[torch.Tensor], list[int]]] = {}

        # Everything that can fail on bad input happens before the model is touched.
        self.packing: ModelPacking = pack_model(model, block_attr)
        # blocks whose weights were made in inference mode (see _view_mode)
        self._inference_blocks = {b.index for b in self.packing.blocks
                                  if any(s.is_param and s.get().is_inference() for s in b.slots)}
        unsupported = unsupported_tensors(self.packing)
        if unsupported:
            raise ValueError(f"block swapping cannot hold this model's blocks: {unsupported[0]}")
        containers = blocks_without_forward(self.packing)
        if containers:
            raise ValueError(f"blocks {containers} of {self.packing.block_attr} have no forward of their "
                             "own (containers of modules): block swapping runs through each block's "
                             "forward; pass block_attr= a list whose items the model calls")
        shared = shared_tensors(model, self.packing)
        if shared:
            more = f" (and {len(shared) - 1} more)" if len(shared) > 1 else ""
            raise ValueError(f"block swapping needs each block to own its tensors: {shared[0]}"
                             f"{more}; untie them, or leave this model unswapped")
        options.validate(self.packing.main_count, self.packing.vace_count)
        # hardware: a generation's snapshot (one probe; it may hold the plan
        # the seed's step 2 made for this model), used when it was taken for
        # the same gpu / vram_mb / device / dram_mb.
        snapshot = HardwareSnapshot.reuse(hardware, gpu, vram_mb, self.device.index or 0, dram_mb)
        self.hw, self.gpu_index, self.host_mode = snapshot.hw, snapshot.index, snapshot.host_mode
        # A file-backed model (genesis.loading): the blocks' bytes are in a
        # model file, the layout is that file's, the block tensors are
        # placeholders.
        from .loading import file_source

        self.source: FileSource | None = file_source(model)
        source = self.source
        if source is not None:
            source.adopt(self.packing)
            self.layout = source.layout
        else:
            self.layout = layout_for_model(self.packing, type(model).__name__)
        self.plan_kwargs = options.plan_kwargs(self.gpu_index)
        self.plan = snapshot.plan(self.layout, **self.plan_kwargs)

        self.engine: Engine | None = None
        self._streamed: set[int] = set()
        self._host_views: dict[int, list[torch.Tensor]] = {}  # streamed: views of host regions
        self._parked: set[int] = set()  # disk-tier blocks: placeholders
        self._device_addr: dict[int, int] = {}  # CUDA resident blocks
        self._slot_views: dict[tuple[int, int], list[torch.Tensor]] = {}
        self._timer: _Timer | None = _Timer(self.device) if adaptive else None
        self._block_hooks: dict[int, list[Any]] = {}
        self._orig_device = (source.rest_device if source is not None else
                             next((t.device for t in model.parameters()), torch.device("cpu")))
        self._offload = self._offloaded_embedders()

        if self.debug:
            self.log(self.plan.explain("zh"))
        if parked:  # planned now, built when its turn comes (see park)
            self.parked = True
            if source is None:
                model.to("cpu")  # blocks included: off the GPU until its turn
            else:
                self._move_rest(torch.device("cpu"))
        else:
            self._build_engine(self.plan)
            self._move_rest(self.device)
        self._sync_hooks()
        self._orig_forward = model.forward
        self._instance_forward = model.__dict__.get("forward")  # a wrapper someone installed
        model.forward = _dynamo_disable(self._forward, recursive=False)
        self._instance_apply = model.__dict__.get("_apply")
        model._apply = self._apply_to_rest  # type: ignore[method-assign]
        names = {id(m): n for n, m in model.named_modules()}
        # (a block of an inner model the model does not register has only its own hook)
        self._state_hooks = [model.register_load_state_dict_pre_hook(self._load_hook(
            [(b, names[id(b.module)] + ".") for b in self.packing.blocks if id(b.module) in names]))]
        for blk in self.packing.blocks:
            self._state_hooks += [blk.module.register_load_state_dict_pre_hook(self._load_hook([(blk, "")])),
                                  blk.module.register_state_dict_post_hook(self._state_dict_hook(blk))]
        setattr(model, _ATTACHED, self)

    def _state_dict_hook(self, blk: BlockPacking) -> Callable[..., None]:
        """An engine-held block's state_dict() entries are CPU copies: its
        tensors are views of libvram's memory, which goes with the engine
        (remove, park, a re-plan) while the dict may live on; a block on the
        disk tier is read back (the model file, or through a slot). Blocks
        holding torch's own tensors give them as usual; keep_vars=True gives
        the Parameters themselves. Edit the model (or load_state_dict), not
        the copies."""
        module_names: dict[int, list[str]] = defaultdict(list)  # a module held twice: both names
        for mod_name, mod in blk.module.named_modules(remove_duplicate=False):
            module_names[id(mod)].append(mod_name)
        slot_of = {f"{n}.{a}".lstrip("."): i for i, s in enumerate(blk.slots)
                   for m, a in s.owners for n in module_names[id(m)]}

        def hook(_module: nn.Module, state_dict: dict[str, Any], prefix: str, _meta: Any) -> None:
            # Under the lock, from the engine's copy: torch read the entries
            # before, maybe mid-forward in another thread (a slot's bytes).
            with self._lock:
                host = self._host_views.get(blk.index)
                on_disk = blk.index in self._parked or (self.source is not None and not self.active)
                real: list[torch.Tensor] | None = None
                for key, value in list(state_dict.items()):
                    i = slot_of.get(key[len(prefix):]) if key.startswith(prefix) else None
                    if i is None or isinstance(value, nn.Parameter):
                        continue
                    current = blk.slots[i].get()
                    if host is not None and current.data_ptr() != host[i].data_ptr() and \
                            blk.index not in self._held:  # new data of its own kind (see above)
                        state_dict[key] = current.detach().to("cpu", copy=True)
                    elif host is not None:
                        state_dict[key] = host[i].clone()
                    elif blk.index in self._device_addr:
                        state_dict[key] = current.to("cpu", copy=True)
                    elif on_disk and is_placeholder(current):
                        if real is None:
                            real = self._read_back(blk)
                        state_dict[key] = real[i]
        return hook

    def _read_back(self, blk: BlockPacking) -> list[torch.Tensor]:
        """CPU copies of a disk-tier block's tensors."""
        if self.source is not None:
            names = self.source.block_names(blk)
            loaded = self.source.read(names, torch.device("cpu"))
            return [loaded[n] for n in names]
        return self._slot_copy(blk)

    def _load_hook(self, scope: list[tuple[BlockPacking, str]]) -> Callable[..., None]:
        """Refuses, before anything is loaded, what load_state_dict cannot
        do to a swapped model's blocks (scope: each block and its key prefix
        under the hooked module): assign=True (it would replace the
        Parameters that point at libvram's memory, and the values would be
        lost), blocks of a file-backed model (read from the file again at
        park and remove), and blocks on the disk tier (their placeholders
        take no values). A plain load into engine-held blocks copies into
        their host copies; tensors outside the blocks load as usual."""
        def hook(_module: nn.Module, state_dict: Any, prefix: str, local_metadata: dict[str, Any],
                 *_rest: Any) -> None:
            blocks = [b for b, rel in scope if any(k.startswith(prefix + rel) for k in state_dict)]
            if not blocks:
                return
            if local_metadata.get("assign_to_params_buffers"):
                raise ValueError("load_state_dict(assign=True) is not possible on a block-swapped "
                                 "model: use assign=False (the values are copied in), or call "
                                 ".remove() first")
            if self.source is not None:
                raise ValueError("load_state_dict is not possible on a file-backed model: its blocks "
                                 "come from the model file again at park and remove; save the weights "
                                 "to a file and load that, or load the model whole")
            on_disk = [b.index for b in blocks if any(is_placeholder(s.get()) for s in b.slots)]
            if on_disk:
                raise ValueError(f"load_state_dict is not possible while blocks {on_disk} are on the "
                                 "disk tier (read from the model or spill file at each use): call "
                                 ".remove() first")
        return hook

    def __copy__(self) -> Any:
        raise TypeError("a block-swapped model cannot be copied (its weights live in libvram's "
                        "engine): copy it before apply_block_swap, or after .remove()")

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return self.__copy__()

    def __reduce__(self) -> Any:
        return self.__copy__()

    # ---- planning -------------------------------------------------------

    def _offloaded_embedders(self) -> list[nn.Module]:
        roles = [r for r, on in (("text", self.options.offload_txt_emb),
                                 ("image", self.options.offload_img_emb)) if on]
        return [self.packing.embedders[r] for r in roles if r in self.packing.embedders]

    def _replan(self, **changes: Any) -> Plan:
        self.plan_kwargs.update(changes)
        return Plan.create(self.layout, self.hw, **self.plan_kwargs)

    # ---- the engine -----------------------------------------------------

    def _build_engine(self, plan: Plan) -> None:
        """Creates the engine for `plan` and moves the blocks' weights into it
        (from the model's tensors, or from the model file with a source).
        On failure the model keeps (or gets back) its own tensors and runs
        unswapped, with a warning; with a source it raises BuildError (the
        file's weights are never loaded whole behind the user's back)."""
        streamed = set(plan.streamed_blocks())
        from_file = self.source is not None
        try:
            engine = Engine.create(plan, self.layout, backend=self.backend,
                                   device=self.device.index or 0, **self.engine_options)
        except VramError as e:
            self._fall_back(f"libvram could not create the engine ({e})", e)
            return
        try:
            if from_file:
                engine.load_files()  # streamed and resident blocks; disk tier stays in the file
            host_views: dict[int, list[torch.Tensor]] = {}
            addrs: dict[int, int] = {}
            parked: set[int] = set()
            for blk in self.packing.blocks:
                held = blk.index in streamed or from_file or self.backend == "cuda"
                if not held:
                    continue  # host backend: resident blocks keep torch's tensors
                self._check_size(engine, blk)
                if not from_file:
                    self._write(engine, blk)
                if blk.index in streamed:
                    ptr = engine.host_ptr(blk.index)
                    if ptr:
                        with self._view_mode(blk):  # may be built in a forward
                            host_views[blk.index] = _typed_views(blk, _views.byte_view(
                                ptr, blk.packed_bytes, torch.device("cpu")))
                    else:  # disk tier: spill file or model file, no host region
                        parked.add(blk.index)
                else:
                    addrs[blk.index] = engine.acquire(blk.index, self._stream())
                    engine.release(blk.index, self._stream())
        except VramError as e:
            engine.destroy()
            self._fall_back(f"libvram could not fill the engine ({e})", e)
            return
        except BaseException:  # a cancel, torch out of memory: the model is as it was
            engine.destroy()
            raise
        # Committed: from here on the weights live in the engine.
        self.engine, self.plan = engine, plan
        self._streamed, self._host_views, self._device_addr = streamed, host_views, addrs
        self._parked = parked
        self._slot_views.clear()
        self._versions.clear()
        for blk in self.packing.blocks:
            if blk.index in host_views:
                self._point_host(blk)
            elif blk.index in addrs:
                with self._view_mode(blk):
                    self._point(blk, _typed_views(blk, _views.byte_view(
                        addrs[blk.index], blk.packed_bytes, self._engine_device())))
            elif blk.index in parked:
                self._park(blk)
        engine.reset_stats()
        self.engine_builds += 1
        self.active = True
        _LIVE.add(self)

    def _engine_device(self) -> torch.device:
        """Where the engine's device addresses live (RAM on the host backend)."""
        return self.device if self.backend == "cuda" else torch.device("cpu")

    @staticmethod
    def _check_size(engine: Engine, blk: BlockPacking) -> None:
        have = engine.block_bytes(blk.index)
        if have < blk.packed_bytes:
            raise StateError(_ffi.E_STATE, f"block {blk.index}: engine region {have} bytes < "
                             f"packed {blk.packed_bytes}", "vram_engine_block_bytes")

    @staticmethod
    def _write(engine: Engine, blk: BlockPacking) -> None:
        for s in blk.slots:
            if s.nbytes == 0:
                continue
            src = s.get().detach()
            if s.stride is not None:  # its memory as it lies (see TensorSlot.stride)
                src = src.as_strided((src.numel(),), (1,))
            if src.device.type != "cpu":
                src = src.cpu()
            src = src.contiguous()
            engine.write(blk.index, s.offset, src.data_ptr(), s.nbytes)

    @staticmethod
    def _point(blk: BlockPacking, views: list[torch.Tensor]) -> None:
        for s, v in zip(blk.slots, views):
            s.set(v)

    def _view_mode(self, blk: BlockPacking) -> Any:
        """Tensors over engine memory are made as the block's weights were:
        in inference mode for weights made there (they compute only there),
        otherwise outside it, whatever mode the forward making them runs in."""
        return torch.inference_mode(blk.index in self._inference_blocks)

    def _point_host(self, blk: BlockPacking) -> None:
        """Points a streamed block at its host region and notes its tensors'
        versions: an in-place change after this (load_state_dict, a merged
        LoRA) makes the slot copy stale (_refresh)."""
        self._point(blk, self._host_views[blk.index])
        self._versions[blk.index] = [_version(s.get()) for s in blk.slots]

    def _refresh(self, blk: BlockPacking) -> None:
        """Before a streamed block's acquire: if its host tensors changed in
        place since they were pointed at, the engine copies them again; a
        parameter given new data (param.data = t, as some LoRA merges do) has
        it copied into the host region first."""
        if blk.index in self._parked and any(self._given_by_user(s) for s in blk.slots):
            raise ValueError(f"block {blk.index} was given new weights while on the disk tier "
                             "(read from the model or spill file at each use): call .remove() "
                             "first, or load them into the model before apply_block_swap")
        seen = self._versions.get(blk.index)
        if seen is None:
            return
        replaced = self._take_replaced_data(blk, strict=True)
        if replaced or any(_version(s.get()) != v for s, v in zip(blk.slots, seen)):
            assert self.engine is not None
            self.engine.invalidate(blk.index)
            self._versions[blk.index] = [_version(s.get()) for s in blk.slots]

    def _replaced(self, blk: BlockPacking) -> list[int]:
        """A streamed block's parameters given new data since they were
        pointed at its host region (param.data = t)."""
        return [i for i, (s, v) in enumerate(zip(blk.slots, self._host_views[blk.index]))
                if s.is_param and s.get().data_ptr() != v.data_ptr()]

    def _take_replaced_data(self, blk: BlockPacking, strict: bool) -> bool:
        """Copies into a streamed block's host region the parameters given
        new data since they were pointed at it; True when there were any.
        New data of another dtype or shape cannot stream: strict (a forward)
        raises, otherwise it stays the parameter's (remove, state_dict)."""
        host = self._host_views[blk.index]
        replaced = self._replaced(blk)
        for i in replaced:
            new, s = blk.slots[i].get().detach(), blk.slots[i]
            if new.dtype != s.dtype or tuple(new.shape) != s.shape:
                if not strict:
                    continue
                raise ValueError(f"block {blk.index} {s.name} was given {new.dtype} {list(new.shape)} "
                                 f"data; block swapping holds it as {s.dtype} {list(s.shape)}")
            with torch.no_grad():
                host[i].copy_(new)
            s.set(host[i])
        return bool(replaced)

    def _given_by_user(self, s: Any) -> bool:
        """A disk-tier block's parameter holds a tensor the user gave it: not
        its placeholder, not empty, not a view of a slot."""
        t = s.get()
        if not s.is_param or s.nbytes == 0 or is_placeholder(t):
            return False
        return all(t.data_ptr() != v.data_ptr() for views in self._slot_views.values() for v in views)

    def refresh(self) -> None:
        """Tells the engine that weights changed where tensor versions do
        not show it (in place through .data): every streamed block is copied
        again at its next use."""
        with self._lock:
            if self.engine is not None and self.active:
                for b in self._streamed:
                    self.engine.invalidate(b)

    def _keep_buffer_updates(self, blk: BlockPacking,
                             in_slot: tuple[list[torch.Tensor], list[int]]) -> None:
        """After a streamed block's forward: buffers it changed in place (a
        norm's running statistics) or assigned anew (self.steps = self.steps
        + 1) are copied into its host region, which the block points at
        again after the release (a disk-tier block has no host region: its
        in-place updates are lost)."""
        host = self._host_views.get(blk.index)
        views, versions = in_slot
        for i, (s, view, before) in enumerate(zip(blk.slots, views, versions)):
            now = s.get()
            if s.is_param or (now is view and _version(now) == before):
                continue
            if now.dtype != s.dtype or tuple(now.shape) != s.shape:
                raise ValueError(
                    f"block {blk.index} replaced its buffer {s.name} ({s.dtype} {list(s.shape)}) with "
                    f"{now.dtype} {list(now.shape)} in its forward: block swapping holds a block's "
                    "tensors at fixed sizes; keep that buffer outside the blocks, or leave this "
                    "model unswapped")
            if host is not None:
                with torch.no_grad():
                    host[i].copy_(now)

    @staticmethod
    def _park(blk: BlockPacking) -> None:
        """Placeholders for a block whose bytes are on disk (see placeholder)."""
        for s in blk.slots:
            s.set(placeholder(s.dtype, s.shape))

    def _slot_copy(self, blk: BlockPacking) -> list[torch.Tensor]:
        """CPU copies of a streamed block's tensors, through a slot."""
        assert self.engine is not None
        addr = self.engine.acquire(blk.index, self._stream())
        try:
            base = _views.byte_view(addr, blk.packed_bytes, self._engine_device())
            return [v.to("cpu", copy=True) for v in _typed_views(blk, base)]
        finally:
            self.engine.release(blk.index, self._stream())

    def _materialize(self) -> None:
        """Gives every engine-held tensor its own torch storage again (CPU).
        With a source nothing is copied: the blocks are parked and their
        bytes stay in the model file. A block whose bytes cannot be read
        back (its spill-file copy through a failing engine) is parked, never
        left pointing into the engine, and the error is raised at the end."""
        failed: list[str] = []
        for blk in self.packing.blocks:
            # the copies outlive a generation's inference mode (weights made in it keep it)
            with self._view_mode(blk):
                self._materialize_block(blk, failed)
        self._host_views, self._device_addr, self._slot_views = {}, {}, {}
        self._versions, self._in_slot = {}, {}
        self._streamed, self._parked = set(), set()
        if failed:
            self._broken = ("genesis block swap: the weights of some blocks could not be read back "
                            "from the engine (they hold zeros now): " + "; ".join(failed))
            raise RuntimeError(self._broken)

    def _materialize_block(self, blk: BlockPacking, failed: list[str]) -> None:
        """_materialize for one block; a failure is parked and noted in `failed`."""
        held = (blk.index in self._host_views or blk.index in self._device_addr
                or blk.index in self._parked)
        if not held:
            return
        if self.source is not None:
            self._park(blk)
            return
        try:
            if blk.index in self._parked:
                # new weights a user gave a disk-tier block stay theirs
                kept = [s.get() if self._given_by_user(s) else None for s in blk.slots]
                copies = [k if k is not None else t for k, t in zip(kept, self._slot_copy(blk))]
            else:
                kept = [None] * len(blk.slots)
                if blk.index in self._host_views:
                    self._take_replaced_data(blk, strict=False)
                    for i in self._replaced(blk):  # new data of another kind stays the parameter's
                        kept[i] = blk.slots[i].get()
                views = self._host_views.get(blk.index)
                if views is None:
                    views = _typed_views(blk, _views.byte_view(
                        self._device_addr[blk.index], blk.packed_bytes, self._engine_device()))
                copies = [k if k is not None else v.to("cpu", copy=True) for k, v in zip(kept, views)]
        except Exception as e:  # noqa: BLE001 - any failure: park, report at the end
            self._park(blk)
            failed.append(f"block {blk.index}: {e}")
            return
        for s, t in zip(blk.slots, copies):
            s.set(t)

    def _destroy_engine(self, keep_timeline: bool = False) -> None:
        """Weights back in torch tensors, then the engine (host regions,
        spill file, device slots) freed, even when the first part fails.
        keep_timeline: its timeline stays readable (parking), which costs a
        read of every entry, so only then."""
        engine, self.active = self.engine, False
        if engine is None:
            return
        try:
            stats = engine.stats()
            self._retired = (stats, engine.timeline() if keep_timeline else [])
            self._bytes_retired += int(stats["bytes_copied"])
        except VramError:
            pass  # a failing engine: its numbers are lost with it
        try:
            self._materialize()
        finally:
            engine.destroy()
            self.engine = None
            _LIVE.discard(self)

    def _retire_engine(self, why: str, keep_timeline: bool = False) -> None:
        """Waits for the engine's copies, then _destroy_engine, and the
        hooks follow; a failing synchronize is logged (destroy still syncs
        the streams it owns)."""
        if self.engine is not None:
            try:
                self.engine.synchronize()
            except VramError as e:
                logger.warning("genesis block swap: engine synchronize failed on %s: %s", why, e)
        try:
            self._destroy_engine(keep_timeline)
        finally:
            self._sync_hooks()

    def _rebuild(self, plan: Plan) -> None:
        old = self.plan
        self._destroy_engine()
        try:
            self._build_engine(plan)
        except BuildError:
            logger.warning("genesis block swap: the new plan's engine failed; keeping the old plan")
            self._build_engine(old)  # raises when the plan that worked fails too
        if self.active and self.device.type == "cuda":
            torch.cuda.empty_cache()
        self._sync_hooks()

    def _engine_failed(self, error: VramError) -> None:
        """libvram failed inside a forward (see the module docstring): the
        weights come back into torch tensors, the engine goes, and the model
        runs unswapped (a file-backed model: from a fresh engine)."""
        self.engine_errors += 1
        reason = f"libvram failed during a forward ({error})"
        self.replans.append({"reason": "engine_error", "error": str(error),
                             "streamed_count": 0, "placement_changed": True})
        try:
            if self.engine is not None:
                try:
                    self.engine.synchronize()  # no copy may still read a host region
                except VramError:
                    pass  # the engine is failing anyway; destroy syncs its streams
            self._destroy_engine()
        finally:
            self._sync_hooks()
        if self.source is not None:
            self._warn(f"genesis block swap: {reason}; reading the blocks from the model file again")
            self._build_engine(self.plan)  # raises BuildError if that fails too
            self._sync_hooks()
            return
        self._fall_back(reason, error)

    def _fall_back(self, reason: str, error: BaseException | None = None) -> None:
        if self.source is not None:
            raise BuildError(f"genesis block swap: {reason}") from error
        self.fallback_reason = reason
        self._warn(f"genesis block swap: {reason}; running the model unswapped")
        self.active = False
        self._whole_to_device()

    def _whole_to_device(self) -> None:
        """Fallen back to unswapped: the whole model on the device, if it fits."""
        if self.device.type == "cuda":
            try:
                self.model.to(self.device)
            except out_of_memory_errors() as e:
                logger.warning("genesis block swap: the unswapped model does not fit either: %s", e)

    def _warn(self, msg: str, warn: bool = True) -> None:
        """To the logger, the debug log and (warn) as a RuntimeWarning."""
        if warn:
            warnings.warn(msg, RuntimeWarning, stacklevel=4)
        logger.warning(msg)
        if self.debug:
            self.log("[VRAM] " + msg)

    def _stream(self) -> int | None:
        if self.backend == "cuda":
            return int(torch.cuda.current_stream(self.device).cuda_stream)
        return None

    # ---- placement of what is not a block -------------------------------

    def _block_tensor_ids(self) -> set[int]:
        ids: set[int] = set()
        for blk in self.packing.blocks:
            ids.update(id(t) for t in list(blk.module.parameters()) + list(blk.module.buffers()))
        return ids

    def _move_rest(self, device: torch.device) -> None:
        """Moves parameters and buffers outside the blocks (and outside the
        offloaded embedders, which move per forward) to `device`."""
        skip = self._block_tensor_ids()
        for m in self._offload:
            skip.update(id(t) for t in list(m.parameters()) + list(m.buffers()))
        for mod in self.model.modules():
            for name, p in list(mod._parameters.items()):
                if p is not None and id(p) not in skip and p.device != device:
                    p.data = p.data.to(device)
            for name, b in list(mod._buffers.items()):
                if b is not None and id(b) not in skip and b.device != device:
                    mod._buffers[name] = b.to(device)

    def _embedders_to(self, device: torch.device | str) -> None:
        for m in self._offload:
            m.to(device)
            self.embedder_moves += 1

    def _apply_to_rest(self, fn: Callable[[torch.Tensor], torch.Tensor],
                       recurse: bool = True) -> nn.Module:
        """model.to() / .cuda() / .half() while swapped (nn.Module routes
        them all through _apply). The blocks' bytes belong to the engine:
        a call that would change their dtype or device is refused before
        anything moves; one that leaves them be (pipe.to("cuda") on a model
        swapped to cuda) applies to the rest only, where copying the
        streamed blocks' host views to the device would defeat swapping.
        Fallen back to unswapped (no engine, weights of its own), the model
        takes the call whole."""
        if self.engine is None and self.source is None and (self.fallback_reason or not self.parked):
            return type(self.model)._apply(self.model, fn, recurse)
        block_dtypes = {s.dtype for blk in self.packing.blocks for s in blk.slots}
        for dtype in sorted(block_dtypes, key=str):
            probe = fn(torch.empty(0, dtype=dtype, device=self.device))
            if probe.dtype != dtype or probe.device != self.device:
                raise ValueError(
                    f"block swapping holds this model's blocks as {dtype} on {self.device}; "
                    f"moving or converting them (to {probe.dtype} on {probe.device}) is not "
                    f"possible while swapped: call .remove() first, or convert the model "
                    f"before apply_block_swap")
        in_blocks = {id(m) for blk in self.packing.blocks for m in blk.module.modules()}
        for mod in self.model.modules() if recurse else [self.model]:
            if id(mod) not in in_blocks:
                type(mod)._apply(mod, fn, recurse=False)
        return self.model

    # ---- hooks ----------------------------------------------------------

    def _sync_hooks(self) -> None:
        """Hooks on the blocks that need them: streamed blocks, and every
        block while the adaptive timer waits for the first forward."""
        if self._timer is not None:
            want = {b.index for b in self.packing.blocks}
        else:
            want = set(self._streamed) if self.active else set()
        for blk in self.packing.blocks:
            have = self._block_hooks.get(blk.index)
            if blk.index in want and have is None:
                pre = _dynamo_disable(self._make_pre(blk))
                post = _dynamo_disable(self._make_post(blk))
                self._block_hooks[blk.index] = [blk.module.register_forward_pre_hook(pre),
                                                blk.module.register_forward_hook(post)]
            elif blk.index not in want and have is not None:
                for h in self._block_hooks.pop(blk.index):
                    h.remove()

    def _make_pre(self, blk: BlockPacking) -> Callable[..., None]:
        def pre(_module: nn.Module, _args: Any) -> None:
            if self.active and blk.index in self._streamed:
                assert self.engine is not None
                self._refresh(blk)
                addr = self.engine.acquire(blk.index, self._stream())
                self._held.add(blk.index)
                self._acquired += 1
                views = self._slot_views.get((blk.index, addr))
                if views is None:
                    with self._view_mode(blk):  # they outlive this forward
                        views = self._slot_views[(blk.index, addr)] = _typed_views(
                            blk, _views.byte_view(addr, blk.packed_bytes, self._engine_device()))
                self._point(blk, views)
                self._in_slot[blk.index] = (views, [_version(v) for v in views])
            if self._timer is not None:  # compute only, after the copy wait
                self._timer.start(blk.index)
        return pre

    def _make_post(self, blk: BlockPacking) -> Callable[..., None]:
        def post(_module: nn.Module, _args: Any, _out: Any) -> None:
            if self._timer is not None:
                self._timer.stop(blk.index)
            if self.active and blk.index in self._streamed:
                self._release(blk)
                if torch.is_grad_enabled():
                    _forbid_backward(_out)
        return post

    def _release(self, blk: BlockPacking) -> None:
        """Ends a streamed block's forward: its slot may be reused, and its
        parameters point at its host region again (or at placeholders)."""
        assert self.engine is not None
        self._held.discard(blk.index)
        in_slot = self._in_slot.pop(blk.index, None)
        try:
            try:
                if in_slot is not None:
                    self._keep_buffer_updates(blk, in_slot)
            finally:
                self.engine.release(blk.index, self._stream())
        finally:  # never left acquired or pointing into a slot
            if blk.index in self._host_views:
                self._point_host(blk)
            else:
                self._park(blk)

    def _release_held(self) -> None:
        """After an exception inside blocks (their post-hooks never ran):
        releases what the pre-hooks acquired, so the next forward starts
        clean instead of finding the blocks still acquired."""
        held, self._held = self._held, set()
        if self.engine is None or not self.active:
            return
        for blk in self.packing.blocks:
            if blk.index in held:
                try:
                    self._release(blk)
                except VramError as e:  # the engine is rebuilt on its next error
                    logger.warning("genesis block swap: releasing block %d after an error: %s",
                                   blk.index, e)

    def _forward(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._forward_locked(*args, **kwargs)

    def _forward_locked(self, *args: Any, **kwargs: Any) -> Any:
        if self._broken:
            raise RuntimeError(self._broken)
        self.unpark()
        self._embedders_to(self.device)
        engine_errors = 0
        self._acquired = 0
        try:
            while True:
                try:
                    out = self._orig_forward(*args, **kwargs)
                    break
                except BaseException as e:  # a cancel or a user's error too
                    self._release_held()
                    if isinstance(e, out_of_memory_errors()) and self._stream_more(e):
                        continue
                    # Only our hooks call libvram in a forward. One recovery
                    # per forward: a fresh engine failing again is not retried.
                    if not isinstance(e, VramError) or not self.active or engine_errors:
                        raise
                    engine_errors += 1
                    self._engine_failed(e)
        finally:
            self._embedders_to("cpu")
        self.forwards += 1
        if self.active and self._streamed and not self._acquired and not self._warned_no_acquire:
            self._warned_no_acquire = True
            logger.warning("genesis block swap: a forward ran without calling any streamed block's "
                           "forward (blocks %s): a model that calls parts of its blocks directly "
                           "runs them on host copies or placeholders, not through libvram; pass "
                           "block_attr= the modules the model calls", sorted(self._streamed))
        if self._timer is not None:
            self._after_first_forward()
        return out

    # ---- adaptive -------------------------------------------------------

    def _after_first_forward(self) -> None:
        timer, self._timer = self._timer, None
        assert timer is not None
        self._sync_hooks()  # timing done: resident blocks lose their hooks
        self.measured_block_ms = timer.mean_ms()
        if not self.active or self.measured_block_ms <= 0:
            return
        order = list(dict.fromkeys(timer.order))
        old = self.plan.placement()
        plan = self._replan(measured_block_ms=self.measured_block_ms)
        changed = plan.placement() != old
        self.replans.append({"reason": "measured_block_ms", "measured_block_ms":
                             self.measured_block_ms, "placement_changed": changed,
                             "streamed_count": plan.summary()["streamed_count"]})
        if self.debug:
            self.log(f"[VRAM] 实测每块计算: {self.measured_block_ms:.2f} ms; 重新规划"
                     f"{'改变了放置，重建引擎' if changed else '未改变放置'}")
        if changed:
            self._rebuild(plan)
        else:
            self.plan = plan
        if self.engine is not None and order and order != sorted(order):
            self.engine.set_order(order)  # the blocks' execution order, as timed

    def _stream_more(self, error: BaseException) -> bool:
        """After an out-of-memory error: rebuild with a plan that streams more
        blocks (libvram's policy: vram_plan_stream_more). False when nothing
        more can stream."""
        if self.oom_retries >= self.max_oom_retries or not self.active:
            return False
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        try:
            plan = self.plan.stream_more()
        except VramError as e:
            logger.warning("genesis block swap: out of memory, and no plan streams more: %s", e)
            return False
        current = self.plan.summary()["streamed_count"]
        # Against our own options: a plan shared with the seed's step 2 holds
        # other values of the options auto mode does not read.
        mine = make_options(**self.plan_kwargs).to_dict()
        self.plan_kwargs.update({k: v for k, v in plan.options().items() if mine.get(k) != v})
        self.oom_retries += 1
        new = plan.summary()["streamed_count"]
        msg = (f"genesis block swap: out of memory in a forward ({str(error).splitlines()[0]}); "
               f"streaming {new} blocks instead of {current} and retrying")
        self._warn(msg, warn=False)
        self.replans.append({"reason": "out_of_memory", "streamed_count": new,
                             "placement_changed": True})
        self._rebuild(plan)
        return self.active

    # ---- public ---------------------------------------------------------

    def park(self) -> None:
        """Takes the model off the GPU between its turns (Wan2.2's experts
        denoise one after the other; genesis.phases parks the one not
        running): the engine goes, with its device memory and pinned
        regions; the blocks' weights go back into torch tensors on the CPU
        (a file-backed model's stay in the model file, as placeholders); the
        rest moves to the CPU. The plan stays: unpark(), or the next
        forward, builds the engine for it again. A swap that fell back to
        running unswapped moves the whole model to the CPU."""
        # Outside inference mode: the weights given back outlive the generation.
        with self._lock, torch.inference_mode(False):
            if self.parked or attached(self.model) is not self:
                return
            if self.engine is not None:
                self._retire_engine("park", keep_timeline=True)
            elif self.source is None:  # unswapped after a fallback: all of it moves
                self.model.to("cpu")
            self._move_rest(torch.device("cpu"))
            self.parked = True
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def unpark(self) -> None:
        """Puts a parked model back on the GPU: the engine is built for the
        plan again (a file-backed model reads its blocks from the file).
        On failure the swap stays parked and the error is raised (a model
        that is not file-backed falls back to running unswapped, as when
        it was first applied)."""
        with self._lock, torch.inference_mode(False):
            if not self.parked:
                return
            self.parked = False  # a fallback in the build moves the whole model
            if self.fallback_reason:
                self._whole_to_device()
                return
            try:
                self._build_engine(self.plan)
            except BaseException:
                self.parked = True
                raise
            self._sync_hooks()
            self._move_rest(self.device)

    @property
    def swapping(self) -> bool:
        """The engine runs the blocks, or will at the model's next turn."""
        return self.active or (self.parked and not self.fallback_reason)

    @property
    def streamed_blocks(self) -> list[int]:
        if self.parked and self.swapping:  # as planned for its next turn
            return self.plan.streamed_blocks()
        return sorted(self._streamed)

    def _disk_blocks(self) -> list[int]:
        if self.parked and self.swapping:
            return [b["block"] for b in self.plan.blocks() if b["tier_name"] == "disk"]
        return sorted(self._parked)

    def stats(self) -> dict[str, Any]:
        """Plan summary, per-block plan, engine stats, the per-block
        timeline (list of dicts) and what the adaptive loop did."""
        with self._lock:  # not while a forward in another thread rebuilds the engine
            return self._stats_locked()

    def _stats_locked(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "active": self.active,
            "parked": self.parked,
            "fallback_reason": self.fallback_reason,
            "backend": self.backend,
            "device": str(self.device),
            "plan": self.plan.summary(),
            "blocks": self.plan.blocks(),
            "streamed_blocks": self.streamed_blocks,
            "disk_blocks": self._disk_blocks(),
            "file_backed": self.source is not None,
            "forwards": self.forwards,
            "measured_block_ms": self.measured_block_ms,
            "replans": list(self.replans),
            "oom_retries": self.oom_retries,
            "engine_errors": self.engine_errors,
            "hooked_blocks": sorted(self._block_hooks),
            "engine_builds": self.engine_builds,
            "embedder_moves": self.embedder_moves,
            "offloaded_embedders": len(self._offload),
        }
        out["engine"] = self._engine_stats()
        if self.engine is not None:
            out["timeline"] = self.engine.timeline()
        else:
            out["timeline"] = (list(self._retired[1]) if self.parked and self.swapping
                               and self._retired else [])
        return out

    def _engine_stats(self) -> dict[str, Any] | None:
        """The engine's stats; parked, the last engine's before parking."""
        if self.engine is not None:
            return self.engine.stats()
        return self._retired[0] if self.parked and self.swapping and self._retired else None

    def report(self) -> dict[str, Any]:
        """The numbers a run's metadata shows: predicted vs streamed."""
        with self._lock:  # the engine and the retired bytes of one moment
            s = self.plan.summary()
            e = self._engine_stats() or {}
            live = e["bytes_copied"] if self.engine is not None else 0
            retired = self._bytes_retired
        return {
            "plan": s,
            "predicted_step_ms": s["predicted_step_ms"],
            "predicted_forward_ms": s["predicted_forward_ms"],
            "measured_block_ms": self.measured_block_ms,
            # every engine's since apply (a re-plan or parking replaces it)
            "bytes_streamed": retired + live,
            "overlap_ratio": e.get("overlap_ratio"),
            "streamed_count": s["streamed_count"],
            "resident_count": s["resident_count"],
        }

    def explain(self, fmt: str = "zh") -> Any:
        return self.plan.explain(fmt)

    def remove(self, reload: bool = True) -> None:
        """Undoes everything: weights back in torch storage, on the device
        the model had before, hooks removed. A file-backed model (a source)
        with reload=False stays file-backed: its blocks are placeholders
        until block swapping is applied again with the source (no RAM)."""
        with self._lock:  # waits for a forward running in another thread
            self._remove_locked(reload)

    def _remove_locked(self, reload: bool) -> None:
        if attached(self.model) is not self:
            return
        if self.source is not None and reload:
            self.source.check_files()  # a changed file: refused while the swap is still whole
        for h in self._state_hooks:
            h.remove()
        self._timer = None
        self.parked = False
        self._retire_engine("remove")  # inactive, no timer: every hook goes
        if self.source is not None and reload:  # the blocks come back from the model file
            self.source.materialize(self.model, self.packing, self._orig_device)
        for attr, before in (("forward", self._instance_forward), ("_apply", self._instance_apply)):
            if before is not None:
                setattr(self.model, attr, before)
            elif attr in self.model.__dict__:
                delattr(self.model, attr)
        delattr(self.model, _ATTACHED)
        if self.source is not None and not reload:  # placeholders stay as they are
            self._move_rest(self.source.rest_device)
        else:
            self.model.to(self._orig_device)


def attached(model: nn.Module) -> Any:
    """The BlockSwap (or LegacyBlockSwap) applied to `model`, if any."""
    return getattr(model, _ATTACHED, None)


_SWAP_FIELDS = {f.name for f in fields(SwapOptions)}


def apply_block_swap(model: nn.Module, mode: str = "intelligent", **args: Any) -> Any:
    """Applies block swapping to `model`.

    mode="intelligent": libvram plans and streams (BlockSwap). Arguments:
      the seed's vram_threshold_percent, auto_hardware_tuning, blocks_to_swap,
      num_cuda_streams, bandwidth_target, enable_cuda_optimization,
      enable_dram_optimization, offload_txt_emb, offload_img_emb,
      vace_blocks_to_swap, vram_debug_mode; the video size (width, height,
      frames, text_tokens, passes_per_step); block_attr, device, backend,
      gpu / vram_mb (simulate), hardware (a generation's
      genesis.planning.HardwareSnapshot), adaptive, log, parked (plan
      now, build the engine at the first forward or unpark()).
    mode="legacy": kijai's WanVideoBlockSwap (genesis.legacy_blockswap).

    Bad arguments raise ValueError naming the argument and its range, and
    leave the model untouched. Returns a handle with .remove()."""
    if mode == "legacy":
        from .legacy_blockswap import apply_legacy_block_swap

        return apply_legacy_block_swap(model, **args)
    if mode != "intelligent":
        raise ValueError(f"mode={mode!r}: allowed 'intelligent' or 'legacy'")
    swap_args = {k: v for k, v in args.items() if k in _SWAP_FIELDS}
    rest = {k: v for k, v in args.items() if k not in _SWAP_FIELDS}
    if "vram_threshold" in rest:  # the seed's short name
        swap_args.setdefault("vram_threshold_percent", rest.pop("vram_threshold"))
    for legacy_only in ("use_non_blocking", "prefetch_blocks", "block_swap_debug"):
        rest.pop(legacy_only, None)
    return BlockSwap(model, SwapOptions(**swap_args), **rest)


def compile_blocks(model: nn.Module, mode: str | None = None, backend: str = "inductor",
                   block_attr: str | None = None, **kwargs: Any) -> None:
    """torch.compile each block in place (nn.Module.compile), the way block
    swapping expects. CUDA-graph modes (and torch's cudagraphs backend) are
    refused: they capture the addresses of weights that move between slots."""
    options = kwargs.get("options") or {}
    if mode in CUDA_GRAPH_MODES or options.get("triton.cudagraphs") or backend == "cudagraphs":
        raise ValueError(
            f"torch.compile mode={mode!r} backend={backend!r} captures CUDA graphs, which record weight addresses; "
            "streamed blocks change address every step. Use mode=None/'default' or "
            "'max-autotune-no-cudagraphs' with block swapping"
        )
    from .modelinfo import find_blocks, find_vace_blocks

    blocks = list(find_blocks(model, block_attr)[1])
    vace = find_vace_blocks(model)
    if vace is not None:
        blocks += list(vace)
    for b in blocks:
        b.compile(mode=mode, backend=backend, **kwargs)
