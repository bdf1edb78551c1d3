"""What a loaded torch model is made of: its block lists, real byte sizes
(numel * element_size of each dtype, never "x 4"), each block's packing
(parameters and buffers at 256-aligned offsets), and its embedders."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn

ALIGN = 256
BLOCK_ATTRS: tuple[str, ...] = ("blocks", "transformer_blocks", "layers")
VACE_ATTR = "vace_blocks"
# Wrappers that hold the real model one level down (ComfyUI, pipelines).
_INNER_ATTRS: tuple[str, ...] = ("model", "diffusion_model", "transformer")
TEXT_EMBEDDERS: tuple[str, ...] = ("condition_embedder.text_embedder", "text_embedding")
IMAGE_EMBEDDERS: tuple[str, ...] = ("condition_embedder.image_embedder", "img_emb")


def align_up(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _unique_tensors(module: nn.Module) -> Iterator[torch.Tensor]:
    seen: set[int] = set()
    for t in list(module.parameters()) + list(module.buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            yield t


def module_bytes(module: nn.Module) -> int:
    """Bytes of all parameters and buffers, each counted once, real dtypes."""
    return sum(tensor_bytes(t) for t in _unique_tensors(module))


def _list_at(module: nn.Module, attr: str) -> nn.ModuleList | None:
    lst = getattr(module, attr, None)
    if isinstance(lst, (nn.ModuleList, nn.Sequential)) and len(lst) > 0:
        return lst  # type: ignore[return-value]
    return None


def _model_and_inner(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(prefix, module): the model, then each wrapper's inner model."""
    return [("", model)] + [(f"{a}.", getattr(model, a)) for a in _INNER_ATTRS
                            if isinstance(getattr(model, a, None), nn.Module)]


def find_blocks(model: nn.Module, attr: str | None = None) -> tuple[str, nn.ModuleList]:
    """The model's main block list: `attr` when given, else the first of
    blocks / transformer_blocks / layers on the model or one wrapper down.
    Returns (dotted path, list); ValueError when there is none."""
    if attr is not None:
        owner: nn.Module = model
        parts = attr.split(".")
        for p in parts[:-1]:
            owner = getattr(owner, p)
        lst = _list_at(owner, parts[-1])
        if lst is None:
            raise ValueError(f"block_attr={attr!r}: the model has no non-empty nn.ModuleList there")
        return attr, lst
    for prefix, owner in _model_and_inner(model):
        for a in BLOCK_ATTRS:
            lst = _list_at(owner, a)
            if lst is not None:
                return prefix + a, lst
    raise ValueError(
        f"model ({type(model).__name__}) has no block list: expected an nn.ModuleList named one of "
        f"{', '.join(BLOCK_ATTRS)} (or pass block_attr=...)"
    )


def find_vace_blocks(model: nn.Module) -> nn.ModuleList | None:
    for _, owner in _model_and_inner(model):
        lst = _list_at(owner, VACE_ATTR)
        if lst is not None:
            return lst
    return None


def _submodule(model: nn.Module, path: str) -> nn.Module | None:
    m: object = model
    for p in path.split("."):
        m = getattr(m, p, None)
        if m is None:
            return None
    return m if isinstance(m, nn.Module) else None


def find_embedders(model: nn.Module) -> dict[str, nn.Module]:
    """{'text': module, 'image': module} for the ones the model has (Wan in
    diffusers: condition_embedder.text_embedder / image_embedder; original
    Wan: text_embedding / img_emb)."""
    out: dict[str, nn.Module] = {}
    for role, paths in (("text", TEXT_EMBEDDERS), ("image", IMAGE_EMBEDDERS)):
        for _, owner in _model_and_inner(model):
            for p in paths:
                m = _submodule(owner, p)
                if m is not None:
                    out[role] = m
                    break
            if role in out:
                break
    return out


def num_layers(model: nn.Module, block_attr: str | None = None) -> int:
    """Block count from the found block list (the seed's 注意事项 2)."""
    return len(find_blocks(model, block_attr)[1])


