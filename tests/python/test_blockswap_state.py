"""A block-swapped model's state, as a user touches it: weights edited in
place or loaded while swapped, buffers a forward updates, state_dict()
taken while swapped, inference mode, remove() from another thread, and
models block swapping cannot serve (shared memory, container blocks)."""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from genesis.blockswap import apply_block_swap, live_swaps
from models import tiny

SMALL_VIDEO = dict(width=16, height=16, frames=1)


def run(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("edit", ["load_state_dict", "in-place add"])
def test_weights_changed_while_swapped_reach_the_next_forward(edit: str) -> None:
    """The engine copied block 0 into a slot at the end of the last pass;
    the edit lands in its host region, and the next forward must see it."""
    model = tiny()
    ref = copy.deepcopy(model)
    x = torch.randn(3, 64)
    swap = apply_block_swap(model, blocks_to_swap=3, adaptive=False, **SMALL_VIDEO)
    assert torch.equal(run(model, x), run(ref, x))
    swap.engine.synchronize()
    if edit == "load_state_dict":
        new = tiny(seed=1).state_dict()
        model.load_state_dict(new)
        ref.load_state_dict(new)
    else:
        with torch.no_grad():
            for m in (model, ref):
                for blk in m.blocks:
                    blk.fc1.weight.add_(0.5)
    assert torch.equal(run(model, x), run(ref, x))
    assert torch.equal(run(model, x), run(ref, x))
    swap.remove()
    assert torch.equal(run(model, x), run(ref, x))


class Counting(nn.Module):
    """A block whose forward updates its buffers: BatchNorm's running
    statistics in training mode, and a call counter."""

    def __init__(self, d: int = 32) -> None:
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.bn = nn.BatchNorm1d(d)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.relu(self.bn(self.fc(x)))


class CountingModel(nn.Module):
    def __init__(self, n: int = 4) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Counting() for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            x = b(x)
        return x


def test_buffers_a_forward_updates_keep_their_updates() -> None:
    torch.manual_seed(0)
    model = CountingModel().train()
    ref = copy.deepcopy(model)
    x = torch.randn(8, 32)
    swap = apply_block_swap(model, blocks_to_swap=4, adaptive=False, **SMALL_VIDEO)
    for _ in range(3):
        assert torch.equal(run(model, x), run(ref, x))
    model.eval()
    ref.eval()
    assert torch.equal(run(model, x), run(ref, x))
    assert float(model.blocks[0].calls) == 4.0
    swap.remove()
    for (k, a), b in zip(model.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(a, b), k


def test_a_forward_in_inference_mode_leaves_no_inference_tensors() -> None:
    model = tiny()
    ref = copy.deepcopy(model)
    x = torch.randn(3, 64)
    swap = apply_block_swap(model, blocks_to_swap=3, **SMALL_VIDEO)  # adaptive: rebuilt in the forward
    with torch.inference_mode():
        model(x)
    assert not any(p.is_inference() for p in model.parameters())
    model(x)  # autograd on: saving a slot view made in inference mode would fail
    assert torch.equal(run(model, x), run(ref, x))
    model.load_state_dict(ref.state_dict())  # inference tensors would refuse this
    swap.remove()


def test_a_state_dict_taken_while_swapped_outlives_the_engine() -> None:
    model = tiny()
    ref = copy.deepcopy(model)
    swap = apply_block_swap(model, blocks_to_swap=3, **SMALL_VIDEO)
    sd = model.state_dict()
    swap.remove()  # the engine's memory goes
    for k, v in ref.state_dict().items():
        assert torch.equal(sd[k], v), k
    # keep_vars gives the Parameters themselves, which remove() keeps valid
    swap = apply_block_swap(model, blocks_to_swap=3, **SMALL_VIDEO)
    assert isinstance(model.state_dict(keep_vars=True)["blocks.0.fc1.weight"], nn.Parameter)
    swap.remove()


def test_load_state_dict_assign_is_refused_and_changes_nothing() -> None:
    model = tiny()
    ref = copy.deepcopy(model)
    x = torch.randn(3, 64)
    swap = apply_block_swap(model, blocks_to_swap=3, **SMALL_VIDEO)
    with pytest.raises(ValueError, match=r"load_state_dict\(assign=True\) is not possible"):
        model.load_state_dict(tiny(seed=1).state_dict(), assign=True)
    assert torch.equal(run(model, x), run(ref, x))
    swap.remove()
    model.load_state_dict(tiny(seed=1).state_dict(), assign=True)  # fine once removed


class Sleepy(nn.Module):
    def __init__(self, d: int = 32) -> None:
        super().__init__()
        self.fc = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.05)
        return torch.tanh(self.fc(x))


def test_remove_from_another_thread_waits_for_the_forward() -> None:
    torch.manual_seed(0)
    model = CountingModel()
    model.blocks = nn.ModuleList(Sleepy() for _ in range(6))
    ref = copy.deepcopy(model)
    x = torch.randn(2, 32)
    swap = apply_block_swap(model, blocks_to_swap=6, adaptive=False, **SMALL_VIDEO)
    out: list[torch.Tensor] = []
    t = threading.Thread(target=lambda: out.append(run(model, x)))
    t.start()
    time.sleep(0.08)  # inside the blocks
    swap.remove()
    t.join()
    assert torch.equal(out[0], run(ref, x))
    assert live_swaps() == []


def test_views_of_one_memory_are_refused() -> None:
    """A head tied to a block weight as a transposed view: swapping would
    give the block its own copy and untie them."""
    model = tiny()
    model.out.weight = nn.Parameter(model.blocks[0].fc1.weight.data[:64].t())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="block 0 fc1.weight shares its memory with rest.out.weight"):
        apply_block_swap(model, blocks_to_swap=3, **SMALL_VIDEO)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert model.out.weight.data_ptr() == model.blocks[0].fc1.weight.data_ptr()


