"""DRAM pressure with a live model (host backend, CPU): the plan puts
streamed blocks on the disk tier, the engine keeps them in its spill file,
their parameters hold no memory outside their forward, outputs stay
bit-identical and the process's resident memory drops."""

from __future__ import annotations

import copy
import ctypes
import gc

import pytest
import torch

from genesis.blockswap import apply_block_swap, attached
from models import tiny

SMALL_VIDEO = dict(width=16, height=16, frames=1)
# tiny(d=512, n=8): 4 MiB fp32 blocks. All 8 streamed with 24 MiB of simulated
# DRAM (one copy stream: one staging buffer held back): pinned blocks, the rest
# on the disk tier.
LOW_RAM = dict(auto_hardware_tuning=False, blocks_to_swap=8, dram_mb=24, num_cuda_streams=1,
               **SMALL_VIDEO)


def run(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def rss_bytes() -> int:
    gc.collect()
    try:  # glibc keeps freed heap pages; hand them back so RSS shows it
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_disk_tier_bit_identical(dtype: torch.dtype) -> None:
    model = tiny(d=512, n=8, dtype=dtype)
    ref = copy.deepcopy(model)
    x = torch.randn(3, 512, dtype=dtype)
    expected = run(ref, x)
    # bf16 blocks are half as large: half the DRAM gives the same tiers.
    dram_mb = LOW_RAM["dram_mb"] * dtype.itemsize / 4
    swap = apply_block_swap(model, **{**LOW_RAM, "dram_mb": dram_mb})
    st = swap.stats()
    assert swap.active and st["disk_blocks"], st["blocks"]
    assert {b["tier_name"] for b in st["blocks"]} == {"pinned", "disk"}
    assert st["engine"]["disk_bytes"] > 0
    for _ in range(3):
        assert torch.equal(run(model, x), expected)
    for b in swap.stats()["disk_blocks"]:
        for p in list(model.blocks[b].parameters()) + list(model.blocks[b].buffers()):
            assert all(s == 0 for s in p.stride()) and p.dtype == dtype
    # What only looks at the parameters still works.
    sd = model.state_dict()
    assert {k: v.shape for k, v in sd.items()} == {k: v.shape for k, v in ref.state_dict().items()}
    swap.remove()
    assert attached(model) is None
    for a, b in zip(model.parameters(), ref.parameters()):
        assert a.is_contiguous() and torch.equal(a, b)
    assert torch.equal(run(model, x), expected)


def test_disk_tier_with_vace_and_resident_blocks() -> None:
    model = tiny(d=512, n=8, vace=2)
    ref = copy.deepcopy(model)
    x = torch.randn(2, 512)
    swap = apply_block_swap(model, vram_threshold_percent=10, vram_mb=150, dram_mb=10,
                            vace_blocks_to_swap=2, **SMALL_VIDEO)
    tiers = {b["tier_name"] for b in swap.stats()["blocks"]}
    assert {"device", "disk"} <= tiers, tiers
    for _ in range(2):
        assert torch.equal(run(model, x), run(ref, x))
    swap.remove()
    assert torch.equal(run(model, x), run(ref, x))


def test_rebuild_with_disk_blocks_keeps_the_weights() -> None:
    model = tiny(d=512, n=8)
    ref = copy.deepcopy(model)
    x = torch.randn(2, 512)
    expected = run(ref, x)
    swap = apply_block_swap(model, **LOW_RAM)
    assert torch.equal(run(model, x), expected)
    # Forced re-plans: the weights go through the slots back to torch and
    # into a new engine, with another DRAM size (other tiers).
    for dram in (10.0, 40.0, 20.0):
        swap.hw.set_dram(dram, dram)
        swap._rebuild(swap._replan())
        assert swap.active and swap.engine_builds >= 2
        assert torch.equal(run(model, x), expected)
    swap.remove()
    assert torch.equal(run(model, x), expected)


def test_disk_tier_lowers_resident_memory() -> None:
    # The first swap imports torch._dynamo (tens of MiB): not what is measured.
    apply_block_swap(tiny(n=2), blocks_to_swap=1, **SMALL_VIDEO).remove()
    torch.manual_seed(0)
    model = tiny(d=1024, n=8)  # 16 MiB blocks, 128 MiB of blocks in all
    x = torch.randn(2, 1024)
    expected = run(model, x)
    before = rss_bytes()
    # One copy stream: the engine stages disk reads in one pinned buffer per
    # stream (each the size of a block).
    swap = apply_block_swap(model, auto_hardware_tuning=False, blocks_to_swap=8, dram_mb=40,
                            num_cuda_streams=1, **SMALL_VIDEO)
    after = rss_bytes()
    st = swap.stats()
    disk = st["plan"]["disk_bytes"]
    assert disk >= 64 << 20, st["blocks"]
    # The disk-tier blocks' bytes left RAM (the slots and staging take a few
    # blocks' worth back).
    assert before - after > disk // 2, (before, after, disk)
    assert torch.equal(run(model, x), expected)
    assert rss_bytes() - after < 32 << 20  # a forward does not bring them back
    swap.remove()
