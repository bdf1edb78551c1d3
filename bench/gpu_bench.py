#!/usr/bin/env python3
"""GPU benchmark: a Wan-14B-shaped transformer under a 24 GB VRAM cap, genesis
against the peers.

    python bench/gpu_bench.py --out out/gpu-bench            # on a CUDA machine
    python bench/gpu_bench.py --device cpu --tiny --tokens 4590 --cap-gb 0.09 --out /tmp/b  # logic check

Model: diffusers' WanTransformer3DModel with the Wan 2.1 T2V 14B config (40
blocks, dim 5120, ffn 13824, 40 heads), random bf16 weights, built directly
on the GPU (no checkpoint, no download). Without diffusers: a self-contained
module of 40 Wan blocks with the exact 14B block shapes (self-attention q/k/v/o
with RMSNorm on q and k, cross-attention over 512 text tokens, LayerNorm norm3,
FFN 5120->13824->5120, modulation 1x6x5120: 351,394,304 parameters per block)
and SDPA; it lacks RoPE and the embedders (< 2% of the FLOPs), stated in the
output as model "wan-blocks-14b".

One forward (batch 1, one pass) at 4,590 tokens (544x432, 17 frames) and at
32,760 tokens (832x480, 81 frames). Modes:
  ceiling          all resident, no cap
  genesis          genesis.blockswap, automatic plan for 24 GB
  genesis-sync     the same with enable_cuda_optimization=False
  genesis-t90      genesis' automatic plan with vram_threshold_percent=90
                   (the seed's "Speed Optimized" idea, raising the threshold to
                   stream less; its preset uses 60): more resident, fewer copies
  legacy           genesis.legacy_blockswap (kijai's WanVideoBlockSwap) at its
                   best setting (use_non_blocking, prefetch_blocks=1) with the
                   same number of swapped blocks as genesis' plan
  legacy-default   the same with kijai's defaults (blocking .to(), no prefetch)
  diffusers-group  diffusers apply_group_offloading(block_level,
                   num_blocks_per_group=1, use_stream, record_stream)
  mmgp             mmgp's block-streaming profile (HighRAM_LowVRAM), when
                   mmgp is importable; skipped with a note otherwise
Every capped mode runs with torch.cuda.set_per_process_memory_fraction(24 GB);
genesis is also planned for 24 GB (its engine allocates through the CUDA
driver, outside torch's allocator, so the device-wide peak is what counts).

Per mode and token count, after one warm-up forward:
  median s (median_s, min_s, max_s, times_s)
                   --reps (>= 3) forwards, each timed from the call to the end
                   of a device-wide torch.cuda.synchronize() after it. The
                   sync also waits for copies a forward queued for the next
                   one (genesis prefetches the next pass's first streamed
                   blocks into the free slots at the end of a pass), and the
                   next forward starts with those done and the copy engine
                   idle until a slot frees: a copy-bound plan takes about
                   (model head + compute up to the first streamed block) +
                   all its copies per forward.
  b2b s (b2b_s)    then --reps more forwards queued back to back, no sync
                   between them, one at the end: total wall time / reps. What
                   a sampling loop sees (forwards follow each other without a
                   device sync), copies running across the pass boundary.
                   Skipped, with b2b_note, when --budget-s would be overrun.
  bound s (bound_s), × bound (vs_bound)
                   max(the ceiling's synced median (resident_s), streamed
                   bytes per forward / measured pinned bandwidth); median / it.
  b2b × bound (b2b_vs_bound, b2b_bound_s, resident_b2b_s)
                   b2b s / max(the ceiling's b2b s (resident_b2b_s), streamed
                   bytes per forward / measured pinned bandwidth).
  peak VRAM (device-wide, sampled every 2 ms over all the forwards above,
  minus the baseline before the mode; and torch's own peaks), host RSS,
  pinned host bytes, streamed bytes per forward (genesis: the engine's bytes
  copied over the synced forwards / reps), the largest difference of the last
  synced forward's output from the all-resident one. genesis' rows also
  carry its plan and engine stats: compute_wait_ms (time the compute stream
  waited on copies) and overlap_ratio over the synced forwards,
  b2b_compute_wait_ms and b2b_overlap_ratio over the back-to-back ones (both
  totals over --reps forwards). Writes results.json and results.md under
  --out after every mode (a run cut short keeps what it measured).

Without CUDA it prints why and exits 0 without measuring anything.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gpu_report import fmt, table  # bench/, this script's folder

ROOT = Path(__file__).resolve().parents[1]
GB = 1e9
GIB = 2**30

TOKENS = {  # tokens: (width, height, frames); tokens = ((f-1)/4+1) * h/16 * w/16
    4590: (544, 432, 17),
    32760: (832, 480, 81),
}
WAN14B = dict(patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128,
              in_channels=16, out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=13824,
              num_layers=40, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6,
              image_dim=None, added_kv_proj_dim=None, rope_max_seq_len=1024)
TINY = dict(WAN14B, num_attention_heads=2, attention_head_dim=32, text_dim=64, ffn_dim=96,
            num_layers=6, freq_dim=32)
# In priority order (the time budget cuts from the end); the peers' hooks
# cannot be removed, so a mode after them gets a freshly built model.
ALL_MODES = ("ceiling", "genesis", "genesis-sync", "genesis-t90", "legacy", "diffusers-group",
             "mmgp", "legacy-default")
PEER_MODES = ("diffusers-group", "mmgp")


def log(msg: str) -> None:
    print(f"[gpu_bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def setup_genesis() -> None:
    """Makes genesis importable from this checkout: python/ on the path, and
    libvram from $VRAM_LIBRARY, the package's own copy, or a build*/ folder."""
    if str(ROOT / "python") not in sys.path:
        sys.path.insert(0, str(ROOT / "python"))
    if os.environ.get("VRAM_LIBRARY") or (ROOT / "python/genesis/_lib/libvram.so").exists():
        return
    built = sorted(ROOT.glob("build*/libvram.so"), key=lambda p: p.stat().st_mtime, reverse=True)
    if built:
        os.environ["VRAM_LIBRARY"] = str(built[0])


