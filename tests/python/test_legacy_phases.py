"""Legacy mode (kijai's WanVideoBlockSwap) and phases."""

from __future__ import annotations

import copy

import pytest
import torch

from genesis.blockswap import apply_block_swap, attached, live_swaps
from genesis.legacy_blockswap import LegacyBlockSwap
from genesis.phases import Phases
from models import tiny

KIJAI_ARGS = {"blocks_to_swap": 3, "offload_img_emb": False, "offload_txt_emb": True,
              "use_non_blocking": False, "vace_blocks_to_swap": 1, "prefetch_blocks": 0,
              "block_swap_debug": True}


def test_legacy_is_bit_identical_and_moves_the_last_blocks(
        capsys: pytest.CaptureFixture[str]) -> None:
    model = tiny(vace=2)
    ref = copy.deepcopy(model)
    x = torch.randn(3, 64)
    swap = apply_block_swap(model, mode="legacy", **KIJAI_ARGS)
    assert isinstance(swap, LegacyBlockSwap)
    assert swap.swapped == {3, 4, 5, 7}  # the last 3 blocks and the last VACE block
    out = capsys.readouterr().out
    assert "Swapping 3 transformer blocks" in out and "Swapping 1 VACE blocks" in out
    assert "Transformer blocks on cpu:" in out
    with torch.no_grad():
        for _ in range(2):
            assert torch.equal(model(x), ref(x))
    st = swap.stats()
    assert st["moves_in"] == st["moves_out"] == 2 * 4
    assert st["embedder_moves"] == 4
    assert "Block 3: compute" in capsys.readouterr().out
    swap.remove()
    assert attached(model) is None and not model.blocks[3]._forward_pre_hooks


def test_legacy_prefetch_issues_moves_ahead() -> None:
    model = tiny()
    ref = copy.deepcopy(model)
    x = torch.randn(3, 64)
    swap = apply_block_swap(model, mode="legacy", blocks_to_swap=4, prefetch_blocks=2,
                            use_non_blocking=True)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
    # Each swapped block moved in exactly once per forward (by prefetch or on use).
    assert swap.stats()["moves_in"] == 4 and swap.stats()["moves_out"] == 4
    swap.remove()


@pytest.mark.parametrize("args, message", [
    (dict(blocks_to_swap=7), "blocks_to_swap=7 is out of range: allowed 0-6"),
    (dict(blocks_to_swap=1, prefetch_blocks=41), "prefetch_blocks=41 is out of range: allowed 0-40"),
    (dict(blocks_to_swap=1, vace_blocks_to_swap=1), "vace_blocks_to_swap=1 .* allowed 0-0"),
])
def test_legacy_bad_input(args: dict, message: str) -> None:
    model = tiny()
    with pytest.raises(ValueError, match=message):
        apply_block_swap(model, mode="legacy", **args)
    assert attached(model) is None and not model.blocks[0]._forward_pre_hooks


def test_phases_decide_with_libvram_and_take_turns() -> None:
    te, tr, vae = tiny(d=256, n=2), tiny(d=512, n=8), tiny(d=256, n=2)
    log: list[str] = []
    together = Phases({"text_encoder": te, "transformer": tr, "vae": vae}, device="cpu",
                      vram_mb=10000, width=16, height=16, frames=1, log=log.append)
    assert together.together and "同时驻留" in log[-1]
    apart = Phases({"text_encoder": te, "transformer": tr, "vae": vae}, device="cpu",
                   vram_mb=110, width=16, height=16, frames=1)
    assert not apart.together

    class Pipe:
        def __init__(self) -> None:
            self.text_encoder, self.transformer = te, tr
            self.vae = type("V", (), {"decode": lambda _self, z: z * 2})()

        def encode_prompt(self, p: str) -> torch.Tensor:
            return self.text_encoder(torch.ones(1, 256))

    pipe = Pipe()
    apart.install(pipe)
    with torch.no_grad():
        pipe.encode_prompt("a cat")
        pipe.transformer(torch.ones(1, 512))
        pipe.vae.decode(torch.ones(1))
    assert apart.history == ["encode", "denoise", "decode"]
    # Each phase moved the others out and its own component in.
    assert ("transformer", "cpu") in apart.moves and ("vae", "cpu") in apart.moves
    apart.remove()
    assert "encode_prompt" not in pipe.__dict__ and not tr._forward_pre_hooks


