"""genesis.loading.load_swapped: a checkpoint (single safetensors file,
sharded index, ComfyUI-prefixed file) loaded straight into block swapping
under a small simulated DRAM: streamed blocks go from the file into the
engine (or stay on disk), never into torch; outputs are bit-identical to
the model loaded normally."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from safetensors.torch import save_file

from genesis import loading
from genesis.blockswap import BuildError, apply_block_swap, attached, live_swaps
from genesis.loading import load_swapped
from genesis.modelinfo import pack_model
from genesis.vram.errors import StateError
from models import TinyModel, tiny

diffusers = pytest.importorskip("diffusers")

SMALL_VIDEO = dict(width=16, height=16, frames=1)
# 4 blocks of ~6 MiB, all streamed, 20 MiB of simulated DRAM (one staging
# buffer held back): pinned and disk.
LOW_RAM = dict(auto_hardware_tuning=False, blocks_to_swap=4, dram_mb=20, num_cuda_streams=1,
               **SMALL_VIDEO)
WAN = dict(patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=64, in_channels=4,
           out_channels=4, text_dim=32, freq_dim=32, ffn_dim=1024, num_layers=4,
           rope_max_seq_len=32)


def wan() -> torch.nn.Module:
    return diffusers.WanTransformer3DModel(**WAN)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    torch.manual_seed(0)
    model = wan().eval()
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    root = tmp_path_factory.mktemp("ckpt")
    save_file(sd, str(root / "wan.safetensors"))
    save_file({f"model.diffusion_model.{k}": v for k, v in sd.items()},
              str(root / "comfy.safetensors"))
    save_file({f"diffusion_model.{k}": v for k, v in sd.items()}, str(root / "dm.safetensors"))
    # The original Wan release's names (and ComfyUI's prefix on them), which
    # diffusers' single-file conversion maps back to the model's.
    original = {original_wan_name(k): v for k, v in sd.items()}
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    assert set(convert_wan_transformer_to_diffusers(dict(original))) == set(sd)
    save_file(original, str(root / "original.safetensors"))
    save_file({f"model.diffusion_model.{k}": v for k, v in original.items()},
              str(root / "original-comfy.safetensors"))
    from huggingface_hub import save_torch_state_dict

    (root / "sharded").mkdir()
    save_torch_state_dict(sd, str(root / "sharded"), max_shard_size="8MB")
    x, t, enc = torch.randn(1, 4, 3, 8, 8), torch.tensor([500]), torch.randn(1, 8, 32)
    with torch.no_grad():
        expected = model(x, t, enc, return_dict=False)[0]
    return dict(root=root, inputs=(x, t, enc), expected=expected)


# diffusers' name -> the original Wan checkpoint's, in order (norm2 and
# norm3 trade places).
_TO_ORIGINAL = [
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"), ("attn2", "cross_attn"),
    ("attn1", "self_attn"), (".to_out.0.", ".o."), (".to_q.", ".q."), (".to_k.", ".k."),
    (".to_v.", ".v."), ("ffn.net.0.proj", "ffn.0"), ("ffn.net.2", "ffn.2"), ("norm2", "norm@"),
    ("norm3", "norm2"), ("norm@", "norm3"), ("proj_out", "head.head")]


def original_wan_name(name: str) -> str:
    if name == "scale_shift_table":
        return "head.modulation"
    name = name.replace("scale_shift_table", "modulation")
    for diffusers_part, original_part in _TO_ORIGINAL:
        name = name.replace(diffusers_part, original_part)
    return name


def forward(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    with torch.no_grad():
        return model(*inputs, return_dict=False)[0]


@pytest.fixture
def block_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names read with safetensors (never a block's)."""
    names: list[str] = []
    read = loading.FileSource.read

    def spy(self: loading.FileSource, wanted: list[str], device: torch.device) -> Any:
        names.extend(wanted)
        return read(self, wanted, device)

    monkeypatch.setattr(loading.FileSource, "read", spy)
    return names


@pytest.mark.parametrize("checkpoint", ["wan.safetensors", "comfy.safetensors", "dm.safetensors",
                                        "original.safetensors", "original-comfy.safetensors",
                                        "sharded/model.safetensors.index.json"])