# ---------------------------------------------------------------- the model

def build_wan_blocks_module(cfg: dict[str, Any]):
    """Self-contained Wan transformer blocks (no diffusers): exact block
    shapes, SDPA attention, no RoPE, no embedders."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    dim = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    heads, ffn, text_dim = cfg["num_attention_heads"], cfg["ffn_dim"], cfg["text_dim"]

    class RMSNorm(nn.Module):
        def __init__(self, d: int) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(d))

        def forward(self, x):
            return F.rms_norm(x, (x.shape[-1],), self.weight, 1e-6)

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
            self.norm_q, self.norm_k = RMSNorm(dim), RMSNorm(dim)

        def forward(self, x, ctx=None):
            src = x if ctx is None else ctx
            b = x.shape[0]
            q = self.norm_q(self.q(x)).view(b, -1, heads, dim // heads).transpose(1, 2)
            k = self.norm_k(self.k(src)).view(b, -1, heads, dim // heads).transpose(1, 2)
            v = self.v(src).view(b, -1, heads, dim // heads).transpose(1, 2)
            y = F.scaled_dot_product_attention(q, k, v)
            return self.o(y.transpose(1, 2).reshape(b, -1, dim))

    class WanBlock(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
            self.self_attn = Attention()
            self.norm3 = nn.LayerNorm(dim, eps=1e-6)
            self.cross_attn = Attention()
            self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
            self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.GELU(approximate="tanh"),
                                     nn.Linear(ffn, dim))
            self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

        def forward(self, x, e, ctx):
            sh1, sc1, g1, sh2, sc2, g2 = (self.modulation + e).chunk(6, dim=1)
            x = x + self.self_attn(self.norm1(x) * (1 + sc1) + sh1) * g1
            x = x + self.cross_attn(self.norm3(x), ctx)
            return x + self.ffn(self.norm2(x) * (1 + sc2) + sh2) * g2

    class WanBlocks(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.text_embedding = nn.Linear(text_dim, dim)
            self.blocks = nn.ModuleList(WanBlock() for _ in range(cfg["num_layers"]))
            self.head = nn.Linear(dim, 64)

        def forward(self, x, e, text):
            ctx = self.text_embedding(text)
            for blk in self.blocks:
                x = blk(x, e, ctx)
            return self.head(x)

    return WanBlocks()


def build_model(tiny: bool, device, force_fallback: bool):
    """(model, kind, inputs(tokens) -> (args, kwargs)). Built on `device`
    in bf16 with small random weights (std 1/sqrt(fan_in): activations stay
    finite over 40 blocks)."""
    import torch

    cfg = TINY if tiny else WAN14B
    kind = "diffusers-wan-14b" if not tiny else "diffusers-wan-tiny"
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device), torch.no_grad():
            model = None
            if not force_fallback:
                try:
                    from diffusers import WanTransformer3DModel

                    model = WanTransformer3DModel(**cfg)
                except ImportError:
                    model = None
            if model is None:
                model = build_wan_blocks_module(cfg)
                kind = "wan-blocks-14b" if not tiny else "wan-blocks-tiny"
            gen = torch.Generator(device=device).manual_seed(0)
            for name, p in model.named_parameters():
                if p.ndim >= 2:
                    p.normal_(0.0, p.shape[-1] ** -0.5, generator=gen)
                elif "norm" in name and name.endswith("weight"):
                    p.fill_(1.0)
                else:
                    p.normal_(0.0, 0.02, generator=gen)
    finally:
        torch.set_default_dtype(old)
    model = model.to(torch.bfloat16).eval().requires_grad_(False)
    dim = cfg["num_attention_heads"] * cfg["attention_head_dim"]

    def inputs(tokens: int, dev):
        w, h, f = TOKENS[tokens]
        # device="cpu" throughout: mmgp makes cuda torch's default device.
        g = torch.Generator(device="cpu").manual_seed(tokens)
        text = torch.randn(1, 512, cfg["text_dim"], generator=g, device="cpu").to(dev, torch.bfloat16)
        if kind.startswith("diffusers"):
            lat = (f - 1) // 4 + 1
            hs = torch.randn(1, cfg["in_channels"], lat, h // 8, w // 8, generator=g, device="cpu")
            return (), dict(hidden_states=hs.to(dev, torch.bfloat16),
                            timestep=torch.tensor([500], device=dev),
                            encoder_hidden_states=text, return_dict=False)
        x = torch.randn(1, tokens, dim, generator=g, device="cpu").to(dev, torch.bfloat16)
        e = (torch.randn(1, 6, dim, generator=g, device="cpu") * 0.1).to(dev, torch.bfloat16)
        return (x, e, text), {}

    return model, kind, inputs


def first_tensor(out):
    import torch

    while not isinstance(out, torch.Tensor):
        out = out[0]
    return out


def block_list(model):
    return model.blocks


def module_bytes(m) -> int:
    seen, total = set(), 0
    for t in list(m.parameters()) + list(m.buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


# ---------------------------------------------------------------- measuring

class PeakSampler:
    """Device-wide used memory (cudaMemGetInfo) sampled every 2 ms."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.peak = 0
        self._stop = threading.Event()
        self._t: threading.Thread | None = None

    def used(self) -> int:
        import torch

        free, total = torch.cuda.mem_get_info()
        return total - free

    def __enter__(self) -> PeakSampler:
        if self.cuda:
            self.peak = self.used()
            self._t = threading.Thread(target=self._run, daemon=True)
            self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.used())
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._t is not None:
            self._t.join()
            self.peak = max(self.peak, self.used())


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def torch_pinned_bytes() -> int:
    """Bytes held by torch's pinned host allocator (0 when unknown)."""
    import torch

    try:
        s = torch.cuda.host_memory_stats()
    except Exception:
        return 0
    # Allocated, not reserved: the cache keeps an earlier mode's freed
    # pinned blocks reserved (diffusers' 44 GB copy would count for mmgp).
    for key in ("allocated_bytes.current", "reserved_bytes.current"):
        if key in s:
            return int(s[key])
    return 0