def model_size_mb(model: nn.Module) -> float:
    """Real size in MiB: sum of numel * element_size (the seed's 注意事项 1)."""
    return module_bytes(model) / (1024 * 1024)


def model_dim(model: nn.Module) -> int:
    cfg = getattr(model, "config", None)
    if cfg is not None:
        heads = getattr(cfg, "num_attention_heads", None)
        head_dim = getattr(cfg, "attention_head_dim", None)
        if isinstance(heads, int) and isinstance(head_dim, int):
            return heads * head_dim
        dim = getattr(cfg, "dim", None) or getattr(cfg, "hidden_size", None)
        if isinstance(dim, int):
            return dim
    d = getattr(model, "dim", None)
    return d if isinstance(d, int) else 0


@dataclass
class TensorSlot:
    """One parameter or buffer of a block and its place in the packing."""

    name: str  # inside the block ("attn1.to_q.weight")
    owners: list[tuple[nn.Module, str]]  # (module, name) holding it (tied: several)
    is_param: bool
    offset: int
    nbytes: int
    dtype: torch.dtype
    shape: tuple[int, ...]
    # A dense tensor stored in another order (a transposed weight): packed
    # as its memory lies and viewed with these strides; None: contiguous.
    stride: tuple[int, ...] | None = None

    def get(self) -> torch.Tensor:
        m, n = self.owners[0]
        return m._parameters[n] if self.is_param else m._buffers[n]  # type: ignore[return-value]

    def set(self, data: torch.Tensor) -> None:
        """Points the parameter (same Parameter object: .data) or buffer at data."""
        if self.is_param:
            self.get().data = data
        else:
            for m, n in self.owners:
                m._buffers[n] = data


@dataclass
class BlockPacking:
    index: int  # in the layout (main blocks first, then VACE)
    module: nn.Module
    vace: bool
    slots: list[TensorSlot] = field(default_factory=list)
    packed_bytes: int = 0


def _dense_order(t: torch.Tensor) -> tuple[int, ...] | None:
    """The strides of a tensor that fills its memory exactly but not in
    row-major order (a transposed weight), so that block swapping keeps its
    layout (and its numerics); None for a contiguous one, and for one that
    does not fill its memory (expanded placeholders, slices: packed
    contiguous)."""
    if t.device.type == "meta" or t.is_contiguous():
        return None
    expected = 1
    for size, stride in sorted(zip(t.shape, t.stride()), key=lambda d: d[1]):
        if size == 1:
            continue
        if stride != expected:
            return None
        expected *= size
    return tuple(t.stride())


def pack_block(index: int, module: nn.Module, vace: bool = False) -> BlockPacking:
    """Each distinct tensor of the block at a 256-aligned offset."""
    pack = BlockPacking(index, module, vace)
    by_id: dict[int, TensorSlot] = {}
    offset = 0
    for mod_name, mod in module.named_modules():
        for is_param, table in ((True, mod._parameters), (False, mod._buffers)):
            for name, t in table.items():
                if t is None:
                    continue
                slot = by_id.get(id(t))
                if slot is not None:
                    slot.owners.append((mod, name))
                    continue
                n = tensor_bytes(t)
                full = f"{mod_name}.{name}" if mod_name else name
                slot = TensorSlot(full, [(mod, name)], is_param, offset, n, t.dtype, tuple(t.shape),
                                  _dense_order(t))
                by_id[id(t)] = slot
                pack.slots.append(slot)
                offset = align_up(offset + n)
    pack.packed_bytes = max(offset, ALIGN)
    return pack


@dataclass
class ModelPacking:
    block_attr: str
    blocks: list[BlockPacking]
    main_count: int
    vace_count: int
    rest_bytes: int
    total_bytes: int
    dim: int
    embedders: dict[str, nn.Module]
    rest_tensors: list[tuple[str, torch.Tensor]] = field(default_factory=list)

    @property
    def block_bytes(self) -> list[int]:
        return [b.packed_bytes for b in self.blocks]