def test_load_swapped_bit_identical(reference: dict[str, Any], checkpoint: str,
                                    block_reads: list[str]) -> None:
    path = reference["root"] / checkpoint
    assert path.exists(), sorted(p.name for p in reference["root"].rglob("*"))
    model = load_swapped(wan, path, **LOW_RAM).eval()
    swap = attached(model)
    assert swap is not None and swap.active
    st = swap.stats()
    assert st["file_backed"] and st["disk_blocks"], st["blocks"]
    assert {b["tier_name"] for b in st["blocks"]} == {"pinned", "disk"}
    assert not any(".blocks." in f".{n}" for n in block_reads)
    assert not any(p.device.type == "meta" for p in model.parameters())
    for _ in range(2):
        assert torch.equal(forward(model, reference["inputs"]), reference["expected"])
    assert swap.stats()["engine"]["bytes_copied"] > 0
    # remove(): an ordinary model, weights read from the file.
    swap.remove()
    assert attached(model) is None
    assert all(p.is_contiguous() and p.device.type == "cpu" for p in model.parameters())
    assert torch.equal(forward(model, reference["inputs"]), reference["expected"])


def test_resident_blocks_and_replans(reference: dict[str, Any]) -> None:
    model = load_swapped(wan, reference["root"] / "wan.safetensors", vram_mb=120,
                         vram_threshold_percent=10, dram_mb=8, **SMALL_VIDEO).eval()
    swap = attached(model)
    assert swap is not None
    tiers = {b["tier_name"] for b in swap.stats()["blocks"]}
    assert "device" in tiers and "disk" in tiers, tiers
    assert torch.equal(forward(model, reference["inputs"]), reference["expected"])
    for dram in (40.0, 8.0):  # re-plans reload from the file, nothing materialised
        swap.hw.set_dram(dram, dram)
        swap._rebuild(swap._replan())
        assert torch.equal(forward(model, reference["inputs"]), reference["expected"])
    swap.remove()


def test_parked_file_backed_model_holds_no_weights(reference: dict[str, Any]) -> None:
    """Parked between turns (Wan2.2's experts), a file-backed model keeps
    no weights anywhere: every block is a placeholder and the engine is
    gone; its next turn reads the file again."""
    model = load_swapped(wan, reference["root"] / "wan.safetensors", vram_mb=120,
                         vram_threshold_percent=10, dram_mb=8, **SMALL_VIDEO).eval()
    swap = attached(model)
    tiers = {b["tier_name"] for b in swap.stats()["blocks"]}
    assert {"device", "disk"} <= tiers, tiers
    assert torch.equal(forward(model, reference["inputs"]), reference["expected"])
    swap.park()
    assert swap.engine is None and swap not in live_swaps()
    blocks = [p for blk in swap.packing.blocks for p in blk.module.parameters()]
    assert all(p.stride() == (0,) * p.dim() for p in blocks)  # placeholders: no memory
    assert torch.equal(forward(model, reference["inputs"]), reference["expected"])  # unparks
    assert swap.active and not swap.parked
    swap.remove()


def tiny_factory(n: int = 4, **kw: Any) -> Callable[[], TinyModel]:
    return lambda: TinyModel(d=256, n=n, **kw)


def test_small_block_model_and_vace(tmp_path: Path) -> None:
    ref = tiny(d=256, n=6, vace=2)
    path = tmp_path / "tiny.safetensors"
    save_file(ref.state_dict(), str(path))
    x = torch.randn(3, 256)
    with torch.no_grad():
        expected = ref(x)
    model = load_swapped(tiny_factory(6, vace=2), path, auto_hardware_tuning=False,
                         blocks_to_swap=6, vace_blocks_to_swap=2, dram_mb=2, **SMALL_VIDEO)
    assert attached(model).stats()["disk_blocks"]
    with torch.no_grad():
        assert torch.equal(model(x), expected)
    # Buffers inside blocks (Block.scale) come from the file too.
    attached(model).remove()


