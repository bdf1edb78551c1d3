#!/usr/bin/env python3
"""CPU benchmarks of libvram + genesis, and docs/BENCHMARKS.md from them.

    python bench/cpu_bench.py [--build build] [--runs 3] [--gpu docs/gpu/2026-11-27-h100]
    python bench/cpu_bench.py --from-json --gpu docs/gpu/2026-11-27-h100   # no re-measuring

Measures, on any machine:
  1. the C benchmark programs (built with `cmake --build BUILD --target
     benches` when missing): engine overhead per acquire+release, one
     bandwidth-limited pass and loops of passes against their bound and the
     planner's predictions on the host backend (bench_engine), planning time
     (bench_plan), header reading (bench_layout);
  2. the genesis.blockswap overhead per block on a tiny torch model (host
     backend: every block streamed vs none);
  3. the built-in tiny Wan model's end-to-end generation through the app's API
     (genesis.wan.runner.WanGenerator) without swapping, with the automatic
     plan, and with every block streamed (manual);
  4. the planner's predictions for Wan2.2 A14B's experts taking turns on
     consumer cards, against sharing the GPU (expert_turns), what a turn
     costs here (turn_cost), and Wan's text encoder alone on small cards
     (text_encoder_fit);
then writes docs/BENCHMARKS.md (tables, machine, date, commands) and
docs/benchmarks_cpu.png. The GPU section comes from --gpu (stored runs of
bench/gpu_bench.py, rendered by bench/gpu_report.py, with docs/benchmarks_gpu.png)
when given, else it is marked pending.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(f"[cpu_bench] {msg}", flush=True)


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = int(line.split()[1]) / 2**20
    except OSError:
        pass
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gib": mem_gb, "kernel": platform.release(),
            "python": platform.python_version(), "load_1min": load}


# ---------------------------------------------------------------- C benches

def build_benches(build: Path) -> list[str]:
    cmds = []
    if not (build / "build.ninja").exists() and not (build / "Makefile").exists():
        cmd = ["cmake", "-S", str(ROOT), "-B", str(build), "-G", "Ninja"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        cmds.append(" ".join(cmd))
    cmd = ["cmake", "--build", str(build), "--target", "benches", "-j2"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    cmds.append(" ".join(cmd))
    return cmds


def run_c_bench(build: Path, name: str) -> str:
    exe = build / name
    t = time.perf_counter()
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True, timeout=300).stdout
    log(f"{name}: {time.perf_counter() - t:.1f} s")
    return out


def parse_engine(text: str) -> dict[str, Any]:
    r: dict[str, Any] = {"raw": text}
    # Every "  label:  N us (note)" line of the overhead section, as printed.
    r["overhead"] = [{"case": a.strip(), "us": float(b), "note": c.strip()}
                     for a, b, c in re.findall(r"^\s+([^:\n]+):\s+([\d.]+) us(.*)$", text, re.M)]
    rows = {o["case"]: o["us"] for o in r["overhead"]}
    r["resident_us"] = rows.get("resident blocks")
    r["streamed_us"] = next((v for k, v in rows.items() if k.startswith("streamed")), None)
    r["passes"] = [
        {"compute_ms": float(a), "pass_ms": float(b), "bound_ms": float(c), "ratio": float(d),
         "overlap": float(e)}
        for a, b, c, d, e in re.findall(
            r"compute ([\d.]+) ms/block: pass ([\d.]+) ms, bound ([\d.]+) ms \(([\d.]+)x\), "
            r"overlap ([\d.]+)", text)]
    m = re.search(r"^loop of passes, (.*)$", text, re.M)
    r["loop_setup"] = m.group(1) if m else ""
    r["loop"] = [{"case": a, "pass_ms": float(b), "bound_ms": float(c), "ratio": float(d)}
                 for a, b, c, d in re.findall(
                     r"^\s+(back to back|synchronized after each pass):\s+([\d.]+) ms per pass, "
                     r"bound ([\d.]+) ms \(([\d.]+)x\)", text, re.M)]
    r["predictions"] = [
        {"streamed": int(a), "slots": int(b), "compute_ms": float(c), "b2b_ms": float(d),
         "b2b_predicted_ms": float(e), "synced_ms": float(g), "synced_predicted_ms": float(h)}
        for a, b, c, d, e, _, g, h, _ in re.findall(
            r"^\s+(\d+) streamed, (\d+) slot\(s\), compute ([\d.]+) ms: back to back ([\d.]+) ms, "
            r"predicted ([\d.]+) \(([\d.]+)x\); synchronized ([\d.]+) ms, predicted ([\d.]+) "
            r"\(([\d.]+)x\)", text, re.M)]
    return r


def parse_plan(text: str) -> list[dict[str, Any]]:
    rows = []
    for line in text.splitlines():
        m = re.match(r"(.+?)\s+(\d+) blocks\s+(\d+) streamed (\d+) slot\(s\):\s+([\d.]+) us per plan",
                     line)
        if m:
            rows.append({"case": m.group(1).strip(), "blocks": int(m.group(2)),
                         "streamed": int(m.group(3)), "slots": int(m.group(4)),
                         "us_per_plan": float(m.group(5))})
    return rows


def parse_layout(text: str) -> dict[str, Any]:
    r: dict[str, Any] = {"raw": text}
    m = re.search(r"(\d+) tensors, (\d+)-byte header", text)
    if m:
        r["tensors"], r["header_bytes"] = int(m.group(1)), int(m.group(2))
    for key, label in (("open", "vram_layout_open"), ("parse", "vram_layout_parse_header")):
        m = re.search(label + r":\s+median ([\d.]+) ms, min ([\d.]+) ms", text)
        if m:
            r[key + "_median_ms"], r[key + "_min_ms"] = float(m.group(1)), float(m.group(2))
    return r


# ---------------------------------------------------------------- Python

def setup_genesis(build: Path) -> None:
    sys.path.insert(0, str(ROOT / "python"))
    sys.path.insert(0, str(ROOT / "tests" / "python"))  # models.tiny
    if not os.environ.get("VRAM_LIBRARY") and (build / "libvram.so").exists():
        os.environ["VRAM_LIBRARY"] = str(build / "libvram.so")


def blockswap_overhead(runs: int) -> dict[str, Any]:
    """Per-block cost of genesis.blockswap on a tiny model, host backend:
    forward time with every block streamed minus unswapped, per block."""
    import torch

    from genesis.blockswap import apply_block_swap
    from models import tiny

    torch.set_num_threads(1)
    n = 16
    model = tiny(d=64, n=n)
    x = torch.randn(2, 64)

    def per_forward(reps: int = 200) -> float:
        with torch.no_grad():
            for _ in range(10):
                model(x)
            samples = []
            for _ in range(runs):
                t = time.perf_counter()
                for _ in range(reps):
                    model(x)
                samples.append((time.perf_counter() - t) / reps * 1e6)
        return statistics.median(samples)

    out: dict[str, Any] = {"blocks": n}
    times: dict[str, float] = {}
    # Unswapped before and after: the first measurement runs cold on a
    # shared machine; the faster of the two is the baseline.
    for label, kw in (("unswapped", None),
                      ("resident", dict(auto_hardware_tuning=False, blocks_to_swap=0, vram_mb=200)),
                      ("streamed", dict(auto_hardware_tuning=False, blocks_to_swap=n)),
                      ("unswapped again", None)):
        swap = apply_block_swap(model, width=16, height=16, frames=1, adaptive=False, **kw) \
            if kw is not None else None
        times[label] = per_forward()
        if swap is not None:
            out[label + "_streamed_blocks"] = len(swap.streamed_blocks)
            swap.remove()
    base = out["unswapped_us"] = min(times["unswapped"], times["unswapped again"])
    for label in ("resident", "streamed"):
        out[label + "_us"] = times[label]
        out[label + "_per_block_us"] = (times[label] - base) / n
    return out


def tiny_wan(runs: int) -> list[dict[str, Any]]:
    """End-to-end generations of the built-in tiny Wan model through the
    app's API: first run (load + build) separate, then `runs` timed."""
    from genesis.wan.loading import ModelSpec
    from genesis.wan.runner import GenerationRequest, WanGenerator
    from genesis.wan.vram_setup import VramSettings

    import tempfile

    gen = WanGenerator(output_dir=Path(tempfile.mkdtemp(prefix="cpu-bench-")), device="cpu")
    size = dict(width=128, height=128, frames=9, steps=4, cfg=6.0, seed=1)
    cases = [
        ("no swapping", False, VramSettings()),
        ("swap, automatic plan", True, VramSettings()),
        ("swap, all 4 blocks streamed (manual)", True,
         VramSettings(auto_hardware_tuning=False, blocks_to_swap=4)),
    ]
    rows = []
    quiet = lambda _line: None  # noqa: E731
    first = None
    for label, on, vram in cases:
        req = GenerationRequest(prompt="a cat surfing", block_swap_enabled=on, vram=vram,
                                model=ModelSpec("tiny"), **size)
        if first is None:  # builds/loads the tiny model once
            t = time.perf_counter()
            gen.generate(copy.deepcopy(req), log=quiet)
            first = time.perf_counter() - t
        times, meta = [], {}
        for _ in range(runs):
            t = time.perf_counter()
            res = gen.generate(copy.deepcopy(req), log=quiet)
            times.append(time.perf_counter() - t)
            meta = res.metadata
        rows.append({"case": label, "median_s": statistics.median(times), "min_s": min(times),
                     "max_s": max(times), "runs": runs,
                     "streamed_blocks": len(meta.get("streamed_blocks") or []),
                     "bytes_streamed": meta.get("bytes_streamed"),
                     "swap_active": meta.get("swap_active")})
        log(f"tiny wan, {label}: median {rows[-1]['median_s']:.3f} s")
    for r in rows:
        r["first_run_s"] = first
    return rows