def sync(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.synchronize()


@dataclass
class Timed:
    times: list[float]  # synced forwards, s each
    out: Any  # the last synced forward's output, on the CPU
    b2b_s: float | None = None  # back-to-back total / reps; None: not run
    b2b_out: Any = None  # the last back-to-back forward's output, on the CPU


def timed_forwards(model, args, kwargs, reps: int, cuda: bool,
                   after_warmup: Callable[[], None] | None = None,
                   before_b2b: Callable[[], None] | None = None,
                   time_left: Callable[[], float] = lambda: math.inf) -> Timed:
    """One warm-up forward; `reps` timed ones, each followed by a device-wide
    sync; then, when `reps` synced medians fit in time_left(), `reps` more
    queued back to back with one sync at the end (see the module docstring)."""
    import torch

    with torch.no_grad():
        out = model(*args, **kwargs)
        sync(cuda)
        if after_warmup:
            after_warmup()
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            out = model(*args, **kwargs)
            sync(cuda)
            times.append(time.perf_counter() - t)
        res = Timed(times, first_tensor(out).float().cpu())
        if reps * statistics.median(times) > time_left():
            return res
        if before_b2b:
            before_b2b()
        t = time.perf_counter()
        for _ in range(reps):
            out = model(*args, **kwargs)
        sync(cuda)
        res.b2b_s = (time.perf_counter() - t) / reps
        res.b2b_out = first_tensor(out).float().cpu()
    return res


def pinned_bandwidth_gbps(cuda: bool, mib: int = 1024) -> dict[str, Any]:
    """Host-to-device copy of a pinned buffer (and a pageable one) with torch,
    median of 5, GB/s (1e9 bytes)."""
    import torch

    if not cuda:
        return {"pinned_gbps": None, "pageable_gbps": None, "bytes": 0}
    n = mib * 2**20
    dev = torch.empty(n, dtype=torch.uint8, device="cuda")
    res: dict[str, Any] = {"bytes": n}
    for name, pin in (("pinned_gbps", True), ("pageable_gbps", False)):
        host = torch.empty(n, dtype=torch.uint8, pin_memory=pin)
        host.fill_(1)
        dev.copy_(host, non_blocking=pin)
        torch.cuda.synchronize()
        speeds = []
        for _ in range(5):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            dev.copy_(host, non_blocking=pin)
            b.record()
            b.synchronize()
            speeds.append(n / (a.elapsed_time(b) / 1e3) / GB)
        res[name] = statistics.median(speeds)
        del host
    del dev
    torch.cuda.empty_cache()
    return res


# ---------------------------------------------------------------- the modes

class Bench:
    def __init__(self, a: argparse.Namespace) -> None:
        import torch

        self.a = a
        self.cuda = a.device == "cuda"
        # An explicit index: set_per_process_memory_fraction refuses a bare "cuda".
        self.dev = (torch.device("cuda", torch.cuda.current_device()) if self.cuda
                    else torch.device(a.device))
        self.cap_bytes = int(a.cap_gb * GB)
        self.capped = False
        self.results: list[dict[str, Any]] = []
        self.resident_s: dict[int, float] = {}  # the ceiling's synced median
        self.resident_b2b_s: dict[int, float] = {}  # the ceiling's back-to-back time
        self.reference: dict[int, Any] = {}
        self.t_start = time.perf_counter()
        self.out = Path(a.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.meta: dict[str, Any] = {}
        self.model = None
        self.kind = ""
        self.inputs: Callable[..., Any] | None = None
        self.tainted = False  # a peer installed hooks we cannot remove
        self.peer_releases: list[Callable[[], None]] = []
        self.peer_setup_s: dict[str, float] = {}  # the peers applied to the current model

    # -- bookkeeping
    def elapsed(self) -> float:
        return time.perf_counter() - self.t_start

    def cap(self, on: bool) -> None:
        self.capped = on
        if not self.cuda:
            return
        import torch

        total = torch.cuda.get_device_properties(self.dev).total_memory
        torch.cuda.set_per_process_memory_fraction(
            min(1.0, self.cap_bytes / total) if on else 1.0, self.dev)

    def reset_device(self) -> int:
        gc.collect()
        if not self.cuda:
            return 0
        import torch

        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        free, total = torch.cuda.mem_get_info()
        return total - free

    def fresh_model(self) -> None:
        import torch

        while self.peer_releases:  # a peer's own clean-up (mmgp keeps weights on the GPU)
            self.peer_releases.pop()()
        self.peer_setup_s.clear()
        self.model = None
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()
            # Hand the freed pinned blocks back too (the name varies by release).
            empty_host = (getattr(torch._C, "_host_emptyCache", None)
                          or getattr(torch._C, "_accelerator_emptyHostCache", None))
            if empty_host is not None:
                empty_host()
        t = time.perf_counter()
        build_dev = self.dev if self.cuda else torch.device("cpu")
        self.model, self.kind, self.inputs = build_model(self.a.tiny, build_dev,
                                                         self.a.no_diffusers)
        self.meta["model_build_s"] = round(time.perf_counter() - t, 2)
        self.tainted = False

    def to_cpu(self) -> None:
        import torch

        t = time.perf_counter()
        self.model.to("cpu")
        if self.cuda:
            torch.cuda.empty_cache()
        self.meta.setdefault("to_cpu_s", round(time.perf_counter() - t, 2))

    def time_left(self) -> float:
        return self.a.budget_s - self.elapsed()

    def diff_vs_resident(self, tokens: int, out) -> float | None:
        ref = self.reference.get(tokens)
        return None if ref is None else float((out - ref).abs().max())

    def record(self, mode: str, tokens: int, timed: Timed | None,
               peak: int = 0, baseline: int = 0, streamed: int | None = None,
               pinned: int = 0, note: str = "", extra: dict[str, Any] | None = None,
               error: str = "") -> None:
        r: dict[str, Any] = {"mode": mode, "tokens": tokens, "note": note, "error": error}
        times = timed.times if timed else None
        if times:
            import torch

            med = statistics.median(times)
            r.update(median_s=med, min_s=min(times), max_s=max(times), reps=len(times),
                     times_s=times)
            if self.cuda:
                r["peak_vram_bytes"] = max(0, peak - baseline)
                # The cap binds torch's allocator only, not libvram's or a
                # peer's own allocations: a peak past it is flagged here.
                if self.capped and r["peak_vram_bytes"] > self.cap_bytes:
                    r["note"] = (note + "; " if note else "") + f"OVER the {self.a.cap_gb:g} GB cap"
                r["torch_peak_reserved_bytes"] = torch.cuda.max_memory_reserved()
                r["torch_peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
            r["host_rss_bytes"] = rss_bytes()
            r["pinned_bytes"] = pinned
            r["streamed_bytes_per_forward"] = streamed
            bw = self.meta.get("bandwidth", {}).get("pinned_gbps")
            copy_s = (streamed or 0) / (bw * GB) if bw else 0.0
            res = self.resident_s.get(tokens)
            if res is not None:
                r["bound_s"] = max(res, copy_s)
                r["vs_bound"] = med / r["bound_s"] if r["bound_s"] > 0 else None
            if timed.b2b_s is None:
                r["b2b_note"] = f"back-to-back skipped: time budget {self.a.budget_s:.0f} s"
            else:
                r["b2b_s"] = timed.b2b_s
                res_b2b = self.resident_b2b_s.get(tokens)
                if res_b2b is not None:
                    r["resident_b2b_s"] = res_b2b
                    r["b2b_bound_s"] = max(res_b2b, copy_s)
                    r["b2b_vs_bound"] = (timed.b2b_s / r["b2b_bound_s"] if r["b2b_bound_s"] > 0
                                         else None)
                r["b2b_max_abs_diff_vs_resident"] = self.diff_vs_resident(tokens, timed.b2b_out)
                r["b2b_output_finite"] = bool(torch.isfinite(timed.b2b_out).all())
            r["max_abs_diff_vs_resident"] = self.diff_vs_resident(tokens, timed.out)
            r["output_finite"] = bool(torch.isfinite(timed.out).all())
        if extra:
            r.update(extra)
        self.results.append(r)
        log(f"{mode:16s} {tokens:6d} tokens: " + (
            f"median {r['median_s']:.3f} s"
            + (f", bound {r['bound_s']:.3f} s ({r['vs_bound']:.2f}x)" if r.get("bound_s") else "")
            + (f", b2b {r['b2b_s']:.3f} s" if "b2b_s" in r else ", b2b skipped")
            + (f" ({r['b2b_vs_bound']:.2f}x)" if r.get("b2b_vs_bound") else "")
            + (f", peak VRAM {r.get('peak_vram_bytes', 0) / GB:.2f} GB" if self.cuda else "")
            if times else f"skipped/failed: {error or note}"))
        self.write()

    def run_mode(self, mode: str, fn: Callable[[int], None]) -> None:
        if self.tainted and mode not in PEER_MODES and self.elapsed() < self.a.budget_s:
            log(f"{mode}: rebuilding the model (a peer's hooks are installed)")
            self.fresh_model()
            self.to_cpu()
        for tokens in self.a.tokens:
            if self.elapsed() > self.a.budget_s:
                self.record(mode, tokens, None, note=f"skipped: time budget {self.a.budget_s:.0f} s "
                            "spent")
                continue
            try:
                fn(tokens)
            except Exception as e:  # one mode failing must not end the run
                self.record(mode, tokens, None, error=f"{type(e).__name__}: {e}".splitlines()[0])
                traceback.print_exc()
            finally:
                self.cap(False)
                self.reset_device()

    # -- modes
    def ceiling(self, tokens: int) -> None:
        import torch

        self.model.to(self.dev)
        # The weights count in this mode's peak: the baseline is without them.
        base = self.reset_device() - (module_bytes(self.model) if self.cuda else 0)
        args, kw = self.inputs(tokens, self.dev)
        with PeakSampler(self.cuda) as ps:
            timed = timed_forwards(self.model, args, kw, self.a.reps, self.cuda,
                                   time_left=self.time_left)
        self.resident_s[tokens] = statistics.median(timed.times)
        if timed.b2b_s is not None:
            self.resident_b2b_s[tokens] = timed.b2b_s
        self.reference[tokens] = timed.out
        self.record("ceiling", tokens, timed, ps.peak, base, streamed=0,
                    note="all resident, no cap", extra={"model_bytes": module_bytes(self.model)})
        del args, kw
        if self.cuda:
            torch.cuda.empty_cache()

    GENESIS_OPTIONS = {
        "genesis": {},
        "genesis-sync": {"enable_cuda_optimization": False},
        "genesis-t90": {"vram_threshold_percent": 90},
    }

    def genesis(self, tokens: int, mode: str = "genesis") -> None:
        from genesis.blockswap import apply_block_swap

        w, h, f = TOKENS[tokens]
        base = self.reset_device()
        self.cap(True)
        t = time.perf_counter()
        swap = apply_block_swap(self.model, device=self.dev,
                                vram_mb=self.cap_bytes / 2**20,
                                width=w, height=h, frames=f, passes_per_step=1,
                                **self.GENESIS_OPTIONS[mode])
        setup_s = time.perf_counter() - t
        try:
            args, kw = self.inputs(tokens, self.dev)

            def reset() -> None:
                if swap.engine is not None:
                    swap.engine.reset_stats()

            synced: dict[str, Any] = {}

            def before_b2b() -> None:  # the engine stats of the synced forwards
                synced.update(swap.stats())
                reset()

            with PeakSampler(self.cuda) as ps:
                timed = timed_forwards(self.model, args, kw, self.a.reps, self.cuda, reset,
                                       before_b2b, self.time_left)
            st = synced or swap.stats()
            eng = st["engine"] or {}
            b2b_eng = (swap.stats()["engine"] or {}) if synced else {}
            plan = st["plan"]
            if mode != "genesis-t90":  # legacy swaps as many blocks as the default plan
                self.genesis_streamed = getattr(self, "genesis_streamed", {})
                self.genesis_streamed[tokens] = len(st["streamed_blocks"])
            self.record(mode, tokens, timed, ps.peak, base,
                        streamed=int(eng.get("bytes_copied", 0) / max(1, len(timed.times))),
                        pinned=int(eng.get("pinned_bytes", 0)),
                        note="" if st["active"] else f"fell back: {st['fallback_reason']}",
                        extra={"setup_s": setup_s, "streamed_blocks": len(st["streamed_blocks"]),
                               "streamed_block_indices": list(st["streamed_blocks"]),
                               "slots": plan["slot_count"], "copy_streams": plan["copy_streams"],
                               "predicted_forward_s": plan["predicted_forward_ms"] / 1e3,
                               # passes_per_step=1: a forward, then a sync (the synced loop)
                               "predicted_synced_s": plan["predicted_step_ms"] / 1e3,
                               "predicted_peak_bytes": plan["predicted_peak_bytes"],
                               "engine_device_bytes": eng.get("device_bytes"),
                               "overlap_ratio": eng.get("overlap_ratio"),
                               "compute_wait_ms": eng.get("compute_wait_ms"),
                               "b2b_overlap_ratio": b2b_eng.get("overlap_ratio"),
                               "b2b_compute_wait_ms": b2b_eng.get("compute_wait_ms"),
                               "b2b_bytes_copied": b2b_eng.get("bytes_copied"),
                               "replans": st["replans"], "engine_builds": st["engine_builds"]})
        finally:
            swap.remove()
            self.model.to("cpu")

    def legacy(self, tokens: int, best: bool = True) -> None:
        from genesis.legacy_blockswap import apply_legacy_block_swap

        blocks = block_list(self.model)
        n = getattr(self, "genesis_streamed", {}).get(tokens)
        note = "same swapped count as genesis' plan"
        if n is None:
            n = len(blocks) // 2
            note = "half the blocks swapped (genesis did not run)"
        n = max(n, 1)
        base = self.reset_device()
        self.cap(True)
        t = time.perf_counter()
        swap = apply_legacy_block_swap(self.model, blocks_to_swap=n, use_non_blocking=best,
                                       prefetch_blocks=1 if best else 0, device=self.dev)
        setup_s = time.perf_counter() - t
        try:
            args, kw = self.inputs(tokens, self.dev)
            with PeakSampler(self.cuda) as ps:
                timed = timed_forwards(self.model, args, kw, self.a.reps, self.cuda,
                                       time_left=self.time_left)
            streamed = sum(module_bytes(blocks[i]) for i in swap.swapped)
            self.record("legacy" if best else "legacy-default", tokens, timed, ps.peak, base,
                        streamed=streamed, pinned=torch_pinned_bytes(),
                        note=note + ("; use_non_blocking=True, prefetch_blocks=1" if best
                                     else "; blocking .to(), no prefetch"),
                        extra={"setup_s": setup_s, "streamed_blocks": n})
        finally:
            swap.remove()
            self.model.to("cpu")

    def diffusers_group(self, tokens: int) -> None:
        try:
            from diffusers.hooks import apply_group_offloading
        except ImportError as e:
            self.record("diffusers-group", tokens, None, note=f"skipped: diffusers not importable ({e})")
            return
        if not self.cuda:
            self.record("diffusers-group", tokens, None,
                        note="skipped: use_stream needs a CUDA device")
            return

        def apply() -> None:
            apply_group_offloading(self.model, onload_device=self.dev, offload_device="cpu",
                                   offload_type="block_level", num_blocks_per_group=1,
                                   use_stream=True, record_stream=True)

        self.timed_peer("diffusers-group", tokens, apply, streams_all=True,
                        note="block_level, num_blocks_per_group=1, use_stream, record_stream; "
                        "streams every group each forward")

    def mmgp(self, tokens: int) -> None:
        try:
            from mmgp import offload, profile_type
        except ImportError as e:
            self.record("mmgp", tokens, None, note=f"skipped: mmgp not importable ({e}); "
                        "pip install mmgp to include it")
            return
        if not self.cuda:
            self.record("mmgp", tokens, None, note="skipped: mmgp needs a CUDA device")
            return
        budget_mb = int(self.cap_bytes / 2**20 * 0.5)

        def apply() -> None:
            # quantizeTransformer=False: every profile quantizes to int8 by
            # default; the comparison is at the same bf16 weights.
            obj = offload.profile({"transformer": self.model}, profile_type.HighRAM_LowVRAM,
                                  budgets={"transformer": budget_mb}, quantizeTransformer=False,
                                  verboseLevel=0)
            self.peer_releases.append(obj.release)

        self.timed_peer("mmgp", tokens, apply, streams_all=False,
                        note="profile HighRAM_LowVRAM (pinned, budgeted streaming, no "
                        f"quantization), budget {budget_mb} MB; streamed bytes unknown (no bound)")

    def timed_peer(self, mode: str, tokens: int, apply: Callable[[], None], streams_all: bool,
                   note: str) -> None:
        """A peer applied once to a model no other mode changed (its setup
        counted once, the model kept for its next token count), then timed
        under the cap. streams_all: every weight crosses the bus each
        forward; else the streamed bytes are unknown."""
        if mode not in self.peer_setup_s:
            if self.tainted:
                self.fresh_model()
                self.to_cpu()
            t = time.perf_counter()
            apply()
            self.peer_setup_s[mode] = time.perf_counter() - t
            self.tainted = True
        base = self.reset_device()
        self.cap(True)
        args, kw = self.inputs(tokens, self.dev)
        with PeakSampler(self.cuda) as ps:
            timed = timed_forwards(self.model, args, kw, self.a.reps, self.cuda,
                                   time_left=self.time_left)
        self.record(mode, tokens, timed, ps.peak, base,
                    streamed=module_bytes(self.model) if streams_all else None,
                    pinned=torch_pinned_bytes(), note=note,
                    extra={"setup_s": self.peer_setup_s[mode]})

    # -- output
    def write(self) -> None:
        doc = {"meta": self.meta, "results": self.results}
        (self.out / "results.json").write_text(json.dumps(doc, indent=2, default=str))
        (self.out / "results.md").write_text(markdown(doc))


def markdown(doc: dict[str, Any]) -> str:
    m = doc["meta"]
    bw = m.get("bandwidth", {})
    lines = [
        f"# GPU benchmark: {m.get('model_kind', '?')} on {m.get('gpu', '?')}",
        "",
        f"- date {m.get('date')}, torch {m.get('torch')}, CUDA {m.get('cuda')}, "
        f"diffusers {m.get('diffusers')}, host {m.get('host')}",
        f"- VRAM cap for the streamed modes: {m.get('cap_gb')} GB; model "
        f"{fmt(m.get('model_bytes'), GB, 2)} GB in bf16, {m.get('blocks')} blocks",
        f"- measured host-to-device: pinned {fmt(bw.get('pinned_gbps'), 1, 1)} GB/s, "
        f"pageable {fmt(bw.get('pageable_gbps'), 1, 1)} GB/s (torch, 1 GiB, median of 5)",
        f"- median s: median of {m.get('reps')} forwards after a warm-up, each followed by a "
        "device-wide sync (which also waits for the copies a forward queues for the next one); "
        "bound = max(all-resident synced median, streamed bytes / pinned bandwidth)",
        f"- b2b s: {m.get('reps')} more forwards queued back to back, one sync at the end, total / "
        f"{m.get('reps')} (a sampling loop's throughput); b2b × bound against max(all-resident "
        "b2b s, streamed bytes / pinned bandwidth)",
        f"- command: `{m.get('command')}`",
        "",
        *table(doc["results"]),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "out" / "gpu-bench"))
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                    help="cpu: a logic check of the script (use with --tiny)")
    ap.add_argument("--tiny", action="store_true", help="a tiny config (logic check)")
    ap.add_argument("--no-diffusers", action="store_true",
                    help="use the self-contained Wan-block module even when diffusers is there")
    ap.add_argument("--modes", default=",".join(ALL_MODES),
                    help=f"comma-separated subset of {','.join(ALL_MODES)}")
    ap.add_argument("--tokens", default="4590,32760")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cap-gb", type=float, default=24.0)
    ap.add_argument("--budget-s", type=float, default=360.0,
                    help="skip the remaining measurements after this many seconds")
    a = ap.parse_args(argv)
    a.tokens = [int(t) for t in a.tokens.split(",")]
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in ALL_MODES] + [t for t in a.tokens if t not in TOKENS]
    if bad or a.reps < 3:
        ap.error(f"unknown modes/tokens {bad} or --reps < 3")

    try:
        import torch
    except ImportError:
        print("gpu_bench: torch is not installed; nothing to measure.", file=sys.stderr)
        return 0
    if a.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu_bench: no CUDA device here (torch {torch.__version__}, "
              f"torch.version.cuda={torch.version.cuda}); nothing measured. Run this on a "
              "machine with an NVIDIA GPU, or use --device cpu --tiny for a logic check.",
              file=sys.stderr)
        return 0
    setup_genesis()
    b = Bench(a)
    cuda = a.device == "cuda"
    try:
        import diffusers

        dver = diffusers.__version__
    except ImportError:
        dver = None
    b.meta.update(
        date=time.strftime("%Y-%m-%d %H:%M:%S %Z"), torch=torch.__version__,
        cuda=torch.version.cuda, diffusers=dver, host=platform.node(),
        gpu=torch.cuda.get_device_name() if cuda else "cpu (logic check)",
        cap_gb=a.cap_gb, reps=a.reps, command=" ".join([sys.executable] + sys.argv),
        tokens={t: dict(zip(("width", "height", "frames"), TOKENS[t])) for t in a.tokens})
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        b.meta["bandwidth"] = pinned_bandwidth_gbps(True)
        log(f"pinned {b.meta['bandwidth']['pinned_gbps']:.1f} GB/s, pageable "
            f"{b.meta['bandwidth']['pageable_gbps']:.1f} GB/s")
    b.fresh_model()
    b.meta.update(model_kind=b.kind, model_bytes=module_bytes(b.model),
                  blocks=len(block_list(b.model)),
                  block_bytes=module_bytes(block_list(b.model)[0]))
    log(f"model {b.kind}: {b.meta['model_bytes'] / GB:.2f} GB built in "
        f"{b.meta['model_build_s']} s")
    b.write()
    if "ceiling" in modes:
        b.run_mode("ceiling", b.ceiling)
    b.to_cpu()
    runners: dict[str, Callable[[int], None]] = {
        "genesis": b.genesis,
        "genesis-sync": lambda t: b.genesis(t, "genesis-sync"),
        "genesis-t90": lambda t: b.genesis(t, "genesis-t90"),
        "legacy": b.legacy,
        "legacy-default": lambda t: b.legacy(t, best=False),
        "diffusers-group": b.diffusers_group,
        "mmgp": b.mmgp,
    }
    for mode in ALL_MODES[1:]:
        if mode in modes:
            b.run_mode(mode, runners[mode])
    b.meta["total_s"] = round(b.elapsed(), 1)
    b.write()
    log(f"done in {b.meta['total_s']} s: {b.out / 'results.md'}")
    print((b.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