def test_phases_leave_room_for_the_transformers_activations_not_a_guess() -> None:
    """The activations Phases plans room for are the transformer's (its
    width): guessed from the largest component (here a text encoder 16x the
    transformer's width) they kept components apart that fit together."""
    te, tr, vae = tiny(d=1024, n=2), tiny(d=64, n=2), tiny(d=64, n=1)
    video = dict(width=1024, height=1024, frames=5)
    tr.dim = 64  # what genesis.modelinfo.model_dim reads (diffusers: its config)
    assert Phases({"text_encoder": te, "transformer": tr, "vae": vae}, device="cpu",
                  vram_mb=200, **video).together


def test_phases_park_a_block_swapped_model_out_of_its_phase() -> None:
    """Out of its phase a block-swapped transformer is parked (engine and
    its memory freed, weights back in its own tensors); in its phase, or at
    its next forward, the engine is built again for the same plan. Its
    output never changes, and the run's numbers survive parking."""
    tr = tiny(d=512, n=8)
    ref = copy.deepcopy(tr)
    x = torch.randn(2, 512)
    swap = apply_block_swap(tr, blocks_to_swap=6, width=16, height=16, frames=1)
    ph = Phases({"transformer": tr, "vae": tiny(d=512, n=8)}, device="cpu", vram_mb=70,
                width=16, height=16, frames=1)
    assert not ph.together
    assert ph.sizes["transformer"] < sum(p.numel() * 4 for p in tr.parameters())
    with torch.no_grad():
        want = ref(x)
        ph.enter("denoise")
        assert torch.equal(tr(x), want)  # the first forward: timed, maybe re-planned
        placement, builds = swap.plan.placement(), swap.engine_builds
        before = swap.report()["bytes_streamed"]
        assert torch.equal(tr(x), want)
        last_engine = swap.stats()["engine"]["bytes_copied"]
        per_forward = swap.report()["bytes_streamed"] - before
        assert per_forward > 0
        ph.enter("decode")
        assert swap.parked and not swap.active and swap not in live_swaps()
        assert all(p.device.type == "cpu" and p.stride() != (0,) * p.dim() for p in tr.parameters())
        assert swap.stats()["engine"]["bytes_copied"] == last_engine  # kept from the last engine
        ph.enter("denoise")
        assert swap.active and not swap.parked and swap.plan.placement() == placement
        assert torch.equal(tr(x), want)
        ph.enter("decode")
        assert torch.equal(tr(x), want)  # a forward while parked brings it back itself
    assert swap.report()["bytes_streamed"] == before + 3 * per_forward
    assert ph.moves.count(("transformer", "cpu")) == 4 and swap.engine_builds == builds + 2
    swap.remove()
    assert attached(tr) is None and torch.equal(tr(x), want)


def test_phases_leave_legacy_swapped_models_alone() -> None:
    tr = tiny(d=512, n=8)
    apply_block_swap(tr, mode="legacy", blocks_to_swap=6)
    ph = Phases({"transformer": tr, "vae": tiny(d=512, n=8)}, device="cpu", vram_mb=70,
                width=16, height=16, frames=1)
    assert not ph.together
    ph.enter("decode")
    ph.enter("denoise")
    assert ("vae", "cpu") in ph.moves
    assert all(name != "transformer" for name, _ in ph.moves)
    attached(tr).remove()


def test_legacy_prefetch_stays_within_its_list() -> None:
    """The VACE blocks run before the main ones: a main block prefetching
    into them (as the sequence once allowed) left a VACE block on the
    device after every forward."""
    model = tiny(vace=2)
    swap = LegacyBlockSwap(model, blocks_to_swap=3, vace_blocks_to_swap=1, prefetch_blocks=2,
                           device="cpu")
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(2, 64))
    assert swap.stats()["moves_in"] == swap.stats()["moves_out"] == 8  # 4 swapped, 2 forwards
    swap.remove()


