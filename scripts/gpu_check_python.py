#!/usr/bin/env python3
"""Bit-identity of genesis block swapping on a real GPU with libvram's CUDA
backend: a model of blocks (fp32 and bf16) and, when diffusers is there, a
tiny WanTransformer3DModel, each run unswapped on the GPU and then with
blocks streamed through the engine; outputs must be equal bit for bit.
Also checks paced copies over two copy streams, torch.compile of the
blocks, the adaptive replan, an injected out-of-memory retry, parking
(device memory given back between turns, exact after), a
file-backed Wan transformer (blocks from a checkpoint, some from disk at
each pass), the app's generation path (tiny Wan and its Wan2.2-style
two-expert twin, swapped vs unswapped), and a soak: 200 forwards of a small streamed
model with a random re-plan every few forwards, outputs exact, while
torch.cuda.memory_allocated, the device-wide used memory
(torch.cuda.mem_get_info) and each engine's pinned bytes stay flat.

The first line printed is the card's name (or the skip message).

Exits 0 with a message (and checks nothing) when no CUDA GPU is present.
Usage: python scripts/gpu_check_python.py [--device cpu]   (VRAM_LIBRARY may point at a build)
--device cpu runs the same checks on the host backend: a logic check of this
script, not a GPU result.
"""

from __future__ import annotations

import copy
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "tests" / "python"))


CheckFn = Callable[..., None]


def device_memory(dev: Any) -> tuple[int, int]:
    """(torch.cuda.memory_allocated, device-wide used bytes) after freeing
    torch's cache; (0, 0) on a CPU (the soak's logic can run there)."""
    import torch

    if dev.type != "cuda":
        return 0, 0
    torch.cuda.synchronize(dev)
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info(dev)
    return torch.cuda.memory_allocated(dev), total - free