# DRAM of the simulated machine the planner predictions are made for, so
# they do not depend on this one.
PREDICTION_DRAM_MB = 64 * 1024


def predicted_plan(layout: Any, gpu: str, used_mb: float = 0, pinned_mb: float = 0,
                   **options: Any) -> dict[str, Any]:
    """The automatic plan's summary for `layout` on GPU profile `gpu` with
    `used_mb` of its VRAM and `pinned_mb` of the DRAM already taken."""
    from genesis.vram import Hardware, Plan

    hw = Hardware.probe(gpus=False)
    hw.simulate_gpu(gpu, index=0)
    hw.set_vram(hw.gpu(0)["total_bytes"] / 2**20, used_mb, index=0)
    hw.set_dram(PREDICTION_DRAM_MB, PREDICTION_DRAM_MB - pinned_mb)
    return Plan.create(layout, hw, gpu_index=0, auto_hardware_tuning=True, **options).summary()


def expert_turns() -> list[dict[str, Any]]:
    """Wan2.2 A14B's two experts on consumer cards, as the planner predicts
    (no GPU needed): the low-noise expert planned for the whole GPU (it
    takes turns with the high-noise one, which is parked), against planned
    beside the high-noise expert's engine (its resident blocks, rest and
    slots counted as used VRAM, and its pinned blocks as used DRAM, as the
    app did before turns)."""
    from genesis.vram import DoesNotFit, Layout

    layout = Layout.from_catalog("wan2.2-t2v-a14b")
    rows = []
    for gpu in ("RTX 4090", "RTX 5090"):
        for w, h, f in ((832, 480, 81), (1280, 720, 81), (480, 320, 33)):
            for thr in (50, 90):
                opts = dict(width=w, height=h, frames=f, vram_threshold_percent=thr)
                alone = predicted_plan(layout, gpu, **opts)
                footprint = alone["resident_bytes"] + alone["rest_bytes"] + alone["slot_bytes"]
                row = {"gpu": gpu, "video": f"{w}x{h}x{f}", "tokens": alone["tokens"],
                       "threshold": thr, "alone_streamed": alone["streamed_count"],
                       "alone_step_s": alone["predicted_step_ms"] / 1000,
                       "first_footprint_gib": footprint / 2**30,
                       "pinned_gib": alone["pinned_bytes"] / 2**30}
                try:
                    beside = predicted_plan(layout, gpu, footprint / 2**20,
                                            alone["pinned_bytes"] / 2**20, **opts)
                    row.update(beside_streamed=beside["streamed_count"],
                               beside_step_s=beside["predicted_step_ms"] / 1000,
                               beside_pinned_gib=beside["pinned_bytes"] / 2**30,
                               beside_staged_gib=(beside["pageable_bytes"]
                                                  + beside["disk_bytes"]) / 2**30)
                except DoesNotFit:
                    row["beside_streamed"] = None
                rows.append(row)
    return rows