def test_phases_restore_what_they_wrapped_and_name_phases() -> None:
    te, tr, vae = tiny(d=64, n=1), tiny(d=64, n=2), tiny(d=64, n=1)
    ph = Phases({"text_encoder": te, "transformer": tr, "vae": vae}, device="cpu",
                vram_mb=10000, width=16, height=16, frames=1)

    class Pipe:
        def __init__(self) -> None:
            self.text_encoder, self.transformer, self.vae = te, tr, vae

    pipe = Pipe()
    mine = lambda p: p  # noqa: E731 - a wrapper the user set on the instance
    pipe.encode_prompt = mine
    vae.decode = mine
    ph.install(pipe)
    assert pipe.encode_prompt is not mine
    ph.enter("vae")  # a component's name: its phase
    assert ph.current == "decode"
    with pytest.raises(ValueError, match="unknown phase 'nope'"):
        ph.enter("nope")
    ph.remove()
    assert pipe.encode_prompt is mine and vae.decode is mine


@pytest.mark.parametrize("vram_mb, turns", [(110, True), (165, False)])
def test_wan22_experts_take_turns_only_when_they_do_not_fit_together(vram_mb: int,
                                                                     turns: bool) -> None:
    """At 110 MB one 35 MB expert fits beside nothing else, two do not: the
    high-noise expert denoises alone, then trades places with the low-noise
    one (once). At 165 MB the two fit together and both come in."""
    te, t1, t2, vae = tiny(d=256, n=2), tiny(d=512, n=8), tiny(d=512, n=8), tiny(d=256, n=2)
    ph = Phases({"text_encoder": te, "transformer": t1, "transformer_2": t2, "vae": vae},
                device="cpu", vram_mb=vram_mb, width=16, height=16, frames=1)
    assert not ph.together and ph.experts_take_turns == turns

    class Pipe:
        def __init__(self) -> None:
            self.text_encoder, self.transformer, self.transformer_2, self.vae = te, t1, t2, vae

    ph.install(Pipe())
    x = torch.ones(1, 512)
    with torch.no_grad():
        ph.enter("encode")
        t1(x), t1(x)
        into_denoise = ph.moves[-4:]
        t2(x), t2(x)
        into_second = ph.moves[-4:]
    assert ph.history == ["encode", "denoise"]
    if turns:  # out: every other component; in: the running expert alone
        assert into_denoise == [("text_encoder", "cpu"), ("transformer_2", "cpu"), ("vae", "cpu"),
                                ("transformer", "cpu")]
        assert into_second == [("text_encoder", "cpu"), ("transformer", "cpu"), ("vae", "cpu"),
                               ("transformer_2", "cpu")]
        assert ph.expert == "transformer_2" and len(ph.moves) == 4 + 4 + 4
    else:
        assert into_denoise == [("text_encoder", "cpu"), ("vae", "cpu"), ("transformer", "cpu"),
                                ("transformer_2", "cpu")]
        assert ph.expert is None and len(ph.moves) == 4 + 4
    ph.remove()


