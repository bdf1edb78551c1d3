"""Loading a checkpoint straight into block swapping, for a machine whose
RAM is smaller than the checkpoint (32 GB of RAM, a 28 GB Wan 14B file).

    from genesis.loading import load_swapped
    model = load_swapped(lambda: WanTransformer3DModel(**config),
                         "wan2.1_t2v_14B_bf16.safetensors", vram_threshold_percent=50)
    out = model(...)
    attached(model).stats()     # genesis.blockswap.attached: plan, tiers, engine

How: the model is built with its parameters on the meta device (buffers
stay real: non-persistent ones such as RoPE tables are computed in
__init__ and are not in checkpoints; inside a block they are refused, as
every block tensor comes from the file). libvram opens the checkpoint's layout
(a .safetensors file or a *.safetensors.index.json; headers only) and plans
for it; the engine's vram_engine_load_files reads the streamed blocks'
bytes from the file into its host regions (pinned / pageable tiers) and the
resident blocks' into their device placements; disk-tier blocks stay in the
file and are read at each pass. No block is ever a torch tensor of its own:
block parameters are views of engine memory, or zero-memory placeholders
(genesis.modelinfo.placeholder) for the disk tier. Only the weights
outside the blocks (embeddings, head) are read with safetensors, straight
onto the target device. Peak RAM is about those plus the pinned and
pageable tiers, not the checkpoint's size.

Tensor names: the file's own, with ComfyUI's "model.diffusion_model." (or
"diffusion_model.") prefix removed when the module has no such name; for a
diffusers model with single-file support (WanTransformer3DModel), original
checkpoint names (blocks.0.self_attn.q.weight) through diffusers' own name
conversion. Block tensors keep the file's dtype (they are its bytes): with
`dtype` given, a file of another dtype is refused, as are float8 blocks,
which torch layers cannot compute with. The rest takes `dtype` (else the
file's), except modules the model keeps in float32 (diffusers'
_keep_in_fp32_modules), as from_pretrained(torch_dtype=...) does; shapes
must match.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from os import PathLike
from typing import Any, Callable, Iterator

import torch
from torch import nn

from .blockswap import apply_block_swap
from .devices import resolve_device
from .modelinfo import SAFETENSORS_DTYPES, BlockPacking, ModelPacking, placeholder
from .vram import Layout

# As libvram's layout strips them (src/layout.c, model_prefixes).
COMFYUI_PREFIXES: tuple[str, ...] = ("model.diffusion_model.", "diffusion_model.")
FLOAT8 = {d for d in (getattr(torch, n, None) for n in ("float8_e4m3fn", "float8_e5m2")) if d}

_TORCH_DTYPES: dict[str, torch.dtype] = {st: dt for dt, st in SAFETENSORS_DTYPES.items()}

Owner = tuple[nn.Module, str, bool]  # (module, attribute, is_parameter)


@contextlib.contextmanager
def empty_weights() -> Iterator[None]:
    """Parameters registered inside go to the meta device (initialisers
    then run on meta: no compute, no memory); buffers stay real."""
    register = nn.Module.register_parameter

    def to_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        register(module, name, param)
        p = module._parameters.get(name)
        if p is not None and p.device.type != "meta":
            module._parameters[name] = type(p)(p.to("meta"), requires_grad=p.requires_grad)

    nn.Module.register_parameter = to_meta  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        nn.Module.register_parameter = register  # type: ignore[method-assign]


def _persistent_buffer(owner: Owner) -> bool:
    """A buffer that load_state_dict(strict=True) would ask the file for."""
    mod, attr, is_param = owner
    return not is_param and attr not in mod._non_persistent_buffers_set


def _owners(model: nn.Module) -> dict[str, list[Owner]]:
    """Every qualified parameter/buffer name -> all places holding that
    tensor (tied weights: several)."""
    by_id: dict[int, list[Owner]] = defaultdict(list)
    names: dict[str, int] = {}
    for mod_name, mod in model.named_modules(remove_duplicate=False):
        for is_param, table in ((True, mod._parameters), (False, mod._buffers)):
            for attr, t in table.items():
                if t is None:
                    continue
                owner = (mod, attr, is_param)
                if owner not in by_id[id(t)]:
                    by_id[id(t)].append(owner)
                names[f"{mod_name}.{attr}" if mod_name else attr] = id(t)
    return {n: by_id[i] for n, i in names.items()}


def _model_name(file_name: str, known: dict[str, Any], renames: dict[str, str]) -> str | None:
    if file_name in known:
        return file_name
    for prefix in COMFYUI_PREFIXES:
        if file_name.startswith(prefix) and file_name[len(prefix):] in known:
            return file_name[len(prefix):]
    renamed = renames.get(file_name)
    return renamed if renamed in known else None


def _diffusers_renames(model: nn.Module, names: list[str]) -> dict[str, str]:
    """File name -> model name by diffusers' single-file conversion for the
    model's class (original Wan names to diffusers'), run on the names
    alone: {} without one. ValueError when it must convert tensors (split
    or reshape them), which a file's bytes in the engine cannot be."""
    try:
        from diffusers.loaders.single_file_model import SINGLE_FILE_LOADABLE_CLASSES
    except ImportError:
        return {}
    entry: Any = SINGLE_FILE_LOADABLE_CLASSES.get(type(model).__name__)
    if entry is None:
        return {}
    try:
        converted = entry["checkpoint_mapping_fn"](checkpoint={n: n for n in names})
    except Exception as e:  # noqa: BLE001 - a handler that works on tensors
        raise ValueError(f"the checkpoint needs diffusers to convert tensors, not only names "
                         f"({type(e).__name__}: {e}); load it whole with from_single_file") from e
    if not all(isinstance(v, str) for v in converted.values()):
        raise ValueError("the checkpoint needs diffusers to convert tensors, not only names; "
                         "load it whole with from_single_file")
    return {old: new for new, old in converted.items()}