def pack_model(model: nn.Module, block_attr: str | None = None) -> ModelPacking:
    attr, main = find_blocks(model, block_attr)
    vace = find_vace_blocks(model)
    blocks = [pack_block(i, m) for i, m in enumerate(main)]
    if vace is not None:
        blocks += [pack_block(len(main) + i, m, vace=True) for i, m in enumerate(vace)]
    total = module_bytes(model)
    in_blocks: set[int] = set()
    for b in blocks:
        in_blocks.update(id(t) for t in _unique_tensors(b.module))
    embedders = find_embedders(model)
    rest_tensors = _rest_named(model, in_blocks, embedders)
    rest = sum(tensor_bytes(t) for _, t in rest_tensors)
    return ModelPacking(attr, blocks, len(main), 0 if vace is None else len(vace), rest, total,
                        model_dim(model), embedders, rest_tensors)


def blocks_without_forward(packing: ModelPacking) -> list[int]:
    """Blocks that are containers (a ModuleList of stages): their forward is
    never called, so block swapping's hooks on them would never run."""
    return [b.index for b in packing.blocks  # (torch.compile's wrapper sets its own forward)
            if getattr(type(b.module), "forward", None) is nn.Module.forward
            and "forward" not in vars(b.module)]


def unsupported_tensors(packing: ModelPacking) -> list[str]:
    """Block tensors block swapping cannot pack: weights not loaded yet (the
    meta device) and sparse or other non-strided layouts."""
    out = []
    for b in packing.blocks:
        for s in b.slots:
            t = s.get()
            if t.device.type == "meta":
                out.append(f"block {b.index} {s.name} is on the meta device (its weights are not "
                           "loaded: load them first, or genesis.loading.load_swapped for a checkpoint)")
            elif t.layout != torch.strided:
                out.append(f"block {b.index} {s.name} has the {t.layout} layout (block swapping "
                           "packs dense tensors)")
    return out


_ZEROS: dict[torch.dtype, torch.Tensor] = {}