def test_wan22_swapped_experts_each_plan_for_the_gpu_and_take_turns() -> None:
    """Two block-swapped experts, planned parked against one snapshot: each
    plans for the whole GPU (the same placement), they do not fit together,
    so the high-noise one runs alone, then is parked for the low-noise one.
    Only the running expert holds an engine; outputs are unchanged."""
    from genesis.planning import HardwareSnapshot

    te, vae = tiny(d=256, n=2), tiny(d=256, n=2)
    t1, t2 = tiny(d=512, n=8), tiny(seed=1, d=512, n=8)
    r1, r2 = copy.deepcopy(t1), copy.deepcopy(t2)
    video = dict(width=16, height=16, frames=1)
    hw = HardwareSnapshot(vram_mb=110)
    s1, s2 = (apply_block_swap(t, vram_mb=110, hardware=hw, parked=True, **video) for t in (t1, t2))
    assert s1.parked and s2.parked and not live_swaps()
    assert s1.plan.placement() == s2.plan.placement()
    assert 0 < s1.plan.summary()["streamed_count"] < 8
    ph = Phases({"text_encoder": te, "transformer": t1, "transformer_2": t2, "vae": vae},
                device="cpu", vram_mb=110, hardware=hw, **video)
    assert not ph.together and ph.experts_take_turns

    class Pipe:
        def __init__(self) -> None:
            self.text_encoder, self.transformer, self.transformer_2, self.vae = te, t1, t2, vae

    ph.install(Pipe())
    x = torch.randn(2, 512)
    with torch.no_grad():
        ph.enter("encode")
        assert s1.parked and s2.parked
        for _ in range(2):
            assert torch.equal(t1(x), r1(x))
        assert live_swaps() == [s1] and s2.parked
        for _ in range(2):
            assert torch.equal(t2(x), r2(x))
        assert live_swaps() == [s2] and s1.parked
    assert s1.engine_builds == s2.engine_builds == 1  # one turn each
    assert s1.report()["bytes_streamed"] > 0 and s2.report()["bytes_streamed"] > 0
    ph.remove()
    s1.remove(), s2.remove()
    assert torch.equal(t1(x), r1(x)) and torch.equal(t2(x), r2(x))


def test_a_text_encoder_that_does_not_fit_alone_streams_in_its_phase() -> None:
    """A T5 text encoder (Wan's umT5-xxl is 11 GB in bf16) that libvram
    says does not fit the GPU alone is block-swapped, parked until the
    encode phase and parked again after; one that fits is left whole."""
    from transformers import UMT5Config, UMT5EncoderModel

    from genesis.planning import HardwareSnapshot
    from genesis.wan.swap import swap_text_encoder

    torch.manual_seed(0)
    te = UMT5EncoderModel(UMT5Config(vocab_size=300, d_model=256, d_kv=64, d_ff=1024,
                                     num_layers=4, num_heads=4, pad_token_id=0, eos_token_id=1,
                                     decoder_start_token_id=0)).eval()
    ref = copy.deepcopy(te)
    log: list[str] = []
    assert swap_text_encoder(te, "cpu", log.append, HardwareSnapshot(vram_mb=120),
                             vram_mb=120) is None
    assert attached(te) is None
    assert swap_text_encoder(tiny(), "cpu", log.append) is None  # no T5 blocks
    hw = HardwareSnapshot(vram_mb=90)
    swap = swap_text_encoder(te, "cpu", log.append, hw, vram_mb=90)
    assert swap is not None and swap.parked and swap.plan.summary()["streamed_count"] > 0
    tr = tiny(d=512, n=8)  # 34 MB: not beside the encoder in 90 MB
    ph = Phases({"text_encoder": te, "transformer": tr}, device="cpu", vram_mb=90, hardware=hw,
                width=16, height=16, frames=1)
    assert not ph.together
    ids = torch.randint(2, 300, (1, 12))
    with torch.no_grad():
        want = ref(ids).last_hidden_state
        ph.enter("encode")
        assert swap.active
        assert torch.equal(te(ids).last_hidden_state, want)
        ph.enter("denoise")
        assert swap.parked and not live_swaps()
    assert swap.report()["bytes_streamed"] > 0
    swap.remove()
    with torch.no_grad():
        assert torch.equal(te(ids).last_hidden_state, want)