def turn_cost(runs: int) -> list[dict[str, Any]]:
    """What one turn costs (BlockSwap.park, then unpark): a 40-block model
    of 16 MiB blocks (fp32 d=1024, 0.64 GiB), 24 streamed, host backend;
    its weights in RAM, and file-backed (read from the page cache)."""
    import tempfile

    import torch
    from safetensors.torch import save_file

    from genesis.blockswap import apply_block_swap, attached
    from genesis.loading import load_swapped
    from models import TinyModel

    torch.set_num_threads(1)
    plan = dict(auto_hardware_tuning=False, blocks_to_swap=24, vram_mb=2048, width=16, height=16,
                frames=1)

    def timed(swap: Any) -> dict[str, float]:
        park, unpark = [], []
        for _ in range(runs):
            t = time.perf_counter()
            swap.park()
            park.append(time.perf_counter() - t)
            t = time.perf_counter()
            swap.unpark()
            unpark.append(time.perf_counter() - t)
        return {"park_ms": statistics.median(park) * 1e3,
                "unpark_ms": statistics.median(unpark) * 1e3}

    model = TinyModel(d=1024, n=40).eval()
    gib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        save_file(model.state_dict(), str(path))
        swap = apply_block_swap(model, **plan)
        rows.append({"case": "weights in RAM", "gib": gib, **timed(swap)})
        swap.remove()
        loaded = load_swapped(lambda: TinyModel(d=1024, n=40), path, **plan)
        swap = attached(loaded)
        rows.append({"case": "file-backed (page cache)", "gib": gib, **timed(swap)})
        swap.remove(reload=False)
    for r in rows:
        log(f"turn, {r['case']}: park {r['park_ms']:.0f} ms, unpark {r['unpark_ms']:.0f} ms")
    return rows