def synchronize(dev: Any) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def soak(dev: Any, check: CheckFn, forwards: int = 200) -> None:
    """Forwards of a small model (8 blocks of 16 MiB) with a random re-plan
    every 1-8 forwards. Memory is sampled after each remove(), when the
    model is back on the CPU: the last quarter must not sit above the
    first half (a leaked engine would add its slots and host regions);
    each engine's pinned bytes must not move while it lives."""
    import torch

    from genesis.blockswap import apply_block_swap, live_swaps
    from genesis.vram import DoesNotFit
    from models import tiny

    rng = random.Random(11)
    model = tiny(d=1024, n=8)
    ref = copy.deepcopy(model).to(dev)
    xs = [torch.randn(8, 1024, device=dev) for _ in range(4)]
    with torch.no_grad():
        expected = [ref(x) for x in xs]
    del ref
    samples: list[tuple[int, int]] = [device_memory(dev)]
    pinned: dict[tuple[int, int], int] = {}
    pinned_moved: list[str] = []
    wrong: list[int] = []
    leaked = 0
    swap: Any = None
    next_replan, replans, streamed = 0, 0, set()
    for it in range(forwards):
        if it == next_replan:
            if swap is not None:
                swap.remove()
                leaked += len(live_swaps())
                samples.append(device_memory(dev))
            opts: dict[str, Any] = dict(width=64, height=64, frames=5, device=dev,
                                        adaptive=rng.random() < 0.5,
                                        enable_cuda_optimization=rng.random() < 0.75,
                                        enable_dram_optimization=rng.random() < 0.75)
            manual = dict(auto_hardware_tuning=False, blocks_to_swap=rng.randint(1, 8),
                          num_cuda_streams=rng.randint(1, 4),
                          bandwidth_target=rng.choice([0.5, 0.8, 1.0]))
            if rng.random() < 0.3:
                try:
                    swap = apply_block_swap(model, vram_threshold_percent=rng.choice([10, 30, 50]),
                                            vram_mb=rng.choice([400, 1000]), **opts)
                except DoesNotFit:
                    swap = apply_block_swap(model, **manual, **opts)
            else:
                swap = apply_block_swap(model, **manual, **opts)
            replans += 1
            streamed.add(len(swap.streamed_blocks))
            next_replan = it + rng.randint(1, 8)
        k = it % len(xs)
        with torch.no_grad():
            out = model(xs[k])
        if not torch.equal(out, expected[k]):
            wrong.append(it)
        if swap.engine is not None:
            key, now = (replans, swap.engine_builds), swap.engine.stats()["pinned_bytes"]
            if pinned.setdefault(key, now) != now:
                pinned_moved.append(f"forward {it}: {pinned[key]} -> {now}")
    swap.remove()
    leaked += len(live_swaps())
    samples.append(device_memory(dev))
    half, quarter = samples[: len(samples) // 2], samples[-max(1, len(samples) // 4):]
    alloc_early, alloc_late = max(a for a, _ in half), max(a for a, _ in quarter)
    used_early, used_late = max(u for _, u in half), max(u for _, u in quarter)
    mib = 2**20
    check(f"soak: {forwards} forwards exact over {replans} re-plans", not wrong and replans >= 20
          and len(streamed) >= 3, f"(wrong at {wrong[:5]}, streamed counts {sorted(streamed)})")
    check("soak: memory_allocated flat", alloc_late <= alloc_early + mib,
          f"({alloc_early / mib:.1f} -> {alloc_late / mib:.1f} MiB)")
    check("soak: device-wide used memory flat", used_late <= used_early + 32 * mib,
          f"({used_early / mib:.1f} -> {used_late / mib:.1f} MiB, mem_get_info)")
    check("soak: pinned bytes flat per engine, no engine left", not pinned_moved and leaked == 0,
          f"({len(pinned)} engines, max {max(pinned.values(), default=0) / mib:.1f} MiB pinned; "
          f"{pinned_moved[:3]}; {leaked} left alive)")


def app_check(dev: Any, check: CheckFn) -> None:
    """The app's generation path on the device: the built-in tiny Wan model
    and its two-expert Wan2.2 A14B-style twin, block-swapped (the pipeline
    placed by genesis.wan.swap), give the video of the run without
    swapping; the twin again planned for an 80.5 MiB card (the tiny model
    is mostly libvram's fixed 64 MiB allowance there), where the components
    take turns: the experts park for each other, the VAE decodes alone."""
    try:
        import imageio_ffmpeg  # noqa: F401 - the runner writes an mp4
        import numpy as np

        from genesis.wan.loading import ModelSpec
        from genesis.wan.runner import GenerationRequest, WanGenerator
        from genesis.wan.vram_setup import VramSettings
    except ImportError as e:
        print(f"  [skip] app check: {e}")
        return
    import tempfile

    import genesis.planning as planning

    real_probe = planning.planning_hardware

    def small_card(*args: Any, **kwargs: Any) -> Any:
        hw, index, host = real_probe(*args, **kwargs)
        hw.set_vram(80.5, 0.0, index=index)
        return hw, index, host

    quiet = lambda _line: None  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        gen = WanGenerator(output_dir=Path(tmp), device=str(dev))
        for name, small in (("tiny", False), ("tiny-a14b", False), ("tiny-a14b", True)):
            req = dict(prompt="a red fox", width=64, height=64, frames=5, steps=4, seed=3,
                       shift=1.0, model=ModelSpec(name))
            whole = gen.generate(GenerationRequest(block_swap_enabled=False, **req), log=quiet)
            settings = (VramSettings(vram_threshold_percent=90) if small else
                        VramSettings(auto_hardware_tuning=False, blocks_to_swap=2))
            planning.planning_hardware = small_card if small else real_probe
            try:
                swapped = gen.generate(GenerationRequest(block_swap_enabled=True, vram=settings,
                                                         **req), log=quiet)
            finally:
                planning.planning_hardware = real_probe
            m = swapped.metadata
            diff = float(np.abs(swapped.frames - whole.frames).max())
            phases = m.get("phases") or {}
            turns = phases.get("experts_take_turns") and not phases.get("together")
            check(f"app {name}{' on an 80.5 MiB plan' if small else ''}: block-swapped video "
                  "equals the unswapped one",
                  diff <= 1e-3 and m["swap_active"] and (turns if small else m["bytes_streamed"] > 0),
                  f"(max diff {diff:.2g}, streamed {m.get('streamed_blocks')}, phases {phases}, "
                  f"text encoder {m.get('text_encoder_swap')}, {m.get('vram_error') or ''} "
                  f"peak {m['peak_vram_mb']} MiB)")


def main(argv: list[str]) -> int:
    import torch

    on_cpu = argv[1:] == ["--device", "cpu"]
    if argv[1:] and not on_cpu:
        print("usage: gpu_check_python.py [--device cpu]", file=sys.stderr)
        return 2
    if on_cpu:
        dev = torch.device("cpu")
        print(f"gpu_check_python: cpu logic check (host backend), torch {torch.__version__}")
    elif not torch.cuda.is_available():
        print("gpu_check_python: SKIPPED - no CUDA GPU visible to torch "
              f"(torch {torch.__version__}, cuda build {torch.version.cuda}); nothing checked")
        return 0
    else:
        dev = torch.device("cuda", 0)
        props = torch.cuda.get_device_properties(dev)
        print(f"gpu_check_python: {props.name}, {props.total_memory / 2**30:.1f} GiB, "
              f"cc {props.major}.{props.minor}, torch {torch.__version__}", flush=True)
    backend = "host" if on_cpu else "cuda"
    from genesis.blockswap import apply_block_swap, compile_blocks
    from models import tiny

    failures: list[str] = []

    def check(name: str, ok: bool, detail: str = "") -> None:
        print(f"  [{'ok' if ok else 'FAIL'}] {name} {detail}")
        if not ok:
            failures.append(name)

    video = dict(width=64, height=64, frames=5)
    for dtype in (torch.float32, torch.bfloat16):
        model = tiny(d=512, n=8, dtype=dtype)
        ref = copy.deepcopy(model).to(dev)
        x = torch.randn(4, 512, dtype=dtype, device=dev)
        with torch.no_grad():
            expected = ref(x)
            swap = apply_block_swap(model, auto_hardware_tuning=False, blocks_to_swap=5,
                                    device=dev, **video)
            outs = [model(x) for _ in range(3)]
            synchronize(dev)
        st = swap.stats()
        check(f"{dtype} blocks bit-identical", all(torch.equal(o, expected) for o in outs),
              f"(backend {st['engine']['backend_name']}, streamed {swap.streamed_blocks}, "
              f"copied {st['engine']['bytes_copied'] / 2**20:.1f} MiB, overlap "
              f"{st['engine']['overlap_ratio']:.2f})")
        check(f"{dtype} {backend} backend", st["engine"]["backend_name"] == backend)
        check(f"{dtype} adaptive replan ran", bool(st["replans"]),
              f"measured {st['measured_block_ms']:.3f} ms/block")
        swap.remove()

    # Paced copies over two copy streams take the link in turn (events
    # between the streams): still exact.
    model = tiny(d=512, n=8)
    ref = copy.deepcopy(model).to(dev)
    x = torch.randn(4, 512, device=dev)
    with torch.no_grad():
        expected = ref(x)
        swap = apply_block_swap(model, auto_hardware_tuning=False, blocks_to_swap=6,
                                num_cuda_streams=2, bandwidth_target=0.5, device=dev, **video)
        outs = [model(x) for _ in range(3)]
        synchronize(dev)
    st = swap.stats()
    check("paced copies on 2 streams bit-identical", all(torch.equal(o, expected) for o in outs),
          f"(share {st['plan']['bandwidth_target']:.2f}, {st['engine']['copy_streams']} streams)")
    swap.remove()

    # torch.compile (default mode) of streamed blocks.
    torch._dynamo.reset()
    model = tiny(d=512, n=8)
    ref = copy.deepcopy(model).to(dev)
    x = torch.randn(4, 512, device=dev)
    swap = apply_block_swap(model, auto_hardware_tuning=False, blocks_to_swap=4, device=dev,
                            **video)
    # Inductor fuses differently from eager, so the reference is compiled too.
    compile_blocks(model)
    compile_blocks(ref)
    with torch.no_grad():
        expected = ref(x)
        ok = all(torch.equal(model(x), expected) for _ in range(3))
    check("torch.compile (inductor) bit-identical to the compiled unswapped model", ok)
    swap.remove()

    # Injected OOM: the forward is retried with more streamed blocks.
    model = tiny(d=512, n=8)
    ref = copy.deepcopy(model).to(dev)
    swap = apply_block_swap(model, vram_threshold_percent=95, device=dev, **video)
    before = len(swap.streamed_blocks)
    blk = model.blocks[2]
    inner = type(blk).forward

    def forward(self, h):
        if len(swap.streamed_blocks) <= before:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return inner(self, h)

    blk.forward = forward.__get__(blk)
    with torch.no_grad():
        out = model(x)
    del blk.forward
    check("OOM retry streams more and finishes", torch.equal(out, ref(x)) and
          len(swap.streamed_blocks) > before,
          f"({before} -> {len(swap.streamed_blocks)} streamed)")
    swap.remove()

    # Parking between turns (Wan2.2's experts): the engine's device memory
    # goes back, the next turn is exact again.
    model = tiny(d=1024, n=8)  # 16 MiB blocks: what parking frees stands out
    ref = copy.deepcopy(model).to(dev)
    x = torch.randn(4, 1024, device=dev)
    base = device_memory(dev)
    with torch.no_grad():
        expected = ref(x)
        swap = apply_block_swap(model, auto_hardware_tuning=False, blocks_to_swap=4, device=dev,
                                **video)
        first = model(x)
        held = device_memory(dev)
        swap.park()
        parked = device_memory(dev)
        again = [model(x) for _ in range(2)]  # the first forward unparks
        synchronize(dev)
    check("park frees the engine's device memory, unpark is exact",
          torch.equal(first, expected) and all(torch.equal(o, expected) for o in again)
          and (dev.type != "cuda" or parked[1] - base[1] < (held[1] - base[1]) / 4),
          f"(device used: {base[1] / 2**20:.0f} -> {held[1] / 2**20:.0f} -> "
          f"{parked[1] / 2**20:.0f} MiB)")
    swap.remove()

    try:
        from diffusers import WanTransformer3DModel
    except ImportError:
        print("  [skip] diffusers not installed: no Wan check")
    else:
        torch.manual_seed(0)
        wan = WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4,
            out_channels=4, text_dim=32, freq_dim=32, ffn_dim=64, num_layers=4,
            rope_max_seq_len=32).eval()
        ref = copy.deepcopy(wan).to(dev)
        lat = torch.randn(1, 4, 3, 8, 8, device=dev)
        t = torch.tensor([500], device=dev)
        enc = torch.randn(1, 8, 32, device=dev)
        with torch.no_grad():
            expected = ref(lat, t, enc, return_dict=False)[0]
            swap = apply_block_swap(wan, auto_hardware_tuning=False, blocks_to_swap=2,
                                    offload_txt_emb=True, device=dev, **video)
            t0 = time.perf_counter()
            got = [wan(lat, t, enc, return_dict=False)[0] for _ in range(2)]
            synchronize(dev)
        check("WanTransformer3DModel bit-identical", all(torch.equal(g, expected) for g in got),
              f"({(time.perf_counter() - t0) * 500:.1f} ms/forward)")
        swap.remove()

        # File-backed: the blocks go from a checkpoint into the engine (and
        # from disk at each pass), the model never whole in RAM.
        import tempfile

        from safetensors.torch import save_file

        from genesis.blockswap import attached
        from genesis.loading import load_swapped

        config = dict(wan.config)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "wan.safetensors"
            save_file({k: v.contiguous() for k, v in ref.cpu().state_dict().items()}, str(path))
            loaded = load_swapped(lambda: WanTransformer3DModel.from_config(config), path,
                                  device=dev, auto_hardware_tuning=False, blocks_to_swap=4,
                                  dram_mb=0.15, num_cuda_streams=1, **video).eval()
            with torch.no_grad():
                got = [loaded(lat, t, enc, return_dict=False)[0] for _ in range(2)]
                synchronize(dev)
            st = attached(loaded).stats()
            check("file-backed WanTransformer3DModel bit-identical",
                  all(torch.equal(g, expected) for g in got),
                  f"(tiers {sorted({b['tier_name'] for b in st['blocks']})})")
            attached(loaded).remove()

    soak(dev, check)
    app_check(dev, check)

    print("gpu_check_python:", "FAILED: " + ", ".join(failures) if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