def test_the_vae_gets_its_input_where_its_phase_puts_it() -> None:
    """diffusers moves the latents to the VAE's device before calling
    decode; while the components take turns that is still the CPU, so the
    wrapper moves them after bringing the VAE in (the meta device stands in
    for the GPU)."""

    class Vae(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(8, 8)

        def decode(self, z: torch.Tensor, return_dict: bool = False) -> torch.Tensor:
            return self.proj(z)

        def encode(self, x: torch.Tensor) -> torch.Tensor:
            return self.proj(x)

    vae = Vae()
    ph = Phases({"transformer": tiny(d=512, n=8), "vae": vae}, device="meta", vram_mb=70,
                width=16, height=16, frames=1)
    assert not ph.together

    class Pipe:
        pass

    pipe = Pipe()
    pipe.vae = vae  # type: ignore[attr-defined]
    ph.install(pipe)
    z = torch.ones(1, 8)
    assert z.device.type == next(vae.parameters()).device.type == "cpu"  # as diffusers sees it
    assert vae.decode(z, return_dict=False).device.type == "meta"
    assert vae.encode(x=z).device.type == "meta"
    assert ph.moves[-1] == ("vae", "meta")
    ph.remove()


def test_components_moved_inside_inference_mode_keep_ordinary_weights() -> None:
    """The app runs the pipeline under torch.inference_mode; a component
    Phases moves there must not come out with inference tensors (a later
    load_state_dict or training would fail on them). The meta device stands
    in for the GPU."""
    te, vae = tiny(d=64, n=1), tiny(d=512, n=8)
    ph = Phases({"text_encoder": te, "vae": vae}, device="meta", vram_mb=70,
                width=16, height=16, frames=1)
    assert not ph.together
    with torch.inference_mode():
        ph.enter("encode")
    assert all(p.device.type == "meta" and not p.is_inference() for p in te.parameters())


def test_a_vae_out_of_memory_retries_tiled_for_the_run() -> None:
    """A VAE decode that runs out of GPU memory is retried with the VAE's
    tiled decoding (diffusers' enable_tiling), which stays on for the run
    and is turned off when the phases are removed; an error that is not
    out of memory, or one while already tiling, is raised."""

    class Vae(torch.nn.Module):
        use_tiling = False

        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(8, 8)
            self.calls: list[bool] = []

        def enable_tiling(self) -> None:
            self.use_tiling = True

        def disable_tiling(self) -> None:
            self.use_tiling = False

        def decode(self, z: torch.Tensor) -> torch.Tensor:
            self.calls.append(self.use_tiling)
            if z.shape[0] > 2 and not self.use_tiling:
                raise torch.OutOfMemoryError("CUDA out of memory (injected)")
            if z.shape[0] > 4:
                raise torch.OutOfMemoryError("CUDA out of memory, even tiled (injected)")
            return self.proj(z)

    vae, log = Vae(), []
    ph = Phases({"vae": vae}, device="cpu", vram_mb=10000, width=16, height=16, frames=1,
                log=log.append)

    class Pipe:
        pass

    pipe = Pipe()
    pipe.vae = vae  # type: ignore[attr-defined]
    ph.install(pipe)
    with torch.no_grad():
        assert vae.decode(torch.ones(2, 8)).shape == (2, 8) and vae.calls == [False]
        assert vae.decode(torch.ones(3, 8)).shape == (3, 8) and vae.calls[1:] == [False, True]
        assert ph.tiled == [vae] and "VAE 显存不足" in log[-1]
        with pytest.raises(torch.OutOfMemoryError, match="even tiled"):
            vae.decode(torch.ones(5, 8))
    ph.remove()
    assert not vae.use_tiling and ph.tiled == []


def test_closing_a_placement_undoes_every_swap_even_after_a_failure() -> None:
    from genesis.wan.swap import Placement

    models = [tiny(d=64, n=4, seed=i) for i in range(3)]
    swaps = [apply_block_swap(m, blocks_to_swap=2, **dict(width=16, height=16, frames=1))
             for m in models]

    def failing_remove(reload: bool = True) -> None:
        raise RuntimeError("injected: weights could not be read back")

    swaps[0].remove = failing_remove  # type: ignore[method-assign]
    placement = Placement(swaps[:2], None, swaps[2])
    with pytest.raises(RuntimeError, match="injected"):
        placement.close()
    assert attached(models[1]) is None and attached(models[2]) is None
    assert live_swaps() == [swaps[0]]
    type(swaps[0]).remove(swaps[0])
    assert not live_swaps()