def _keeps_fp32(model: nn.Module, name: str) -> bool:
    """Whether diffusers keeps the module of parameter `name` in float32
    when the model loads in half precision."""
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    parts = name.split(".")
    return any(k in parts for k in keep)


def _set(owners: list[Owner], t: torch.Tensor) -> None:
    for mod, attr, is_param in owners:
        if is_param:
            old = mod._parameters[attr]
            assert old is not None
            mod._parameters[attr] = type(old)(t, requires_grad=old.requires_grad)
        else:
            mod._buffers[attr] = t
    # Tied: one Parameter object for all owners, as before.
    if len(owners) > 1 and owners[0][2]:
        first = owners[0][0]._parameters[owners[0][1]]
        for mod, attr, is_param in owners[1:]:
            if is_param:
                mod._parameters[attr] = first


_SOURCE_ATTR = "_genesis_file_source"


def file_source(model: nn.Module) -> FileSource | None:
    """The FileSource of a file-backed model (its blocks are placeholders
    whose bytes are in the checkpoint), else None."""
    return getattr(model, _SOURCE_ATTR, None)


def _refuse_unswapped(model: nn.Module, _args: Any) -> None:
    from .blockswap import BlockSwap, attached

    if file_source(model) is None:
        return
    swap = attached(model)
    if not isinstance(swap, BlockSwap):
        raise RuntimeError(
            f"{type(model).__name__} is file-backed (its blocks are still in the checkpoint): "
            "apply block swapping to it (genesis.blockswap.apply_block_swap), or load it "
            "whole first (file_source(model).materialize, LoadedModel.load_whole)")
    if not (swap.active or swap.parked):  # its engine build failed: the blocks are placeholders
        raise RuntimeError(
            f"{type(model).__name__} is file-backed and its block swap has no engine (the last "
            "build failed; a changed model file?): open the checkpoint again")


class FileSource:
    """A model's block tensors as they lie in a checkpoint (libvram's
    layout of it), attached to the model while it is file-backed
    (file_source). genesis.blockswap.BlockSwap uses it to adopt libvram's
    packing and to read blocks back (remove())."""

    def __init__(self, model: nn.Module, layout: Layout, tensors: dict[str, dict[str, Any]],
                 file_names: dict[tuple[int, str], str], rest_device: torch.device) -> None:
        self.layout = layout
        self.tensors = tensors  # file name -> vram_layout_tensor dict
        self.file_names = file_names  # (id(module), attr) -> file name
        self.rest_device = rest_device  # where the tensors outside the blocks were read
        setattr(model, _SOURCE_ATTR, self)
        # Its blocks are placeholders (zeros): run only through block swapping.
        self._guard = model.register_forward_pre_hook(_refuse_unswapped)

    def _file_name(self, mod: nn.Module, attr: str, what: str) -> str:
        name = self.file_names.get((id(mod), attr))
        if name is None:
            raise ValueError(f"{what} is not in the checkpoint")
        return name

    def adopt(self, packing: ModelPacking) -> None:
        """Gives the packing the file layout's offsets; ValueError when the
        model's blocks and libvram's grouping of the file differ."""
        info = self.layout.info()
        groups = list(info["group_block_count"])
        if groups[:2] != [packing.main_count, packing.vace_count]:
            raise ValueError(
                f"the checkpoint has {groups[0]} blocks and {groups[1]} VACE blocks as libvram "
                f"groups them; the model has {packing.main_count} and {packing.vace_count}")
        for blk in packing.blocks:
            lb = self.layout.block(blk.index)
            for slot in blk.slots:  # a tensor the file lacks, by name, before the counts
                mod, attr = slot.owners[0]
                if slot.is_param or attr not in mod._non_persistent_buffers_set:
                    continue
                raise ValueError(f"block {blk.index}'s {slot.name} is a non-persistent buffer, "
                                 "which checkpoints leave out; load_swapped needs every block "
                                 "tensor in the file (load the model whole, then "
                                 "apply_block_swap)")
            # Extra tensors in a block (strict=False: an fp8 file's scales)
            # ride along in its packed bytes; every model tensor is found
            # by name below.
            for slot in blk.slots:
                mod, attr = slot.owners[0]
                t = self.tensors[self._file_name(mod, attr, f"block {blk.index}'s {slot.name}")]
                if t["block"] != blk.index:
                    raise ValueError(f"{t['name']} is in libvram's block {t['block']}, the "
                                     f"model has it in block {blk.index}")
                # The engine streams the file's bytes into these views.
                if (_TORCH_DTYPES.get(t["dtype_name"]) != slot.dtype
                        or tuple(int(d) for d in t["shape"]) != tuple(slot.shape)):
                    raise ValueError(f"{slot.name} is {slot.dtype} {list(slot.shape)} in the "
                                     f"model, {t['dtype_name']} {list(t['shape'])} in the "
                                     "checkpoint: a file-backed model cannot be converted "
                                     "(load it whole first)")
                slot.offset = int(t["block_offset"])
            blk.packed_bytes = int(lb["packed_bytes"])

    def read(self, names: list[str], device: torch.device) -> dict[str, torch.Tensor]:
        """The named tensors, read from their files with safetensors. On the
        CPU each is copied into torch's own (64-byte aligned) memory: a
        tensor at its unaligned place in the file makes oneDNN/MKL round
        differently, and the results would not be bit-identical to the
        model loaded with load_state_dict."""
        from safetensors import safe_open

        by_file: dict[int, list[str]] = defaultdict(list)
        for n in names:
            by_file[int(self.tensors[n]["file_index"])].append(n)
        out: dict[str, torch.Tensor] = {}
        for index, group in by_file.items():
            path = self.layout.file_path(index)
            self.layout.check_file(index)  # as libvram read its header
            with safe_open(path, framework="pt", device=str(device)) as f:
                for n in group:
                    t = f.get_tensor(n)
                    out[n] = t.clone() if t.device.type == "cpu" else t
        return out

    def block_names(self, blk: BlockPacking) -> list[str]:
        """The file names of a block's tensors, in its packing's order."""
        return [self._file_name(m, a, s.name) for s in blk.slots for m, a in s.owners[:1]]

    def check_files(self) -> None:
        """StateError when a model file changed since its layout was read."""
        for index in range(int(self.layout.info()["file_count"])):
            self.layout.check_file(index)

    def materialize(self, model: nn.Module, packing: ModelPacking, device: torch.device) -> None:
        """Every block's tensors as ordinary torch tensors on `device`: the
        model is no longer file-backed. All are read before any is set, so
        a failing read leaves the blocks as they were."""
        names = {blk.index: self.block_names(blk) for blk in packing.blocks}
        loaded = self.read([n for group in names.values() for n in group], device)
        for blk in packing.blocks:
            for slot, name in zip(blk.slots, names[blk.index]):
                slot.set(loaded[name])
        if file_source(model) is self:
            delattr(model, _SOURCE_ATTR)
            self._guard.remove()