def placeholder(dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    """A tensor of `shape` and `dtype` on the CPU that holds no memory: one
    shared zero element expanded with stride 0. Chosen over the meta device
    because everything that only looks at a parameter (.device, .dtype,
    .shape, model.to(), hooks, printing) keeps working, and a stray read
    gives zeros instead of an error deep inside torch. Writes into it fail
    (expanded tensors are not writable in place)."""
    zero = _ZEROS.get(dtype)
    if zero is None:
        zero = _ZEROS[dtype] = torch.zeros((), dtype=dtype)
    return zero.expand(shape)


def is_placeholder(t: torch.Tensor) -> bool:
    """Made by placeholder() (one element-sized or not)."""
    zero = _ZEROS.get(t.dtype)
    return (zero is not None and t.device.type == "cpu" and t.numel() > 0
            and t.untyped_storage().data_ptr() == zero.untyped_storage().data_ptr())


def _storage_key(t: torch.Tensor) -> tuple[int, int] | None:
    """The memory a tensor holds, for finding views of one storage; None for
    tensors holding none of their own (meta, empty, expanded placeholders)."""
    if t.device.type == "meta" or t.numel() == 0 or is_placeholder(t):
        return None
    st = t.untyped_storage()
    if st.nbytes() < t.numel() * t.element_size():
        return None
    return (st.data_ptr(), st.nbytes())


def shared_tensors(model: nn.Module, packing: ModelPacking) -> list[str]:
    """Block tensors that another block, or the model outside the blocks,
    also holds (a tied weight, a module listed twice, or a view of the same
    memory: a head tied as w.t(), a fused qkv split into views): block
    swapping gives each block tensor its own copy, which the other holder
    would not see. Described as "block 3 norm.weight, also in block 4"."""
    owner: dict[int, int] = {}  # tensor id -> the block holding it first
    names: dict[int, str] = {}
    memory: dict[tuple[int, int], tuple[int, str]] = {}  # storage -> (block, tensor name)
    out: list[str] = []
    for b in packing.blocks:
        for name, t in list(b.module.named_parameters()) + list(b.module.named_buffers()):
            i = owner.setdefault(id(t), b.index)
            names.setdefault(id(t), f"block {b.index} {name}")
            if i != b.index:
                out.append(f"{names[id(t)]}, also in block {b.index}")
            key = _storage_key(t)
            if key is not None:  # views of one memory inside one block may part
                first = memory.setdefault(key, (b.index, names[id(t)]))
                if first[0] != b.index:
                    out.append(f"{first[1]} shares its memory with block {b.index} {name}")
    for name, t in packing.rest_tensors:
        key = _storage_key(t)
        if key is not None and key in memory:
            out.append(f"{memory[key][1]} shares its memory with {name} outside the blocks")
    block_modules = {id(b.module) for b in packing.blocks}
    seen: set[int] = set()
    stack = [model]
    while stack:  # the modules reachable without entering a block
        m = stack.pop()
        if id(m) in seen or id(m) in block_modules:
            continue
        seen.add(id(m))
        for held in list(m._parameters.values()) + list(m._buffers.values()):
            if held is not None and id(held) in owner:
                out.append(f"{names[id(held)]}, also outside the blocks")
        stack.extend(c for c in m._modules.values() if c is not None)
    return out


def _rest_named(model: nn.Module, in_blocks: set[int],
                embedders: dict[str, nn.Module]) -> list[tuple[str, torch.Tensor]]:
    """Tensors outside the blocks, embedders under libvram's role names
    (text_embedding. / img_emb.) so it can count them for offloading."""
    canonical = {"text": "text_embedding", "image": "img_emb"}
    seen = set(in_blocks)
    out: list[tuple[str, torch.Tensor]] = []
    for role, emb in embedders.items():
        for n, t in list(emb.named_parameters()) + list(emb.named_buffers()):
            if id(t) not in seen:
                seen.add(id(t))
                out.append((f"{canonical[role]}.{n}", t))
    for n, t in list(model.named_parameters()) + list(model.named_buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            out.append((f"rest.{n}", t))
    return out


SAFETENSORS_DTYPES: dict[torch.dtype, str] = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}
for _name, _st in (("float8_e4m3fn", "F8_E4M3"), ("float8_e5m2", "F8_E5M2"),
                   ("uint16", "U16"), ("uint32", "U32"), ("uint64", "U64")):
    if hasattr(torch, _name):
        SAFETENSORS_DTYPES[getattr(torch, _name)] = _st


def block_tensor_name(blk: BlockPacking, main_count: int, slot: TensorSlot) -> str:
    if blk.vace:
        return f"vace_blocks.{blk.index - main_count}.{slot.name}"
    return f"blocks.{blk.index}.{slot.name}"


def safetensors_header(packing: ModelPacking) -> bytes | None:
    """A size-prefixed safetensors header describing the live model (real
    dtypes and shapes; blocks as blocks.N. / vace_blocks.N.), for
    vram_layout_parse_header. Data offsets follow each block's packing.
    None when a dtype has no safetensors name."""
    header: dict[str, dict[str, object]] = {}
    pos = 0

    def add(name: str, t_dtype: torch.dtype, shape: tuple[int, ...], n: int) -> bool:
        nonlocal pos
        st = SAFETENSORS_DTYPES.get(t_dtype)
        if st is None:
            return False
        header[name] = {"dtype": st, "shape": list(shape), "data_offsets": [pos, pos + n]}
        pos += n
        return True

    for blk in packing.blocks:
        for slot in blk.slots:
            if not add(block_tensor_name(blk, packing.main_count, slot), slot.dtype, slot.shape,
                       slot.nbytes):
                return None
    for name, t in packing.rest_tensors:
        if not add(name, t.dtype, tuple(t.shape), tensor_bytes(t)):
            return None
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw
