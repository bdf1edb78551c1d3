"""Block swapping over libvram's engine, on the CPU with the host backend:
outputs bit-identical to the unswapped model, every parameter visible in
the plan or the engine, adaptive replanning, OOM retry, bad input."""

from __future__ import annotations

import copy

import pytest
import torch

from genesis import blockswap
from genesis.blockswap import apply_block_swap, attached, compile_blocks
from models import tiny

SMALL_VIDEO = dict(width=16, height=16, frames=1)


def run(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def swapped_pair(dtype: torch.dtype = torch.float32, **kw: object):
    model = tiny(dtype=dtype, **kw)  # type: ignore[arg-type]
    ref = copy.deepcopy(model)
    x = torch.randn(3, model.inp.in_features, dtype=dtype)
    return model, ref, x


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_bit_identical_and_weights_live_once(dtype: torch.dtype) -> None:
    model, ref, x = swapped_pair(dtype)
    expected = run(ref, x)
    swap = apply_block_swap(model, blocks_to_swap=3, **SMALL_VIDEO)
    assert swap.active and len(swap.streamed_blocks) == 3
    for _ in range(3):
        assert torch.equal(run(model, x), expected)
    # Streamed weights are views of the engine's host region, not torch storage.
    eng = swap.engine
    for b in swap.streamed_blocks:
        lo = eng.host_ptr(b)
        hi = lo + eng.block_bytes(b)
        for p in model.blocks[b].parameters():
            assert lo <= p.data_ptr() < hi
    st = swap.stats()
    assert st["engine"]["acquires"] >= 3 * 3 and st["engine"]["backend_name"] == "host"
    tl = st["timeline"]
    assert tl and all(set(ev) == {"kind", "block", "slot", "stream", "start_ms", "end_ms"}
                      for ev in tl)
    assert {ev["block"] for ev in tl if ev["kind"] == "copy"} <= set(swap.streamed_blocks)
    swap.remove()
    assert attached(model) is None
    assert torch.equal(run(model, x), expected)
    assert all(p.data_ptr() != 0 for p in model.parameters())


@pytest.mark.parametrize("attr", ["transformer_blocks", "layers"])
def test_block_list_names(attr: str) -> None:
    model, ref, x = swapped_pair(attr=attr)
    swap = apply_block_swap(model, blocks_to_swap=2, **SMALL_VIDEO)
    assert swap.packing.block_attr == attr
    assert torch.equal(run(model, x), run(ref, x))
    swap.remove()


def test_explicit_block_attr_and_vace() -> None:
    model, ref, x = swapped_pair(vace=3)
    swap = apply_block_swap(model, block_attr="blocks", auto_hardware_tuning=False,
                            blocks_to_swap=2, vace_blocks_to_swap=2, **SMALL_VIDEO)
    s = swap.stats()["plan"]
    assert s["vace_streamed_count"] == 2 and s["streamed_count"] == 4
    assert torch.equal(run(model, x), run(ref, x))
    swap.remove()


def test_wan_transformer_bit_identical() -> None:
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    model = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4,
        out_channels=4, text_dim=32, freq_dim=32, ffn_dim=64, num_layers=4,
        rope_max_seq_len=32).eval()
    ref = copy.deepcopy(model)
    x, t, enc = torch.randn(1, 4, 3, 8, 8), torch.tensor([500]), torch.randn(1, 8, 32)
    with torch.no_grad():
        expected = ref(x, t, enc, return_dict=False)[0]
        swap = apply_block_swap(model, auto_hardware_tuning=False, blocks_to_swap=2,
                                offload_txt_emb=True, **SMALL_VIDEO)
        assert swap.packing.block_attr == "blocks"
        assert swap.stats()["plan"]["offloaded_rest_bytes"] > 0
        for _ in range(2):
            assert torch.equal(model(x, t, enc, return_dict=False)[0], expected)
        assert swap.stats()["embedder_moves"] == 4  # in and out, per forward
        swap.remove()
        assert torch.equal(model(x, t, enc, return_dict=False)[0], expected)


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_torch_compile_blocks(backend: str) -> None:
    torch._dynamo.reset()
    model, ref, x = swapped_pair(n=4)
    swap = apply_block_swap(model, blocks_to_swap=2, **SMALL_VIDEO)
    compile_blocks(model, backend=backend)
    expected = run(ref, x)
    from torch._dynamo.utils import counters

    assert torch.equal(run(model, x), expected)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 1  # the blocks really are compiled
    for _ in range(3):
        assert torch.equal(run(model, x), expected)
    # Weights moving between the host copy and the slot cause no recompiles.
    assert counters["stats"]["unique_graphs"] == graphs
    assert swap.stats()["engine"]["acquires"] >= 8
    swap.remove()


@pytest.mark.parametrize("mode", ["reduce-overhead", "max-autotune"])
def test_cuda_graph_modes_refused(mode: str) -> None:
    model = tiny(n=2)
    with pytest.raises(ValueError, match="CUDA graphs"):
        compile_blocks(model, mode=mode)
    with pytest.raises(ValueError, match="CUDA graphs"):
        compile_blocks(model, options={"triton.cudagraphs": True})
    with pytest.raises(ValueError, match="CUDA graphs"):
        compile_blocks(model, backend="cudagraphs")


VRAM_MB = 150.0  # with tiny(d=512, n=8): threshold 10% -> 6 streamed, 20% -> 2, 50% -> 0


def big(**kw: object):
    return swapped_pair(d=512, n=8, **kw)


def test_threshold_changes_what_streams() -> None:
    counts = {}
    for thr in (10, 20, 50):
        model, _, _ = big()
        swap = apply_block_swap(model, vram_threshold_percent=thr, vram_mb=VRAM_MB, **SMALL_VIDEO)
        counts[thr] = len(swap.streamed_blocks)
        swap.remove()
    assert counts[10] > counts[20] > counts[50] == 0


@pytest.mark.parametrize("option, value, check", [
    ("blocks_to_swap", 5, lambda s, e: s["streamed_count"] == 5),
    ("num_cuda_streams", 3, lambda s, e: s["copy_streams"] == 3 and e["copy_streams"] == 3),
    ("bandwidth_target", 0.3, lambda s, e: s["bandwidth_target"] == pytest.approx(0.3)),
    ("enable_cuda_optimization", False,
     lambda s, e: not s["async_copies"] and not e["async_copies"]),
    ("enable_dram_optimization", False,
     lambda s, e: not s["pinned_memory"] and e["pinned_bytes"] == 0 and e["pageable_bytes"] > 0),
    ("offload_txt_emb", True, lambda s, e: s["offloaded_rest_bytes"] > 0),
    ("width", 256, lambda s, e: s["tokens"] > 1),
])
def test_every_parameter_shows(option: str, value: object, check) -> None:
    model, ref, x = big()
    base = dict(auto_hardware_tuning=False, blocks_to_swap=2, **SMALL_VIDEO)
    swap0 = apply_block_swap(model, **base)
    s0, e0 = swap0.stats()["plan"], swap0.stats()["engine"]
    swap0.remove()
    swap = apply_block_swap(model, **{**base, option: value})
    s, e = swap.stats()["plan"], swap.stats()["engine"]
    assert check(s, e), (option, s, e)
    assert not check(s0, e0), (option, "no effect vs the baseline")
    assert torch.equal(run(model, x), run(ref, x))
    swap.remove()


def test_offload_img_emb_and_debug(capsys: pytest.CaptureFixture[str]) -> None:
    model, ref, x = swapped_pair()
    model.img_emb = torch.nn.Linear(4, 4)
    ref.img_emb = copy.deepcopy(model.img_emb)
    swap = apply_block_swap(model, blocks_to_swap=2, offload_img_emb=True, vram_debug_mode=True,
                            **SMALL_VIDEO)
    out = capsys.readouterr().out
    assert "[VRAM] VRAM-DRAM 平衡分析:" in out and "分块数: 2" in out
    assert swap.stats()["plan"]["offloaded_rest_bytes"] > 0
    run(model, x)
    assert swap.stats()["embedder_moves"] == 2
    assert "实测每块计算" in capsys.readouterr().out
    swap.remove()


def test_adaptive_replan_rebuilds_only_when_placement_changes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # With this model and VRAM, a 0.1 ms block makes libvram choose two
    # slots instead of one; 10 ms keeps the first plan.
    for measured, changed in ((10.0, False), (0.1, True)):
        monkeypatch.setattr(blockswap._Timer, "mean_ms", lambda self, m=measured: m)
        model, ref, x = big()
        swap = apply_block_swap(model, vram_threshold_percent=20, vram_mb=VRAM_MB, **SMALL_VIDEO)
        slots0 = swap.stats()["plan"]["slot_count"]
        assert not swap.stats()["plan"]["compute_measured"]
        expected = run(ref, x)
        assert torch.equal(run(model, x), expected)
        st = swap.stats()
        assert st["plan"]["compute_measured"] and st["measured_block_ms"] == measured
        assert st["replans"][0]["placement_changed"] is changed
        assert st["engine_builds"] == (2 if changed else 1)
        assert (st["plan"]["slot_count"] != slots0) is changed
        assert torch.equal(run(model, x), expected)
        swap.remove()


def test_real_measurement_feeds_the_plan() -> None:
    model, ref, x = swapped_pair()
    swap = apply_block_swap(model, blocks_to_swap=2, **SMALL_VIDEO)
    run(model, x)
    st = swap.stats()
    assert st["measured_block_ms"] > 0 and st["plan"]["compute_measured"]
    assert st["plan"]["block_compute_ms"] == pytest.approx(st["measured_block_ms"])
    swap.remove()


def test_out_of_memory_streams_more_and_retries() -> None:
    model, ref, x = big()
    expected = run(ref, x)
    swap = apply_block_swap(model, vram_threshold_percent=50, vram_mb=VRAM_MB, **SMALL_VIDEO)
    assert swap.streamed_blocks == []
    calls = {"n": 0}
    block = model.blocks[4]
    inner = type(block).forward

    def forward(self, h):  # an OOM until at least 4 blocks stream
        calls["n"] += 1
        if len(swap.streamed_blocks) < 4:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return inner(self, h)

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(block, "forward", forward.__get__(block))
    try:
        out = run(model, x)
    finally:
        monkeypatch.undo()
    assert torch.equal(out, expected)
    st = swap.stats()
    assert st["oom_retries"] >= 1 and len(swap.streamed_blocks) >= 4
    assert [r["reason"] for r in st["replans"]][: st["oom_retries"]] == \
        ["out_of_memory"] * st["oom_retries"]
    assert torch.equal(run(model, x), expected)
    swap.remove()


def test_out_of_memory_gives_up_when_everything_streams() -> None:
    model, _, x = swapped_pair(n=2)
    swap = apply_block_swap(model, auto_hardware_tuning=False, blocks_to_swap=2, **SMALL_VIDEO)

    def forward(self, h):
        raise torch.OutOfMemoryError("CUDA out of memory (injected)")

    model.blocks[0].forward = forward.__get__(model.blocks[0])
    with pytest.raises(torch.OutOfMemoryError):
        run(model, x)
    assert swap.stats()["oom_retries"] == 0
    del model.blocks[0].forward
    swap.remove()


@pytest.mark.parametrize("args, message", [
    (dict(vram_threshold_percent=5), r"vram_threshold_percent=5 is out of range: allowed 10-95"),
    (dict(vram_threshold_percent=96), r"allowed 10-95"),
    (dict(blocks_to_swap=7), r"blocks_to_swap=7 is out of range: allowed 0-6"),
    (dict(num_cuda_streams=0), r"num_cuda_streams=0 is out of range: allowed 1-16"),
    (dict(num_cuda_streams=17), r"allowed 1-16"),
    (dict(bandwidth_target=0.05), r"bandwidth_target=0.05 is out of range: allowed 0.1-1"),
    (dict(bandwidth_target=1.5), r"allowed 0.1-1"),
    (dict(vace_blocks_to_swap=1), r"vace_blocks_to_swap=1 is out of range: allowed 0-0"),
    (dict(mode="fast"), r"mode='fast'"),
])
def test_bad_input_leaves_the_model_untouched(args: dict, message: str) -> None:
    model, ref, x = swapped_pair()
    ptrs = [p.data_ptr() for p in model.parameters()]
    with pytest.raises(ValueError, match=message):
        apply_block_swap(model, **{**SMALL_VIDEO, **args})
    assert attached(model) is None and "forward" not in model.__dict__
    assert [p.data_ptr() for p in model.parameters()] == ptrs
    assert not any(b._forward_pre_hooks for b in model.blocks)
    assert torch.equal(run(model, x), run(ref, x))


def test_model_without_blocks() -> None:
    with pytest.raises(ValueError, match="no block list.*blocks, transformer_blocks, layers"):
        apply_block_swap(torch.nn.Linear(4, 4))
    with pytest.raises(ValueError, match="block_attr='nope'"):
        apply_block_swap(tiny(), block_attr="nope")


def test_engine_failure_falls_back_unswapped() -> None:
    model, ref, x = swapped_pair()
    with pytest.warns(RuntimeWarning, match="running the model unswapped"):
        swap = apply_block_swap(model, blocks_to_swap=2, engine_options={"fail_alloc_at": 1},
                                **SMALL_VIDEO)
    assert not swap.active and "could not create the engine" in swap.fallback_reason
    assert torch.equal(run(model, x), run(ref, x))
    swap.remove()


def test_apply_twice_is_refused() -> None:
    model = tiny()
    swap = apply_block_swap(model, blocks_to_swap=1, **SMALL_VIDEO)
    with pytest.raises(ValueError, match="already applied"):
        apply_block_swap(model, blocks_to_swap=1, **SMALL_VIDEO)
    swap.remove()


def test_seed_args_dict_is_accepted() -> None:
    model, ref, x = swapped_pair()
    args = {"blocks_to_swap": 2, "num_cuda_streams": 8, "bandwidth_target": 0.8,
            "enable_cuda_optimization": True, "enable_dram_optimization": True,
            "vram_threshold_percent": 50.0, "offload_txt_emb": False, "offload_img_emb": False,
            "vace_blocks_to_swap": 0}
    swap = apply_block_swap(model, **args, **SMALL_VIDEO)
    assert swap.stats()["plan"]["manual"] and len(swap.streamed_blocks) == 2
    assert torch.equal(run(model, x), run(ref, x))
    r = swap.report()
    assert r["bytes_streamed"] > 0 and r["predicted_forward_ms"] > 0
    swap.remove()


def test_an_error_inside_a_streamed_block_leaves_the_swap_working() -> None:
    """A cancel or a user's error mid-forward skips the blocks' post-hooks;
    the swap releases what they held, so the next forward is exact and
    still streamed (it used to find the block acquired and fall back)."""
    model, ref, x = swapped_pair()
    expected = run(ref, x)
    swap = apply_block_swap(model, blocks_to_swap=3, adaptive=False, **SMALL_VIDEO)
    block = model.blocks[swap.streamed_blocks[1]]

    def fail(_self: torch.nn.Module, _h: torch.Tensor) -> torch.Tensor:
        raise KeyboardInterrupt("cancelled")

    block.forward = fail.__get__(block)
    with pytest.raises(KeyboardInterrupt):
        run(model, x)
    del block.forward
    assert swap.active and not swap.fallback_reason
    for _ in range(2):
        assert torch.equal(run(model, x), expected)
    swap.remove()


def test_backward_through_streamed_blocks_fails_loudly() -> None:
    """The slots are reused, so autograd cannot keep a streamed block's
    weights: a backward raises instead of using another block's."""
    model, ref, x = swapped_pair()
    swap = apply_block_swap(model, blocks_to_swap=3, adaptive=False, **SMALL_VIDEO)
    assert torch.equal(model(x).detach(), ref(x).detach())  # forward with grad on is fine
    with pytest.raises(RuntimeError, match="backward through a streamed block"):
        model(x).sum().backward()
    swap.remove()
    model(x).sum().backward()  # unswapped again: trains


def test_threads_share_one_swapped_model() -> None:
    import threading

    model, ref, x = swapped_pair()
    expected = run(ref, x)
    swap = apply_block_swap(model, blocks_to_swap=4, adaptive=False, **SMALL_VIDEO)
    results: list[bool] = []

    def work() -> None:
        for _ in range(10):
            results.append(torch.equal(run(model, x), expected))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 30 and swap.active
    swap.remove()


def test_copying_a_swapped_model_is_refused() -> None:
    model, _, x = swapped_pair()
    swap = apply_block_swap(model, blocks_to_swap=2, adaptive=False, **SMALL_VIDEO)
    with pytest.raises(TypeError, match="cannot be copied"):
        copy.deepcopy(model)
    with pytest.raises(TypeError, match="libvram handle"):
        copy.copy(swap.engine)
    swap.remove()
    copy.deepcopy(model)


def test_remove_restores_a_forward_set_on_the_instance() -> None:
    model, ref, x = swapped_pair()
    calls: list[int] = []
    plain = model.forward

    def counted(*a: object) -> torch.Tensor:
        calls.append(1)
        return plain(*a)

    model.forward = counted
    swap = apply_block_swap(model, blocks_to_swap=2, adaptive=False, **SMALL_VIDEO)
    run(model, x)
    swap.remove()
    assert model.forward is counted
    assert torch.equal(run(model, x), run(ref, x)) and len(calls) == 2


@pytest.mark.parametrize("tie", ["two blocks", "block and input", "module twice"])
def test_tensors_shared_across_blocks_are_refused(tie: str) -> None:
    """A block's tensors are pointed at its own copies (a streamed block's
    host region, a disk-tier placeholder), which another holder would then
    see; such a model is refused with the tensor named, and left as it was."""
    model, _, x = swapped_pair()
    if tie == "two blocks":
        model.blocks[4].fc1.weight = model.blocks[3].fc1.weight
    elif tie == "block and input":
        model.blocks[5].norm.weight = model.inp.bias
    else:
        model.blocks[2] = model.blocks[1]
    before = run(model, x)
    with pytest.raises(ValueError, match="each block to own its tensors: block \\d+ "):
        apply_block_swap(model, blocks_to_swap=3, **SMALL_VIDEO)
    assert attached(model) is None and torch.equal(run(model, x), before)


def test_to_while_swapped_moves_the_rest_and_refuses_changing_the_blocks() -> None:
    """model.to(its own device) leaves the streamed blocks' host views alone
    (copying them to the device would undo the swap); a dtype or device
    change is refused before anything moves, and works after remove()."""
    model, ref, x = swapped_pair()
    swap = apply_block_swap(model, blocks_to_swap=3, adaptive=False, **SMALL_VIDEO)
    expected = run(ref, x)
    streamed = swap.streamed_blocks[0]
    views = [p.data_ptr() for p in model.blocks[streamed].parameters()]
    rest = model.inp.weight
    assert model.to("cpu") is model and model.cpu() is model
    assert [p.data_ptr() for p in model.blocks[streamed].parameters()] == views
    assert torch.equal(run(model, x), expected)
    for convert in (lambda: model.to(torch.float16), lambda: model.half(), lambda: model.to("meta")):
        with pytest.raises(ValueError, match="call .remove\\(\\) first"):
            convert()
        assert model.inp.weight is rest and rest.dtype == torch.float32
        assert [p.data_ptr() for p in model.blocks[streamed].parameters()] == views
    assert torch.equal(run(model, x), expected)
    swap.remove()
    assert "_apply" not in model.__dict__
    model.to(torch.float64)
    assert torch.allclose(run(model, x.double()), expected.double(), atol=1e-5)


def test_parked_swap_reports_its_plan_and_leaves_inference_mode_behind() -> None:
    """Parked inside a generation's inference mode, the weights given back
    are ordinary tensors (they outlive it); while parked the swap still
    reports what it streams, as planned for its next turn; a synchronize
    that fails on park is logged and the engine goes anyway."""
    model, ref, x = swapped_pair(d=128, n=6)
    swap = apply_block_swap(model, blocks_to_swap=3, **SMALL_VIDEO)
    with torch.inference_mode():
        assert torch.equal(model(x), ref(x))
        streamed = swap.streamed_blocks
        swap.park()
    assert swap.swapping and swap.streamed_blocks == streamed and len(streamed) == 3
    assert not any(p.is_inference() for p in model.parameters())
    swap.unpark()

    def failing_sync() -> None:
        raise blockswap.VramError(-1, "injected sync failure", "vram_engine_synchronize")

    swap.engine.synchronize = failing_sync  # type: ignore[union-attr]
    swap.park()
    assert swap.parked and swap.engine is None and not blockswap.live_swaps()
    swap.remove()
    assert not any(p.is_inference() for p in model.parameters())
    model.load_state_dict(ref.state_dict())  # fails on inference tensors


def test_a_turn_whose_engine_fails_runs_unswapped_whole() -> None:
    """Built parked, the first turn's engine fails: the model runs
    unswapped, as a whole (model.to() takes the blocks too), and reports
    that it is not swapping even when parked again."""
    from genesis.phases import Phases
    from genesis.wan.swap import Placement

    model, ref, x = swapped_pair(d=128, n=6)
    swap = apply_block_swap(model, blocks_to_swap=3, parked=True,
                            engine_options={"fail_alloc_at": 1}, **SMALL_VIDEO)
    assert swap.swapping and swap.parked
    with pytest.warns(RuntimeWarning, match="running the model unswapped"):
        assert torch.equal(run(model, x), run(ref, x))
    assert swap.fallback_reason and not swap.swapping
    swap.park()
    assert not swap.swapping and swap.stats()["engine"] is None
    model.double()  # the whole model, blocks included
    assert all(p.dtype == torch.float64 for p in model.parameters())
    ph = Phases({"transformer": model}, device="cpu", width=16, height=16, frames=1)
    info, _ = Placement([swap], ph).report()
    assert info["swap_active"] is False and "could not create the engine" in info["swap_fallback"]
    swap.remove()