def test_container_blocks_are_refused() -> None:
    class Staged(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList(nn.ModuleList(nn.Linear(8, 8) for _ in range(2)) for _ in range(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for stage in self.blocks:
                for lin in stage:
                    x = lin(x)
            return x

    with pytest.raises(ValueError, match=r"blocks \[0, 1, 2\] of blocks have no forward of their own"):
        apply_block_swap(Staged(), blocks_to_swap=2, **SMALL_VIDEO)


def test_backward_through_a_block_returning_a_dataclass_is_refused() -> None:
    from dataclasses import dataclass

    @dataclass
    class Out:
        hidden: torch.Tensor

    class Blk(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(16, 16)

        def forward(self, x: torch.Tensor) -> Out:
            return Out(torch.tanh(self.fc(x)))

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList(Blk() for _ in range(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for b in self.blocks:
                x = b(x).hidden
            return x

    model = M()
    swap = apply_block_swap(model, blocks_to_swap=3, adaptive=False, **SMALL_VIDEO)
    x = torch.randn(2, 16, requires_grad=True)
    with pytest.raises(RuntimeError, match="backward"):
        model(x).sum().backward()
    swap.remove()


@pytest.mark.parametrize("kind, message", [
    ("meta", "block 0 extra is on the meta device"),
    ("sparse", "block 0 sp has the torch.sparse_coo layout"),
])
def test_tensors_that_cannot_be_packed_are_named(kind: str, message: str) -> None:
    model = tiny()
    for blk in model.blocks:
        if kind == "meta":
            blk.extra = nn.Parameter(torch.empty(8, device="meta"))
        else:
            blk.register_buffer("sp", torch.eye(8).to_sparse())
    with pytest.raises(ValueError, match=message):
        apply_block_swap(model, blocks_to_swap=3, **SMALL_VIDEO)


def test_a_weight_stored_transposed_keeps_its_layout() -> None:
    """A dense parameter in column-major order (a transposed weight):
    swapped and after remove() it keeps its strides, so reductions over it
    add in the same order and the output stays bit-identical."""
    model = tiny()
    for blk in model.blocks:
        blk.fc1.weight = nn.Parameter(blk.fc1.weight.detach().t().contiguous().t())
    ref = copy.deepcopy(model)
    x = torch.randn(3, 64)
    stride = model.blocks[0].fc1.weight.stride()
    assert stride == (1, 128)
    swap = apply_block_swap(model, blocks_to_swap=6, adaptive=False, **SMALL_VIDEO)
    assert model.blocks[0].fc1.weight.stride() == stride
    assert torch.equal(run(model, x), run(ref, x))
    assert torch.equal(model.blocks[0].fc1.weight.norm(dim=0), ref.blocks[0].fc1.weight.norm(dim=0))
    swap.remove()
    assert model.blocks[0].fc1.weight.stride() == stride
    assert torch.equal(model.blocks[0].fc1.weight, ref.blocks[0].fc1.weight)


def test_state_dict_copies_only_what_the_engine_holds_and_refresh_sees_data_edits() -> None:
    model = tiny()
    ref = copy.deepcopy(model)
    x = torch.randn(3, 64)
    swap = apply_block_swap(model, blocks_to_swap=3, adaptive=False, **SMALL_VIDEO)
    streamed, resident = swap.streamed_blocks[0], sorted(set(range(6)) - set(swap.streamed_blocks))[0]
    sd = model.state_dict()
    # host backend: a resident block keeps torch's tensors, given as usual (no copy)
    assert sd[f"blocks.{resident}.fc1.weight"].data_ptr() == model.blocks[resident].fc1.weight.data_ptr()
    assert sd[f"blocks.{streamed}.fc1.weight"].data_ptr() != model.blocks[streamed].fc1.weight.data_ptr()
    run(model, x)
    # .data edits bump no version: refresh() says so; new .data is seen by itself
    for m in (model, ref):
        m.blocks[streamed].fc1.weight.data.add_(0.25)
    swap.refresh()
    assert torch.equal(run(model, x), run(ref, x))
    new = torch.randn_like(ref.blocks[streamed].fc2.weight)
    for m in (model, ref):
        m.blocks[streamed].fc2.weight.data = new.clone()
    assert torch.equal(run(model, x), run(ref, x))
    swap.remove()
    assert torch.equal(run(model, x), run(ref, x))


class Gated(nn.Module):
    """One-element and fused-view tensors: a (1,) gate, and q/k as views of
    one fused weight inside the block."""

    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.gate = nn.Parameter(torch.full((1,), 0.5))
        fused = torch.randn(2 * d, d)
        self.q = nn.Parameter(fused[:d])
        self.k = nn.Parameter(fused[d:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gate * torch.tanh(x @ self.q.t() + x @ self.k.t())


class GatedModel(nn.Module):
    def __init__(self, n: int = 4) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Gated() for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            x = b(x)
        return x


def test_one_element_tensors_and_views_inside_one_block_are_accepted(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from genesis.loading import load_swapped

    torch.manual_seed(0)
    model = GatedModel()
    ref = copy.deepcopy(model)
    x = torch.randn(2, 16)
    swap = apply_block_swap(model, blocks_to_swap=4, adaptive=False, **SMALL_VIDEO)
    assert torch.equal(run(model, x), run(ref, x))
    swap.remove()
    path = tmp_path / "g.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    loaded = load_swapped(GatedModel, path, auto_hardware_tuning=False, blocks_to_swap=4, **SMALL_VIDEO)
    assert torch.equal(run(loaded, x), run(ref, x))
    from genesis.blockswap import attached

    attached(loaded).remove()


def test_compiled_blocks_and_inference_tensor_weights_are_accepted() -> None:
    model = tiny()
    ref = copy.deepcopy(model)
    x = torch.randn(3, 64)
    model.blocks = nn.ModuleList(torch.compile(b, backend="eager") for b in model.blocks)
    swap = apply_block_swap(model, blocks_to_swap=3, adaptive=False, **SMALL_VIDEO)
    assert torch.equal(run(model, x), run(ref, x))
    assert swap.stats()["engine"]["acquires"] >= 3
    swap.remove()
    with torch.inference_mode():  # weights made as ComfyUI loads them
        frozen = tiny()
    swap = apply_block_swap(frozen, blocks_to_swap=3, adaptive=False, **SMALL_VIDEO)
    with torch.inference_mode():
        assert torch.equal(frozen(x), run(ref, x))
    swap.remove()


class Aliased(nn.Module):
    """One module under two names, and a buffer a forward assigns anew."""

    def __init__(self, d: int = 32) -> None:
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.proj = self.fc
        self.register_buffer("steps", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.steps = self.steps + 1
        return torch.tanh(self.proj(x)) + self.steps


def test_a_module_held_twice_and_a_reassigned_buffer() -> None:
    torch.manual_seed(0)
    model = CountingModel()
    model.blocks = nn.ModuleList(Aliased() for _ in range(4))
    ref = copy.deepcopy(model)
    x = torch.randn(2, 32)
    swap = apply_block_swap(model, blocks_to_swap=4, adaptive=False, **SMALL_VIDEO)
    for _ in range(3):
        assert torch.equal(run(model, x), run(ref, x))
    sd = model.state_dict()
    swap.remove()  # the engine's memory goes: both names' entries are copies
    for k, v in ref.state_dict().items():
        assert torch.equal(sd[k], v), k
    assert float(model.blocks[0].steps) == 3.0


def test_state_dict_from_another_thread_mid_forward_is_the_weights() -> None:
    torch.manual_seed(0)
    model = CountingModel()
    model.blocks = nn.ModuleList(Sleepy() for _ in range(6))
    ref = copy.deepcopy(model)
    swap = apply_block_swap(model, blocks_to_swap=6, adaptive=False, **SMALL_VIDEO)
    t = threading.Thread(target=lambda: run(model, torch.randn(2, 32)))
    t.start()
    time.sleep(0.17)  # inside block 3
    sd = model.blocks[3].state_dict()
    t.join()
    swap.remove()
    for k, v in ref.blocks[3].state_dict().items():
        assert torch.equal(sd[k], v), k


def test_new_data_before_remove_and_on_the_disk_tier() -> None:
    model = tiny()
    new = torch.randn_like(model.blocks[0].fc1.weight)
    swap = apply_block_swap(model, blocks_to_swap=3, adaptive=False, **SMALL_VIDEO)
    model.blocks[swap.streamed_blocks[0]].fc1.weight.data = new.clone()
    swap.remove()  # no forward in between: the new data is kept
    assert torch.equal(model.blocks[0].fc1.weight, new)
    spilled = tiny()
    swap = apply_block_swap(spilled, auto_hardware_tuning=False, blocks_to_swap=6, dram_mb=0.3,
                            num_cuda_streams=1, **SMALL_VIDEO)
    disk = swap.stats()["disk_blocks"]
    assert disk
    spilled.blocks[disk[0]].fc1.weight.data = new.clone()
    with pytest.raises(ValueError, match=f"block {disk[0]} was given new weights while on the disk tier"):
        run(spilled, torch.randn(3, 64))
    swap.remove()
    assert torch.equal(spilled.blocks[disk[0]].fc1.weight, new)  # still the user's


def test_a_model_made_in_inference_mode_runs_after_remove() -> None:
    with torch.inference_mode():
        model = tiny()
        ref = tiny()
        x = torch.randn(3, 64)
    swap = apply_block_swap(model, blocks_to_swap=3, adaptive=False, **SMALL_VIDEO)
    swap.remove()
    with torch.inference_mode():
        assert torch.equal(model(x), ref(x))


def test_state_dict_and_remove_after_new_data_of_any_kind() -> None:
    model = tiny()
    swap = apply_block_swap(model, blocks_to_swap=3, adaptive=False, **SMALL_VIDEO)
    b = swap.streamed_blocks[0]
    new = torch.randn_like(model.blocks[b].fc1.weight)
    model.blocks[b].fc1.weight.data = new.clone()  # no forward in between
    assert torch.equal(model.state_dict()[f"blocks.{b}.fc1.weight"], new)
    wide = model.blocks[b].fc2.weight.data.to(torch.float64)  # cannot stream: kept at remove
    model.blocks[b].fc2.weight.data = wide
    swap.remove()
    assert torch.equal(model.blocks[b].fc1.weight, new)
    assert model.blocks[b].fc2.weight.dtype == torch.float64 and torch.equal(model.blocks[b].fc2.weight, wide)


class Rope(nn.Module):
    """A cache a forward rebuilds at a larger shape (as rotary embeddings
    do), and an empty parameter (a device tracker)."""

    def __init__(self, d: int = 32) -> None:
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.tracker = nn.Parameter(torch.empty(0))
        self.register_buffer("cache", torch.zeros(1, d), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cache.shape[0] < x.shape[0]:
            self.cache = torch.arange(x.numel(), dtype=torch.float32).reshape(x.shape) / x.shape[0]
        return torch.tanh(self.fc(x)) + self.cache[: x.shape[0]]


def test_empty_parameters_on_the_disk_tier_and_a_cache_rebuilt_at_another_shape() -> None:
    """A buffer a block replaces at another size cannot live in the block's
    fixed packing: refused with a message naming it, the block released,
    and the swap still serving blocks that keep their sizes."""
    torch.manual_seed(0)
    model = CountingModel()
    model.blocks = nn.ModuleList(Rope() for _ in range(4))
    ref = copy.deepcopy(model)
    swap = apply_block_swap(model, auto_hardware_tuning=False, blocks_to_swap=4, dram_mb=0.01,
                            adaptive=False, num_cuda_streams=1, **SMALL_VIDEO)
    assert swap.stats()["disk_blocks"]
    one = torch.randn(1, 32)
    for _ in range(2):  # the cache keeps its size: runs (empty trackers included)
        assert torch.equal(run(model, one), run(ref, one))
    with pytest.raises(ValueError, match=r"block 0 replaced its buffer cache .* fixed sizes"):
        run(model, torch.randn(3, 32))
    assert swap.active and swap._held == set()
    assert torch.equal(run(model, one), run(ref, one))
    swap.remove()


@pytest.mark.parametrize("fail_at", [6, 11])
def test_a_copy_failing_on_the_disk_tier_leaves_no_weight_in_a_slot(fail_at: int) -> None:
    model = tiny()
    ref = copy.deepcopy(model)
    x = torch.randn(3, 64)
    swap = apply_block_swap(model, auto_hardware_tuning=False, blocks_to_swap=6, dram_mb=0.3,
                            adaptive=False, num_cuda_streams=1,
                            engine_options={"fail_copy_at": fail_at, "slot_count": 2}, **SMALL_VIDEO)
    with pytest.warns(RuntimeWarning):
        for _ in range(2):
            assert torch.equal(run(model, x), run(ref, x))
    swap.remove()
    for k, v in ref.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_only_block_weights_made_in_inference_mode_stay_inference_tensors() -> None:
    model = tiny()
    with torch.inference_mode():
        model.extra = nn.Parameter(torch.ones(3))  # outside the blocks
    swap = apply_block_swap(model, blocks_to_swap=3, adaptive=False, **SMALL_VIDEO)
    swap.remove()
    assert not any(p.is_inference() for p in model.blocks.parameters())
    model.blocks[0].load_state_dict(tiny(seed=1).blocks[0].state_dict())


class Stepping(nn.Module):
    def __init__(self, d: int = 32) -> None:
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.register_buffer("steps", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.steps = self.steps + 1
        return torch.tanh(self.fc(x)) * self.steps


def test_a_buffer_made_in_inference_mode_leaves_the_weights_as_they_were() -> None:
    """A counter a warm-up run advanced under inference_mode is an
    inference tensor; the block's weights are not, and stay usable for
    training after remove()."""
    torch.manual_seed(0)
    model = CountingModel()
    model.blocks = nn.ModuleList(Stepping() for _ in range(4))
    with torch.inference_mode():
        model(torch.randn(2, 32))
    ref = copy.deepcopy(model)
    x = torch.randn(2, 32)
    swap = apply_block_swap(model, blocks_to_swap=4, adaptive=False, **SMALL_VIDEO)
    for _ in range(2):
        assert torch.equal(run(model, x), run(ref, x))
    swap.remove()
    assert not any(p.is_inference() for p in model.parameters())
    model(x).sum().backward()


def test_new_data_in_a_model_made_in_inference_mode() -> None:
    with torch.inference_mode():
        model = tiny()
        ref = tiny()
        x = torch.randn(3, 64)
        new = torch.randn_like(ref.blocks[0].fc1.weight)
    swap = apply_block_swap(model, blocks_to_swap=6, adaptive=False, **SMALL_VIDEO)
    with torch.inference_mode():
        model(x)
        swap.engine.synchronize()
        for m in (model, ref):
            m.blocks[0].fc1.weight.data = new.clone()
    assert torch.equal(model.state_dict()["blocks.0.fc1.weight"], new)  # outside inference mode
    with torch.inference_mode():
        assert torch.equal(model(x), ref(x))
    swap.remove()


def test_blocks_of_an_inner_model_the_model_does_not_register() -> None:
    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            object.__setattr__(self, "inner", tiny())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)

    model = Outer()
    ref = copy.deepcopy(model.inner)
    x = torch.randn(3, 64)
    swap = apply_block_swap(model, block_attr="inner.blocks", blocks_to_swap=3, adaptive=False, **SMALL_VIDEO)
    assert torch.equal(run(model, x), run(ref, x))
    swap.remove()
    assert live_swaps() == []