def test_file_dtype_is_adopted(tmp_path: Path) -> None:
    ref = tiny(d=256, n=4, dtype=torch.bfloat16)
    path = tmp_path / "bf16.safetensors"
    save_file(ref.state_dict(), str(path))
    model = load_swapped(tiny_factory(), path, blocks_to_swap=2, **SMALL_VIDEO)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    x = torch.randn(2, 256, dtype=torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
    attached(model).remove()


def test_half_precision_checkpoint_loads_as_from_pretrained(tmp_path: Path) -> None:
    """A bf16 checkpoint: the rest's float32 modules (diffusers'
    _keep_in_fp32_modules: time embedder, scale_shift_table, norms) come
    back in float32, as from_pretrained(torch_dtype=bf16) has them, and
    the outputs are bit-identical to it."""
    torch.manual_seed(0)
    wan().save_pretrained(tmp_path / "fp32")
    ref = diffusers.WanTransformer3DModel.from_pretrained(tmp_path / "fp32",
                                                         torch_dtype=torch.bfloat16)
    # Its own save keeps those modules float32, in the blocks too: accepted.
    ref.save_pretrained(tmp_path / "bf16")
    path = tmp_path / "bf16" / "diffusion_pytorch_model.safetensors"
    model = load_swapped(wan, path, dtype=torch.bfloat16, **LOW_RAM).eval()
    assert model.condition_embedder.time_embedder.linear_1.weight.dtype == torch.float32
    assert model.scale_shift_table.dtype == torch.float32
    assert model.proj_out.weight.dtype == torch.bfloat16
    x, t, enc = torch.randn(1, 4, 3, 8, 8), torch.tensor([500]), torch.randn(1, 8, 32)
    inputs = (x.to(torch.bfloat16), t, enc.to(torch.bfloat16))
    assert torch.equal(forward(model, inputs), forward(ref.eval(), inputs))
    attached(model).remove()


def test_dtypes_that_cannot_stream_are_refused(tmp_path: Path) -> None:
    sd = tiny(d=256, n=4).state_dict()
    path = tmp_path / "fp32.safetensors"
    save_file(sd, str(path))
    with pytest.raises(ValueError, match="blocks.0.* is torch.float32 in the checkpoint, "
                                         "torch.bfloat16 was asked for"):
        load_swapped(tiny_factory(), path, dtype=torch.bfloat16, blocks_to_swap=2, **SMALL_VIDEO)
    save_file({k: v.to(torch.float8_e4m3fn) if k.startswith("blocks.") else v
               for k, v in sd.items()}, str(path))
    with pytest.raises(ValueError, match="float8_e4m3fn in the checkpoint, which torch layers "
                                         "cannot compute with"):
        load_swapped(tiny_factory(), path, blocks_to_swap=2, **SMALL_VIDEO)


def test_extra_block_tensors_ride_along_when_not_strict(tmp_path: Path) -> None:
    """An fp8-scaled file's per-block scales, say: refused when strict,
    carried unused in the block's bytes otherwise."""
    ref = tiny(d=256, n=4)
    path = tmp_path / "extra.safetensors"
    save_file({**ref.state_dict(), **{f"blocks.{i}.fc1.scale_weight": torch.ones(1)
                                      for i in range(4)}}, str(path))
    with pytest.raises(ValueError, match="not in the model: blocks.0.fc1.scale_weight"):
        load_swapped(tiny_factory(), path, blocks_to_swap=2, **SMALL_VIDEO)
    model = load_swapped(tiny_factory(), path, strict=False, blocks_to_swap=2, **SMALL_VIDEO)
    x = torch.randn(2, 256)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
    attached(model).remove()


def test_mismatches_are_reported(tmp_path: Path) -> None:
    ref = tiny(d=256, n=4)
    sd = ref.state_dict()
    path = tmp_path / "m.safetensors"
    save_file({k: v for k, v in sd.items() if k != "out.bias"}, str(path))
    with pytest.raises(ValueError, match="not in the checkpoint: out.bias"):
        load_swapped(tiny_factory(), path, blocks_to_swap=2, **SMALL_VIDEO)
    save_file({**sd, "extra.weight": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not in the model: extra.weight"):
        load_swapped(tiny_factory(), path, blocks_to_swap=2, **SMALL_VIDEO)
    save_file(sd, str(path))
    with pytest.raises(ValueError, match="shape"):
        load_swapped(lambda: TinyModel(d=128, n=4), path, blocks_to_swap=2, **SMALL_VIDEO)
    with pytest.raises(ValueError, match="not in the checkpoint: blocks.4"):
        load_swapped(tiny_factory(6), path, blocks_to_swap=2, strict=False, **SMALL_VIDEO)
    # libvram groups blocks.N. and transformer_blocks.N., not layers.N.
    layers = TinyModel(d=256, n=4, attr="layers")
    save_file(layers.state_dict(), str(path))
    with pytest.raises(ValueError, match="checkpoint has 0 blocks .* the model has 4"):
        load_swapped(tiny_factory(attr="layers"), path, blocks_to_swap=2, **SMALL_VIDEO)
    # a non-persistent buffer inside a block is not in the checkpoint: named
    def with_rope() -> TinyModel:
        m = tiny(d=256, n=4)
        m.blocks[0].register_buffer("rope", torch.ones(256), persistent=False)
        return m

    save_file(ref.state_dict(), str(path))
    with pytest.raises(ValueError, match="block 0's rope is a non-persistent buffer"):
        load_swapped(with_rope, path, blocks_to_swap=2, **SMALL_VIDEO)


def test_engine_failure_raises_instead_of_loading_everything(tmp_path: Path) -> None:
    ref = tiny(d=256, n=4)
    path = tmp_path / "t.safetensors"
    save_file(ref.state_dict(), str(path))
    with pytest.raises(BuildError, match="could not create the engine"):
        load_swapped(tiny_factory(), path, blocks_to_swap=2,
                     engine_options={"fail_alloc_at": 1}, **SMALL_VIDEO)


def _peak_rss_reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (Linux >= 4.0)
        return True
    except OSError:
        return False


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def test_peak_memory_is_not_the_checkpoint(tmp_path: Path) -> None:
    import gc

    torch.manual_seed(0)
    path = tmp_path / "big.safetensors"
    save_file(tiny(d=1024, n=16).state_dict(), str(path))  # 270 MiB of blocks
    size = path.stat().st_size
    x = torch.randn(2, 1024)
    torch._dynamo.reset()  # block swapping imports dynamo: tens of MiB, not what is measured

    gc.collect()
    if not _peak_rss_reset():
        pytest.skip("/proc/self/clear_refs is not writable: no peak RSS to measure")
    base = _status_kib("VmRSS")
    model = load_swapped(lambda: TinyModel(d=1024, n=16), path, auto_hardware_tuning=False,
                         blocks_to_swap=16, dram_mb=40, num_cuda_streams=1, **SMALL_VIDEO)
    with torch.no_grad():
        model(x)
    peak = (_status_kib("VmHWM") - base) * 1024
    st = attached(model).stats()
    assert st["plan"]["disk_bytes"] > size // 2, st["blocks"]
    # Pinned + pageable tiers, slot, staging and the rest: well under the file.
    assert peak < size // 3, (peak, size, st["engine"])
    attached(model).remove()


def test_a_checkpoint_changed_on_disk_is_refused_not_misread(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """Disk-tier blocks are read at each pass from the offsets of the header
    read at load time: a file rewritten since (here the same weights behind
    a longer header, so every offset moves) is refused by name, never read
    at the old offsets. The path is kept absolute: a later chdir does not
    reach another file of that name."""
    ref = tiny(d=256, n=4)
    sd = ref.state_dict()
    save_file(sd, str(tmp_path / "t.safetensors"))
    monkeypatch.chdir(tmp_path)
    model = load_swapped(tiny_factory(), "t.safetensors", auto_hardware_tuning=False,
                         blocks_to_swap=4, dram_mb=2, num_cuda_streams=1, **SMALL_VIDEO)
    swap = attached(model)
    assert swap.stats()["disk_blocks"]
    x = torch.randn(2, 256)
    other = tmp_path / "elsewhere"
    other.mkdir()
    save_file(tiny(seed=1, d=256, n=4).state_dict(), str(other / "t.safetensors"))
    monkeypatch.chdir(other)
    swap._rebuild(swap._replan())
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
    # Rewritten in place: the next disk read finds out.
    longer = tmp_path / "longer.safetensors"
    save_file(sd, str(longer), metadata={"note": "x" * 300})
    with open(tmp_path / "t.safetensors", "r+b") as f:
        f.write(longer.read_bytes())
    with pytest.raises(BuildError, match="t.safetensors changed since its layout was read"):
        with torch.no_grad():
            model(x)
    # The swap has no engine now: the next forward is refused, not run on placeholders.
    with pytest.raises(RuntimeError, match="file-backed and its block swap has no engine"):
        with torch.no_grad():
            model(x)
    # Replaced: the open file still reads right; a new engine refuses the new one.
    save_file(sd, str(tmp_path / "u.safetensors"))
    model = load_swapped(tiny_factory(), tmp_path / "u.safetensors", blocks_to_swap=2,
                         **SMALL_VIDEO)
    os.replace(longer, tmp_path / "u.safetensors")
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
    with pytest.raises(BuildError, match="u.safetensors changed since its layout was read"):
        attached(model)._rebuild(attached(model)._replan())


def test_a_file_backed_model_runs_only_swapped_or_whole(reference: dict[str, Any]) -> None:
    """Its blocks are placeholders (zeros) until block swapping streams them
    or materialize reads them: a plain forward, legacy swapping and a
    conversion before swapping are refused with what to do."""
    model, source = loading.open_file_backed(wan, reference["root"] / "wan.safetensors",
                                             torch.device("cpu"))
    assert loading.file_source(model) is source
    with pytest.raises(RuntimeError, match="is file-backed .* apply block swapping"):
        forward(model, reference["inputs"])
    with pytest.raises(ValueError, match="legacy block swapping .* file-backed"):
        apply_block_swap(model, mode="legacy", blocks_to_swap=2)
    model.to(torch.float64)
    with pytest.raises(ValueError, match="cannot be converted"):
        apply_block_swap(model, **LOW_RAM)
    model.to(torch.float32)
    swap = apply_block_swap(model, **LOW_RAM)
    assert torch.equal(forward(model, reference["inputs"]), reference["expected"])
    swap.remove(reload=False)
    assert loading.file_source(model) is source
    source.materialize(model, pack_model(model), torch.device("cpu"))
    assert loading.file_source(model) is None
    assert torch.equal(forward(model, reference["inputs"]), reference["expected"])


def test_reading_whole_refuses_a_changed_file(tmp_path: Path) -> None:
    sd = tiny(d=256, n=4).state_dict()
    path = tmp_path / "t.safetensors"
    save_file(sd, str(path))
    model, source = loading.open_file_backed(tiny_factory(), path, torch.device("cpu"))
    # Other weights and a longer header: a size of its own (a timestamp may
    # not have moved yet).
    save_file({k: v + 1 for k, v in sd.items()}, str(path), metadata={"note": "x" * 64})
    with pytest.raises(StateError, match="changed since its layout was read"):
        source.materialize(model, pack_model(model), torch.device("cpu"))


def test_remove_refuses_a_changed_file_and_keeps_the_swap(tmp_path: Path) -> None:
    sd = tiny(d=256, n=4).state_dict()
    path = tmp_path / "t.safetensors"
    save_file(sd, str(path))
    model = load_swapped(tiny_factory(), path, auto_hardware_tuning=False, blocks_to_swap=4,
                         dram_mb=2, num_cuda_streams=1, **SMALL_VIDEO)
    swap = attached(model)
    longer = tmp_path / "longer.safetensors"
    save_file(sd, str(longer), metadata={"note": "x" * 300})
    os.replace(longer, path)
    with pytest.raises(StateError, match="changed since its layout was read"):
        swap.remove()
    assert attached(model) is swap and swap.active  # nothing was undone
    assert all(b.module.fc1.weight.stride() == (0, 0) for b in swap.packing.blocks)  # placeholders kept
    swap.remove(reload=False)
    assert live_swaps() == [] and attached(model) is None


def test_state_dict_reads_disk_tier_blocks_and_load_state_dict_refuses_them(tmp_path: Path) -> None:
    """Disk-tier blocks hold placeholders: state_dict() reads their values
    back (from the model file, or a spill file through a slot), and
    load_state_dict, which could not put values into them, is refused
    before anything is loaded."""
    ref = tiny(d=256, n=4)
    sd = ref.state_dict()
    path = tmp_path / "t.safetensors"
    save_file(sd, str(path))
    file_backed = load_swapped(tiny_factory(), path, auto_hardware_tuning=False, blocks_to_swap=4,
                               dram_mb=2, num_cuda_streams=1, **SMALL_VIDEO)
    spilled = tiny(d=256, n=4)
    spill_swap = apply_block_swap(spilled, auto_hardware_tuning=False, blocks_to_swap=4, dram_mb=2,
                                  num_cuda_streams=1, **SMALL_VIDEO)
    for model in (file_backed, spilled):
        assert attached(model).stats()["disk_blocks"]
        got = model.state_dict()
        assert all(torch.equal(got[k], v) for k, v in sd.items())
        before = {k: v.clone() for k, v in got.items()}
        with pytest.raises(ValueError, match="load_state_dict is not possible (while blocks .* disk tier"
                                             "|on a file-backed model)"):
            model.load_state_dict(tiny(seed=1, d=256, n=4).state_dict())
        assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
        attached(model).remove()
    assert spill_swap is not None and live_swaps() == []


def test_a_checkpoint_holding_a_tensor_twice_is_refused(tmp_path: Path) -> None:
    """The same model tensor under a plain and a ComfyUI-prefixed name (two
    models in one file): refused, never mixed."""
    sd = tiny(d=256, n=4).state_dict()
    other = {f"model.diffusion_model.{k}": v for k, v in tiny(seed=1, d=256, n=4).state_dict().items()}
    path = tmp_path / "two.safetensors"
    save_file({**sd, **other}, str(path))
    with pytest.raises(ValueError, match="are both the model's"):
        load_swapped(tiny_factory(), path, **SMALL_VIDEO)
    assert live_swaps() == []


def test_a_persistent_buffer_missing_from_the_file_is_reported(tmp_path: Path) -> None:
    sd = tiny(d=256, n=4).state_dict()
    del sd["blocks.0.scale"]  # a persistent buffer
    path = tmp_path / "t.safetensors"
    save_file(sd, str(path))
    with pytest.raises(ValueError, match="model tensors are not in the checkpoint: blocks.0.scale"):
        load_swapped(tiny_factory(), path, **SMALL_VIDEO)


def test_tied_names_and_a_missing_buffer_when_not_strict(tmp_path: Path) -> None:
    """A weight tied outside the blocks, saved under both its names (as
    state_dict() saves it), loads; a persistent buffer the model computes
    itself may be missing when strict=False, as with load_state_dict."""
    def tied() -> TinyModel:
        m = TinyModel(d=256, n=4)
        m.out.weight = m.inp.weight
        m.register_buffer("freqs", torch.arange(4.0))
        return m

    torch.manual_seed(0)
    ref = tied()
    x = torch.randn(2, 256)
    path = tmp_path / "t.safetensors"
    sd = {k: v.contiguous() for k, v in ref.state_dict().items()}
    save_file({k: v.clone() for k, v in sd.items()}, str(path))
    model = load_swapped(tied, path, blocks_to_swap=2, **SMALL_VIDEO)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
    attached(model).remove()
    del sd["freqs"]
    save_file({k: v.clone() for k, v in sd.items()}, str(path))
    with pytest.raises(ValueError, match="not in the checkpoint: freqs"):
        load_swapped(tied, path, blocks_to_swap=2, **SMALL_VIDEO)
    model = load_swapped(tied, path, strict=False, blocks_to_swap=2, **SMALL_VIDEO)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
    attached(model).remove()


def test_load_state_dict_into_a_file_backed_model_is_refused(tmp_path: Path) -> None:
    sd = tiny(d=256, n=4).state_dict()
    path = tmp_path / "t.safetensors"
    save_file(sd, str(path))
    model = load_swapped(tiny_factory(), path, blocks_to_swap=2, **SMALL_VIDEO)
    with pytest.raises(ValueError, match="load_state_dict is not possible on a file-backed model"):
        model.load_state_dict(tiny(seed=1, d=256, n=4).state_dict())
    assert all(torch.equal(model.state_dict()[k], v) for k, v in sd.items())
    attached(model).remove()


def test_a_file_backed_model_loads_tensors_outside_its_blocks(tmp_path: Path) -> None:
    ref = tiny(d=256, n=4)
    path = tmp_path / "t.safetensors"
    save_file(ref.state_dict(), str(path))
    model = load_swapped(tiny_factory(), path, blocks_to_swap=2, **SMALL_VIDEO)
    head = tiny(seed=1, d=256, n=4).out
    model.load_state_dict({"out.weight": head.weight, "out.bias": head.bias}, strict=False)
    ref.out.load_state_dict(head.state_dict())
    x = torch.randn(2, 256)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
    attached(model).remove()