def text_encoder_fit() -> list[dict[str, Any]]:
    """umT5-xxl (Wan's 11 GB text encoder) alone on small cards, as the app
    plans it (genesis.wan.swap.swap_text_encoder: 90% of the card, one
    512-token pass): how many of its 24 blocks stream, and the pass's
    predicted time against all resident."""
    from genesis.phases import ALONE_THRESHOLD
    from genesis.vram import Layout
    from genesis.wan.swap import TEXT_PASS

    layout = Layout.from_catalog("umt5-xxl")
    rows = []
    for gpu in ("RTX 3080", "RTX 3060 12GB", "RTX 4060 Ti 16GB"):
        s = predicted_plan(layout, gpu, vram_threshold_percent=ALONE_THRESHOLD, **TEXT_PASS)
        rows.append({"gpu": gpu, "streamed": s["streamed_count"], "blocks": s["block_count"],
                     "peak_gib": s["predicted_peak_bytes"] / 2**30,
                     "pass_ms": s["predicted_forward_ms"], "resident_ms": s["resident_forward_ms"]})
    return rows


# ---------------------------------------------------------------- output

def plot(data: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.6))
    plan = data["plan"]
    ax = axes[0]
    ax.barh([r["case"] for r in plan], [r["us_per_plan"] for r in plan], color="#4477aa")
    ax.set_xlabel("µs per plan")
    ax.set_title("planning time (bench_plan)")
    ax.invert_yaxis()
    ax = axes[1]
    e, b = data["engine"], data.get("blockswap", {})
    labels = ["engine\nresident\n(C)", "engine\nstreamed\n4 KiB (C)",
              "blockswap\nresident\n(Python)", "blockswap\nstreamed\n(Python)"]
    vals = [e.get("resident_us") or 0, e.get("streamed_us") or 0,
            b.get("resident_per_block_us") or 0, b.get("streamed_per_block_us") or 0]
    ax.bar(labels, vals, color=["#66ccee", "#228833", "#ccbb44", "#ee6677"])
    ax.set_ylabel("µs per block")
    ax.set_title("overhead per block (host backend)")
    ax.tick_params(axis="x", labelsize=7)
    ax = axes[2]
    w = data.get("tiny_wan", [])
    short = {"no swapping": "no swap", "swap, automatic plan": "swap\nauto"}
    ax.bar([short.get(r["case"], "swap\nall streamed") for r in w], [r["median_s"] for r in w],
           yerr=[[r["median_s"] - r["min_s"] for r in w], [r["max_s"] - r["median_s"] for r in w]],
           color="#aa3377", capsize=4)
    ax.set_ylabel("s per generation")
    ax.set_title("tiny Wan end to end (CPU)")
    ax.tick_params(axis="x", labelsize=7)
    fig.suptitle(f"libvram + genesis on {data['machine']['cpu']}, {data['machine']['cores']} cores "
                 f"({data['date']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def gpu_section(path: Path | None, png: Path) -> list[str]:
    """From stored GPU runs (bench/gpu_report.py), else what is pending."""
    if path is not None and path.exists():
        sys.path.insert(0, str(ROOT / "bench"))
        from gpu_report import section

        return section(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path, png)
    return [
        "## GPU (pending a GPU run)",
        "",
        "**No GPU row below has been measured yet.** `bench/gpu_bench.py` is ready and runs",
        "unmodified on one CUDA GPU (torch ≥ 2.x; diffusers optional) in under 8 minutes:",
        "",
        "```sh",
        "cmake -S . -B build -G Ninja && cmake --build build -j   # libvram.so",
        "python bench/gpu_bench.py --out out/gpu-bench            # results.json + results.md",
        "python bench/cpu_bench.py --from-json --gpu out/gpu-bench/results.json  # this page",
        "```",
        "",
        "What it measures, under a 24 GB cap (`torch.cuda.set_per_process_memory_fraction`, and",
        "genesis planned for 24 GB), for one forward of a Wan-14B-shaped transformer (diffusers'",
        "WanTransformer3DModel with the 14B config and random bf16 weights; without diffusers,",
        "40 self-contained Wan blocks with the exact 14B shapes) at 4,590 and 32,760 tokens:",
        "",
        "| mode | what | 4,590 tokens | 32,760 tokens |",
        "|---|---|---|---|",
        "| ceiling | all resident, no cap | pending | pending |",
        "| genesis | automatic plan | pending | pending |",
        "| genesis-sync | enable_cuda_optimization=False | pending | pending |",
        "| legacy | kijai's WanVideoBlockSwap, non_blocking + prefetch 1 | pending | pending |",
        "| legacy-default | kijai's defaults (blocking) | pending | pending |",
        "| diffusers-group | group offloading, block_level, 1 block/group, streams | pending | pending |",
        "| mmgp | HighRAM_LowVRAM profile, when mmgp is installed | pending | pending |",
        "",
        "Per cell: median of ≥ 3 forwards after a warm-up, peak VRAM (device-wide), host RSS,",
        "pinned bytes, bytes streamed, and the bound max(all-resident time, streamed bytes /",
        "measured pinned bandwidth). The reference numbers measured earlier by hand on an H100",
        "(docs in /work/shared/reference/wan-and-gpu-numbers.md, not this harness): all resident",
        "0.214 s / 2.763 s; a pipelined prototype 0.515 s / 2.777 s; the bound 0.520 s / 2.763 s.",
        "",
    ]


def write_doc(data: dict[str, Any], png: bool, gpu: Path | None, out: Path) -> None:
    m, e, lay = data["machine"], data["engine"], data["layout"]
    b = data.get("blockswap", {})
    L = [
        "# Benchmarks",
        "",
        f"Generated by `bench/cpu_bench.py` on {data['date']}. Machine: {m['cpu']}, {m['cores']} "
        f"cores, {m['mem_gib']:.1f} GiB RAM, Linux {m['kernel']}, Python {m['python']}; 1-minute "
        f"load average at the start {m['load_1min']:.2f} (a shared machine: other jobs ran at the "
        "same time: numbers that depend on thread hand-offs varied 5-10x between runs, the rest by "
        "up to ±50%).",
        "",
        "Commands:",
        "",
        "```sh",
        *data["commands"],
        "```",
        "",
        "## CPU",
        "",
        "### Engine overhead (host backend, `bench_engine`)",
        "",
        "| per acquire + release | µs | |",
        "|---|---|---|",
        *[f"| {o['case']} | {o['us']} | {o['note']} |" for o in e.get("overhead", [])],
        "",
        "One pass of 40 streamed 4 MiB blocks, 2 slots, 1 copy stream, a 4 GB/s emulated link:",
        "",
        "| compute per block | pass | bound max(compute, bytes/link) | × bound | copy hidden |",
        "|---|---|---|---|---|",
    ]
    for p in e.get("passes", []):
        L.append(f"| {p['compute_ms']} ms | {p['pass_ms']} ms | {p['bound_ms']} ms | "
                 f"{p['ratio']:.2f} | {p['overlap']:.0%} |")
    if e.get("loop"):
        L += ["", "A loop of passes shaped like Wan 14B at 4,590 tokens on an H100 under a 24 GB "
              f"cap, scaled down ({e['loop_setup']}): back to back, as a step's passes run, and "
              "with a synchronize after each pass, as a timing loop or a sampler step reading a "
              "value back does:",
              "", "| passes | per pass | bound | × bound |", "|---|---|---|---|"]
        L += [f"| {p['case']} | {p['pass_ms']} ms | {p['bound_ms']} ms | {p['ratio']:.3f} |"
              for p in e["loop"]]
    if e.get("predictions"):
        L += ["", "The planner's predictions against the engine, each case on its own plan (40 blocks "
              "of 8 MiB over a 2 GB/s emulated link, 4.19 ms a copy; `predicted_forward_ms` for "
              "back-to-back passes, `predicted_step_ms` with `passes_per_step` 1 for a sync after "
              "each):", "",
              "| streamed | slots | compute per block | back to back | predicted | synced | predicted |",
              "|---|---|---|---|---|---|---|"]
        L += [f"| {p['streamed']} of 40 | {p['slots']} | {p['compute_ms']} ms | {p['b2b_ms']} ms | "
              f"{p['b2b_predicted_ms']} ms | {p['synced_ms']} ms | {p['synced_predicted_ms']} ms |"
              for p in e["predictions"]]
    L += [
        "",
        "### genesis.blockswap overhead (Python hooks + engine, host backend)",
        "",
        f"A {b.get('blocks')}-block tiny model (d = 64), median of {data['runs']} × 200 forwards, one "
        "torch thread:",
        "",
        "| | forward µs | added per forward ÷ blocks, µs |",
        "|---|---|---|",
        f"| unswapped | {b.get('unswapped_us', 0):.1f} | – |",
        f"| swap on, all blocks resident | {b.get('resident_us', 0):.1f} | "
        f"{b.get('resident_per_block_us', 0):.1f} |",
        f"| swap on, all {b.get('streamed_streamed_blocks')} blocks streamed | "
        f"{b.get('streamed_us', 0):.1f} | {b.get('streamed_per_block_us', 0):.1f} |",
        "",
        "On a GPU a 14B block computes for 4.9–277 ms, so tens of µs per block are noise; the",
        "number to watch is whether the copies hide (the GPU section).",
        "",
        "### Planning time (`bench_plan`)",
        "",
        "| case | blocks | streamed | slots | µs per plan |",
        "|---|---|---|---|---|",
    ]
    for r in data["plan"]:
        L.append(f"| {r['case']} | {r['blocks']} | {r['streamed']} | {r['slots']} | "
                 f"{r['us_per_plan']} |")
    L += [
        "",
        "### Header reading (`bench_layout`)",
        "",
        f"{lay.get('tensors')} tensors, a {lay.get('header_bytes')}-byte safetensors header "
        "(a 14B checkpoint has ~1,100):",
        "",
        "| | median ms | min ms |",
        "|---|---|---|",
        f"| vram_layout_open (file) | {lay.get('open_median_ms')} | {lay.get('open_min_ms')} |",
        f"| vram_layout_parse_header (memory) | {lay.get('parse_median_ms')} | "
        f"{lay.get('parse_min_ms')} |",
        "",
        "### Wan2.2 A14B's experts: taking turns or sharing the GPU (planner predictions)",
        "",
        "Wan2.2 A14B denoises with two 14B experts, one after the other. The app plans each for",
        "the whole GPU and parks the one not running (`BlockSwap.park`); before, the low-noise",
        "expert was planned beside the high-noise one's engine (its resident blocks, rest and",
        "slots in VRAM, its pinned blocks in DRAM). Predicted per sampling step (CFG, 2 passes)",
        "of the low-noise expert, bf16, 64 GiB DRAM; a turn adds one engine build per generation",
        "(the expert's pinned and resident blocks read again), not per step. Pinned RAM: sharing",
        "holds both experts' pinned blocks at once; what no longer fits is staged through pageable",
        "RAM or read from disk (`staged`).",
    ]
    if data.get("turn_cost"):
        g = data["turn_cost"][0]["gib"]
        L += ["", f"What a turn costs, measured here: `park()` then `unpark()` of a 40-block "
              f"model ({g:.2f} GiB fp32, 24 blocks streamed, host backend), median of "
              f"{data['runs']}. A 14B expert is about {28.6 / 1.0737 / g:.0f}x larger; on a GPU "
              "the resident blocks also cross the bus once each way.", "",
              "| weights | park ms | unpark ms |", "|---|---|---|"]
        L += [f"| {r['case']} | {r['park_ms']:.0f} | {r['unpark_ms']:.0f} |"
              for r in data["turn_cost"]]
    L += ["", "| card | video (tokens) | threshold | taking turns: streamed, s/step | sharing: "
          "streamed, s/step | pinned GiB: turns / sharing (staged) |",
          "|---|---|---|---|---|---|"]
    for r in data.get("expert_turns", []):
        beside = (f"{r['beside_streamed']} of 40, {r['beside_step_s']:.2f}"
                  if r.get("beside_streamed") is not None else "does not fit")
        both = (f"{r['pinned_gib']:.1f} / {r['pinned_gib'] + r['beside_pinned_gib']:.1f} "
                f"({r['beside_staged_gib']:.1f})"
                if r.get("beside_streamed") is not None else f"{r['pinned_gib']:.1f} / –")
        L.append(f"| {r['gpu']} | {r['video']} ({r['tokens']:,}) | {r['threshold']}% | "
                 f"{r['alone_streamed']} of 40, {r['alone_step_s']:.2f} | {beside} | {both} |")
    if data.get("text_encoder"):
        L += ["", "Wan's text encoder (umT5-xxl, 10.6 GiB in bf16) alone on small cards, "
              "planned as the app plans it (90% of the "
              "card, one 512-token pass; 0 streamed: it moves in whole):", "",
              "| card | streamed | predicted peak GiB | pass ms | all resident ms |",
              "|---|---|---|---|---|"]
        L += [f"| {r['gpu']} | {r['streamed']} of {r['blocks']} | {r['peak_gib']:.2f} | "
              f"{r['pass_ms']:.0f} | {r['resident_ms']:.0f} |" for r in data["text_encoder"]]
    L += [
        "",
        "### The built-in tiny Wan model end to end (`genesis.wan`, CPU)",
        "",
        "128×128, 9 frames, 4 steps, CFG 6 (2 passes per step), random weights; through the app's",
        f"API (`WanGenerator.generate`), median of {data['runs']} after a first run that loads the",
        "model. The tiny model is 4 blocks of a few KB: this measures the stack's overhead, not",
        "streaming speed.",
        "",
        "| case | median s | min–max s | streamed blocks | bytes streamed |",
        "|---|---|---|---|---|",
    ]
    for r in data.get("tiny_wan", []):
        L.append(f"| {r['case']} | {r['median_s']:.3f} | {r['min_s']:.3f}–{r['max_s']:.3f} | "
                 f"{r['streamed_blocks']} | {r['bytes_streamed']} |")
    if data.get("tiny_wan"):
        L.append(f"\nFirst run (model build/load included): {data['tiny_wan'][0]['first_run_s']:.1f} s.")
    if png:
        L += ["", "![CPU benchmarks](benchmarks_cpu.png)", ""]
    L += [""] + gpu_section(gpu, out.parent / "benchmarks_gpu.png")
    out.write_text("\n".join(L) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=str(ROOT / "build"), help="CMake build folder")
    ap.add_argument("--runs", type=int, default=3)
    sessions = sorted((ROOT / "docs" / "gpu").glob("*/run*/results.json"))
    ap.add_argument("--gpu", default=str(sessions[-1].parent.parent) if sessions else "",
                    help="stored GPU runs: a session folder (run*/results.json) or a results.json "
                    "(default: the newest session under docs/gpu; '' for none)")
    ap.add_argument("--from-json", action="store_true",
                    help="no measuring: rewrite the page from the CPU numbers in --json")
    ap.add_argument("--doc", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    ap.add_argument("--json", default=str(ROOT / "docs" / "benchmarks_cpu.json"))
    ap.add_argument("--skip-wan", action="store_true", help="no tiny-Wan generations")
    a = ap.parse_args(argv)
    doc = Path(a.doc)
    gpu = Path(a.gpu).resolve() if a.gpu else None
    if a.from_json:
        data = json.loads(Path(a.json).read_text())
        write_doc(data, (doc.parent / "benchmarks_cpu.png").exists(), gpu, doc)
        log(f"wrote {doc} from {a.json}")
        return 0
    build = Path(a.build).resolve()
    data: dict[str, Any] = {"date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
                            "machine": machine(), "runs": a.runs}
    cmds = build_benches(build)
    rel = os.path.relpath(build, ROOT)
    data["commands"] = cmds and [c.replace(str(build), rel).replace(str(ROOT), ".") for c in cmds]
    data["commands"] += [f"{rel}/bench_engine", f"{rel}/bench_plan", f"{rel}/bench_layout",
                         f"python bench/cpu_bench.py --build {rel} --runs {a.runs}"]
    data["engine"] = parse_engine(run_c_bench(build, "bench_engine"))
    data["plan"] = parse_plan(run_c_bench(build, "bench_plan"))
    data["layout"] = parse_layout(run_c_bench(build, "bench_layout"))
    setup_genesis(build)
    t = time.perf_counter()
    data["blockswap"] = blockswap_overhead(a.runs)
    log(f"blockswap overhead: {time.perf_counter() - t:.1f} s")
    data["expert_turns"], data["text_encoder"] = expert_turns(), text_encoder_fit()
    data["turn_cost"] = turn_cost(a.runs)
    if not a.skip_wan:
        data["tiny_wan"] = tiny_wan(a.runs)
    png = plot(data, doc.parent / "benchmarks_cpu.png")
    Path(a.json).write_text(json.dumps(data, indent=2))
    write_doc(data, png, gpu, doc)
    log(f"wrote {doc}" + (f" and {doc.parent / 'benchmarks_cpu.png'}" if png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