def open_source(model: nn.Module, checkpoint: str | PathLike[str], device: torch.device,
                strict: bool = True, dtype: torch.dtype | None = None) -> FileSource:
    """Matches `model` (parameters on meta) with the checkpoint: block
    tensors become placeholders of the file's dtype, the rest is read onto
    `device` (in `dtype`, see the module's docstring). ValueError, before
    anything is read, on missing or unexpected tensors (strict), shape
    mismatches and block dtypes that cannot run."""
    layout = Layout.open(checkpoint)
    layout.set_name(type(model).__name__)  # as block swapping names a model's own layout
    tensors = {t["name"]: t for t in layout.tensors()}
    owners = _owners(model)
    unknown = [n for n in tensors if _model_name(n, owners, {}) is None]
    renames = _diffusers_renames(model, list(tensors)) if unknown else {}
    matched: dict[str, str] = {}  # file name -> model name
    unexpected: list[str] = []
    taken: dict[str, str] = {}  # model name -> the file name matched to it
    for fname in tensors:
        mname = _model_name(fname, owners, renames)
        if mname is None:
            unexpected.append(fname)
            continue
        first = taken.setdefault(mname, fname)
        if first != fname:
            raise ValueError(f"checkpoint tensors {first} and {fname} are both the model's {mname}: "
                             "the file holds two models (or one twice, under two names)")
        matched[fname] = mname
    if unexpected and strict:
        raise ValueError(f"{len(unexpected)} checkpoint tensors are not in the model: "
                         f"{', '.join(unexpected[:5])}")
    seen = {id(_get(owners[m][0])) for m in matched.values()}
    missing = [n for n, o in owners.items() if id(_get(o[0])) not in seen
               and (_get(o[0]).device.type == "meta" or (strict and _persistent_buffer(o[0])))]
    if missing:
        raise ValueError(f"{len(missing)} model tensors are not in the checkpoint: "
                         f"{', '.join(missing[:5])}")
    rest: list[str] = []
    file_names: dict[tuple[int, str], str] = {}
    for fname, mname in matched.items():
        t = tensors[fname]
        shape = tuple(int(d) for d in t["shape"])
        have = tuple(_get(owners[mname][0]).shape)
        if shape != have:
            raise ValueError(f"{fname}: shape {list(shape)} in the checkpoint, {list(have)} "
                             "in the model")
        file_dtype = _TORCH_DTYPES.get(t["dtype_name"])
        if file_dtype is None:
            raise ValueError(f"{fname}: dtype {t['dtype_name']} has no torch equivalent")
        if t["block"] >= 0 and file_dtype in FLOAT8:
            raise ValueError(f"{fname} is {file_dtype} in the checkpoint, which torch layers "
                             "cannot compute with; use a bf16/fp16 checkpoint, or load this "
                             "one whole with from_single_file(torch_dtype=...)")
        # A half-precision save keeps diffusers' float32 modules in float32.
        kept = (file_dtype == torch.float32 and dtype in (torch.float16, torch.bfloat16)
                and _keeps_fp32(model, mname))
        if (t["block"] >= 0 and dtype is not None and file_dtype.is_floating_point
                and file_dtype != dtype and not kept):
            raise ValueError(f"{fname} is {file_dtype} in the checkpoint, {dtype} was asked "
                             "for: block tensors keep the file's dtype (its bytes stream "
                             "as they are); use a checkpoint in that dtype, or dtype=None")
        if t["block"] < 0:
            rest.append(fname)
        else:
            _set(owners[mname], placeholder(file_dtype, shape))
        for mod, attr, _ in owners[mname]:
            file_names[(id(mod), attr)] = fname
    source = FileSource(model, layout, tensors, file_names, device)
    for fname, value in source.read(rest, device).items():
        mname = matched[fname]
        if value.is_floating_point():
            want = dtype or value.dtype
            if want in (torch.float16, torch.bfloat16) and _keeps_fp32(model, mname):
                want = torch.float32
            value = value.to(want)
        _set(owners[mname], value)
    return source


def _get(owner: Owner) -> torch.Tensor:
    mod, attr, is_param = owner
    t = mod._parameters[attr] if is_param else mod._buffers[attr]
    assert t is not None
    return t


def open_file_backed(model_factory: Callable[[], nn.Module], checkpoint: str | PathLike[str],
                     device: torch.device, strict: bool = True,
                     dtype: torch.dtype | None = None) -> tuple[nn.Module, FileSource]:
    """The model from `model_factory`, built with parameters on meta, its
    rest read from `checkpoint` onto `device` and its block tensors
    zero-memory placeholders: file-backed (file_source(model)) until
    apply_block_swap(model) streams the blocks from the file, or
    source.materialize(model, pack_model(model), device) loads them whole.
    ValueError as open_source."""
    with empty_weights():
        model = model_factory()
    return model, open_source(model, checkpoint, device, strict=strict, dtype=dtype)


def load_swapped(model_factory: Callable[[], nn.Module],
                 checkpoint: str | PathLike[str], *, device: str | torch.device | None = None,
                 strict: bool = True, dtype: torch.dtype | None = None,
                 **swap_options: Any) -> nn.Module:
    """Builds the model from `model_factory` (a class or a callable, run
    with parameters on meta), and block-swaps it from `checkpoint` (a
    .safetensors file or a *.safetensors.index.json) without ever loading
    a streamed block into torch memory.

    swap_options: those of genesis.blockswap.apply_block_swap (the seed's
    vram_threshold_percent, blocks_to_swap, ..., backend, gpu / vram_mb /
    dram_mb to simulate). Returns the model; genesis.blockswap.attached(model)
    is the swap handle (stats(), remove(): the weights then load into torch).
    Raises ValueError when the model and the checkpoint differ and
    genesis.blockswap.BuildError / VramError when the engine cannot be
    built (the checkpoint is then never loaded whole)."""
    target = resolve_device(device)
    model, _ = open_file_backed(model_factory, checkpoint, target, strict=strict, dtype=dtype)
    apply_block_swap(model, device=target, **swap_options)
    return model
